"""Random-weight CLIP models with real ViT-B shapes, built once and cached for the benchmarks.

Random weights have exactly the compute of the real checkpoints (no pretrained
weights can be downloaded here), so throughput figures transfer; agreement
figures (INT8 vs fp32) do not fully transfer, because trained weights have
outlier channels, which is why ``pixsearch quantize`` verifies every model itself.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CAPTIONS = SHARED / "coco-mini" / "captions.jsonl"
PRESETS = ("vit-b-32", "vit-b-16")


def cache_root() -> Path:
    """Where benchmark models and synthetic data live: reused across runs, outside the repo."""
    explicit = os.environ.get("PIXSEARCH_BENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pixsearch" / "bench"


def caption_corpus(limit: int = 2000) -> list[str]:
    """Texts to train the scratch tokenizer on: COCO captions when present, else a few fixed ones."""
    texts: list[str] = []
    if CAPTIONS.is_file():
        for line in CAPTIONS.read_text(encoding="utf-8").splitlines():
            texts.extend(json.loads(line).get("captions", []))
            if len(texts) >= limit:
                break
    return texts or ["a photo of a dog", "a red car in the snow", "people on a beach", "a bowl of fruit"]


def checkpoint_dir(preset: str) -> Path:
    return cache_root() / "checkpoints" / preset


def onnx_dir(preset: str) -> Path:
    return cache_root() / "onnx" / preset


def ensure_checkpoint(preset: str) -> Path:
    """The transformers checkpoint of *preset*, created on first use (atomic: no half models)."""
    from pixsearch.models.scratch import new_clip_checkpoint

    target = checkpoint_dir(preset)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{preset}-", dir=target.parent))
    try:
        new_clip_checkpoint(tmp, preset, texts=caption_corpus(), seed=0)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def ensure_onnx(preset: str) -> Path:
    """The pixsearch ONNX model of *preset* (converted and verified by pixsearch's converter)."""
    from pixsearch.models.convert import convert_checkpoint

    target = onnx_dir(preset)
    if (target / "pixsearch.json").is_file():
        return target
    checkpoint = ensure_checkpoint(preset)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{preset}-", dir=target.parent))
    try:
        convert_checkpoint(checkpoint, tmp, model_id=f"bench-{preset}")
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def model_spec(directory: Path):
    """The ModelSpec of a benchmark model, with the variants `pixsearch quantize` recorded for it."""
    from pixsearch.models.spec import read_pixsearch_dir
    from pixsearch.models.variants import with_overlay

    return with_overlay(read_pixsearch_dir(directory), cache_root())


def text_embedders(preset: str) -> dict:
    """The fp32 text tower of *preset*, and its int8 one when the INT8 variant quantized it (name -> embedder)."""
    from pixsearch.models.onnx import OnnxEmbedder

    spec = model_spec(ensure_onnx(preset))
    embedders = {"fp32": OnnxEmbedder(spec, variant="fp32")}
    int8 = spec.variants.get("int8")
    if int8 is not None and int8.text_recipe != "fp32":
        embedders["int8"] = OnnxEmbedder(spec, variant="int8")
    return embedders


def ensure_int8(preset: str, sample_images: list[Path]) -> dict:
    """Quantize *preset* once (pixsearch quantize, overlay in the bench cache) and return its int8 entry."""
    from pixsearch.models.quantize import LADDER, quantize_model

    directory = ensure_onnx(preset)
    spec = model_spec(directory)
    int8 = spec.variants.get("int8")
    if int8 is None or int8.ladder != LADDER:  # none yet, or made by an older recipe ladder
        quantize_model(spec, cache_root(), sample_images=sample_images)
        spec = model_spec(directory)
    return spec.variants["int8"].to_json()


if __name__ == "__main__":
    for name in PRESETS:
        print(name, ensure_onnx(name), flush=True)
