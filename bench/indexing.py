"""Indexing throughput: pixsearch's pipeline against the naive PyTorch loop people write first.

Both sides read the same files and run the same weights. The naive loop decodes
with PIL, preprocesses with transformers' CLIPImageProcessor and calls
``get_image_features`` batch by batch, with no overlap between decoding and
inference and no vector store at all. pixsearch's side is the real ``Indexer``:
hashing, reduced-size JPEG decoding in worker threads, ONNX Runtime, and
upserts into a fresh Milvus Lite file. Model loading is excluded on both sides.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixsearch.indexer import Indexer
from pixsearch.models.onnx import OnnxEmbedder
from pixsearch.store import Store, collection_name_for

from .models import model_spec


@dataclass
class IndexRun:
    images: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def naive_torch(checkpoint: Path, files: Sequence[Path], batch: int = 32) -> IndexRun:
    """PIL decode + CLIPImageProcessor + get_image_features, sequential, fp32, torch's default threads."""
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the missing-torchvision notice and progress bars are noise here
    hf_logging.disable_progress_bar()
    model = CLIPModel.from_pretrained(checkpoint).eval()
    processor = CLIPImageProcessor.from_pretrained(checkpoint)
    vectors = []
    with torch.inference_mode():
        model.get_image_features(pixel_values=torch.zeros(1, 3, 224, 224))  # warm-up, like the ONNX side
        start = time.perf_counter()
        for i in range(0, len(files), batch):
            images = [Image.open(f).convert("RGB") for f in files[i:i + batch]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"]
            out = model.get_image_features(pixel_values=pixels)
            out = out if torch.is_tensor(out) else out.pooler_output
            vectors.append(torch.nn.functional.normalize(out, dim=-1).numpy())
        seconds = time.perf_counter() - start
    assert sum(len(v) for v in vectors) == len(files)
    return IndexRun(images=len(files), seconds=seconds)


def pixsearch_index(model_dir: Path, variant: str, files: Sequence[Path], batch: int = 32, workers: int = 0,
                    threads: int = 0, db_dir: Path | None = None) -> IndexRun:
    """Index *files* into a new Milvus Lite database with pixsearch's Indexer; images/s end to end."""
    spec = model_spec(model_dir)
    embedder = OnnxEmbedder(spec, threads=threads, variant=variant)
    embedder.embed_prepared([np.zeros((*spec.preprocess.size, 3), np.uint8)])  # load the session untimed
    with tempfile.TemporaryDirectory(dir=db_dir, prefix="bench-index-") as tmp:
        store = Store(str(Path(tmp) / "bench.db"), collection=collection_name_for(spec.model_id))
        try:
            store.ensure_collection(spec.model_id, str(model_dir), spec.dim)
            report = Indexer(store, embedder, batch_size=batch, workers=workers).run([str(f) for f in files])
        finally:
            store.close()
    if report.skipped:
        raise RuntimeError(f"indexing skipped files: {report.skipped[:3]}")
    return IndexRun(images=report.embedded, seconds=report.seconds)


def image_files(folder: Path, limit: int | None = None) -> list[Path]:
    """JPEGs under *folder* in a stable order."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    return files[:limit] if limit else files


def default_threads() -> int:
    return os.cpu_count() or 1
