"""Pipeline efficiency: end-to-end ``Indexer`` rate over the bare image tower's, per backend, same run.

``python -m bench.pipeline [--images N] [--rounds R] [--backends fp32,openvino-int8]``

For each backend: the bare tower (model-sized crops already in memory, batches of 32, the same
embedder object) and the real Indexer (read, hash, EXIF date, decode, resize, embed, Milvus Lite
upsert into a fresh file) on the same COCO photos, interleaved round by round so contention on a
shared machine lands on both; the best round of each counts. Also the single-thread cost of each
decode stage per image, which says how much of the cores decoding takes from the tower, and the
``ceiling`` it implies (``cpu_ceiling``): the efficiency a perfect pipeline would reach on these cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.images import decode_image, read_file
from pixsearch.indexer import Indexer, content_hash
from pixsearch.models.base import Embedder
from pixsearch.store import Store, collection_name_for

from .indexing import image_files
from .models import SHARED, model_spec, onnx_dir

COCO = SHARED / "coco-mini" / "images"


def stage_costs(embedder: Embedder, files: Sequence[Path]) -> dict[str, float]:
    """Milliseconds per image of each decode stage, one thread."""
    totals = dict.fromkeys(("read", "hash", "decode", "prepare"), 0.0)
    for path in files:
        t0 = time.perf_counter()
        data = read_file(path, 1 << 28)
        t1 = time.perf_counter()
        content_hash(data)
        t2 = time.perf_counter()
        image = decode_image(data, min_side=embedder.min_decode_side, max_pixels=250_000_000)
        t3 = time.perf_counter()
        embedder.prepare(image.rgb)
        t4 = time.perf_counter()
        for key, span in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[key] += span
    return {k: round(1000 * v / len(files), 2) for k, v in totals.items()}


def bare_rate(embedder: Embedder, crops: Sequence[np.ndarray], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(crops), batch):
        embedder.embed_prepared(crops[i:i + batch])
    return len(crops) / (time.perf_counter() - start)


def index_rate(embedder: Embedder, files: Sequence[Path], batch: int, workers: int) -> float:
    spec_id = embedder.model_id
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        store = Store(str(Path(tmp) / "bench.db"), collection=collection_name_for(spec_id))
        try:
            store.ensure_collection(spec_id, "bench", embedder.dim)
            report = Indexer(store, embedder, batch_size=batch, workers=workers).run([str(f) for f in files])
        finally:
            store.close()
    if report.skipped:
        raise RuntimeError(f"indexing skipped files: {report.skipped[:3]}")
    return report.images_per_second


def embedders(names: Sequence[str], files: Sequence[Path]) -> dict[str, Callable[[], Embedder]]:
    from pixsearch.models.onnx import OnnxEmbedder

    spec = model_spec(onnx_dir("vit-b-32"))
    cache = Path(tempfile.gettempdir()) / "pixsearch-bench-pipeline"
    out: dict[str, Callable[[], Embedder]] = {}
    for name in names:
        if name == "fp32":
            out[name] = lambda: OnnxEmbedder(spec)
        elif name.startswith("openvino-"):
            from pixsearch.models.openvino import OpenVinoEmbedder, int8_image_file

            precision = name.removeprefix("openvino-")
            if precision == "int8" and int8_image_file(spec, cache) is None:
                from pixsearch.models.nncf_int8 import build_int8_image

                reference = OnnxEmbedder(spec)
                crops = [reference.prepare(decode_image(read_file(f, 1 << 28), min_side=reference.min_decode_side,
                                                        max_pixels=250_000_000).rgb) for f in files[:32]]
                build_int8_image(spec, cache, crops, print)
            out[name] = lambda p=precision: OpenVinoEmbedder(spec, cache, precision=p)  # type: ignore[misc]
        else:
            out[name] = lambda n=name: OnnxEmbedder(spec, variant=n)  # type: ignore[misc]
    return out


def cpu_ceiling(bare_rate: float, decode_ms: float, cores: int) -> float:
    """The best end-to-end / bare ratio when decoding and the tower share the same cores.

    The bare tower keeps every core busy, so it spends ``cores / bare_rate`` CPU-seconds per image;
    decoding adds ``decode_ms`` of its own. No pipeline beats their ratio without more cores (or a
    cheaper decode): on 2 cores a fast INT8 tower is capped well below a slow fp32 one."""
    tower_ms = 1000.0 * cores / bare_rate
    return round(tower_ms / (tower_ms + decode_ms), 3)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--backends", default="fp32,openvino-int8")
    parser.add_argument("--folder", type=Path, default=COCO, help="photos to index (default: the shared COCO set)")
    args = parser.parse_args(argv)
    files = image_files(args.folder, args.images)
    if not files:
        raise SystemExit(f"no JPEG photos under {args.folder}; pass --folder")
    makers = embedders(args.backends.split(","), files)
    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "load": os.getloadavg()[0], "images": len(files)}
    for name, make in makers.items():
        embedder = make()
        crops = [embedder.prepare(decode_image(read_file(f, 1 << 28), min_side=embedder.min_decode_side,
                                               max_pixels=250_000_000).rgb) for f in files]
        embedder.embed_prepared(crops[: args.batch])  # open and warm the tower
        bare, end = [], []
        for _ in range(args.rounds):
            bare.append(bare_rate(embedder, crops, args.batch))
            end.append(index_rate(embedder, files, args.batch, args.workers))
        stages = stage_costs(embedder, files[:32])
        results[name] = {"bare": round(max(bare), 2), "index": round(max(end), 2),
                         "efficiency": round(max(end) / max(bare), 3), "stages_ms": stages,
                         "ceiling": cpu_ceiling(max(bare), sum(stages.values()), os.cpu_count() or 1),
                         "rounds_bare": [round(r, 1) for r in bare], "rounds_index": [round(r, 1) for r in end]}
        print(name, results[name], flush=True)
    results["load_after"] = os.getloadavg()[0]
    print(results, flush=True)
    return results


if __name__ == "__main__":
    main()
