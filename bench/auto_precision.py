"""Break-even of ``--precision auto``: when building an INT8 variant costs less than it saves.

Builds, verifies and times the INT8 variant of a random-weight ViT-B/32 (``bench/models.py``) the
way the first ``index`` does (``models.autotune.measure`` on 32 photos), then times fp32 and
int8 image towers *interleaved* (fp32, int8, fp32, int8, ...) so that load from other processes
on a shared machine hits both alike, and prints N = build seconds / seconds saved per image.

    PYTHONPATH=src python -m bench.auto_precision [--rounds 3] [--images 64] [--photos DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.models import SHARED, ensure_onnx, model_spec


def _crops(embedder, paths: list[Path]) -> list:
    from pixsearch.images import load_image

    return [embedder.prepare(load_image(p, min_side=embedder.min_decode_side).rgb) for p in paths]


def main() -> None:
    from pixsearch.models.autotune import SAMPLE_IMAGES, break_even, machine_fingerprint, measure
    from pixsearch.models.onnx import OnnxEmbedder
    from pixsearch.models.variants import with_overlay

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--photos", type=Path, default=SHARED / "coco-mini" / "images")
    args = parser.parse_args()
    photos = sorted(args.photos.rglob("*.jpg"))
    if len(photos) < SAMPLE_IMAGES:
        raise SystemExit(f"{args.photos}: needs at least {SAMPLE_IMAGES} photos (--photos DIR)")
    spec = model_spec(ensure_onnx("vit-b-32"))
    with tempfile.TemporaryDirectory(prefix="auto-precision-") as cache:
        started = time.perf_counter()
        decision = measure(spec, Path(cache), photos[:SAMPLE_IMAGES], say=print)
        build = time.perf_counter() - started
        tuned = with_overlay(spec, Path(cache))
        towers = {name: OnnxEmbedder(tuned, variant=name) for name in ("fp32", "int8")}
        crops = _crops(towers["fp32"], photos[:args.images])
        best = {name: float("inf") for name in towers}
        for embedder in towers.values():
            embedder.embed_prepared(crops[:8])  # warm-up
        for _ in range(args.rounds):
            for name, embedder in towers.items():
                begin = time.perf_counter()
                embedder.embed_prepared(crops)
                best[name] = min(best[name], time.perf_counter() - begin)
    rates = {name: len(crops) / seconds for name, seconds in best.items()}
    result = {"machine": machine_fingerprint(), "decision": decision.reason, "build_verify_seconds": round(build, 1),
              "image_img_per_s": {k: round(v, 2) for k, v in rates.items()},
              "break_even_images": round(break_even(build, rates["fp32"], rates["int8"]))}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
