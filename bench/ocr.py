"""OCR cost and accuracy, and what ``--ocr`` does to indexing throughput (``python -m bench.ocr``).

Renders photos from the shared clothing set with known words (quality.rendered: four fonts, three
sizes, three rotations), then measures for each engine configuration the share of words read and
the ms per image, and indexes the same images with and without ``--ocr`` (a model given by
``--model``, default the tiny test model: OCR's cost then stands out against a near-free embedder).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixsearch.indexer import Indexer
from pixsearch.models import load_embedder
from pixsearch.ocr import ENGINE_OPTIONS, Recognizer
from pixsearch.quality.rendered import render_set
from pixsearch.store import Store, words

from .common import RESULTS, ROOT, SHARED

WORDS = ["invoice", "harbor", "quantum", "velvet", "meadow", "crimson", "falcon", "orbit", "lantern", "pepper",
         "summit", "tundra", "cobalt", "zephyr", "marble", "saffron", "glacier", "nectar", "pixel", "walnut",
         "ember", "jasmine", "copper", "violet", "thunder", "bamboo", "lagoon", "cactus"]
CONFIGS: dict[str, dict[str, Any]] = {
    "engine defaults (shorter side to 736 px, angle classifier)": {"print_verbose": False},
    "no angle classifier": {"print_verbose": False, "use_cls": False},
    "chosen: longer side <= 960 px, no classifier": dict(ENGINE_OPTIONS),
    "longer side <= 640 px, no classifier": {**ENGINE_OPTIONS, "det_limit_side_len": 640},
}


def accuracy(paths: list[tuple[str, Path]], options: dict[str, Any]) -> dict[str, float]:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(**options)
    images = [(word, np.ascontiguousarray(np.asarray(Image.open(p).convert("RGB"))[:, :, ::-1])) for word, p in paths]
    engine(images[0][1])  # warm-up
    found, times = 0, []
    for word, image in images:
        started = time.perf_counter()
        result, _ = engine(image)
        times.append(time.perf_counter() - started)
        found += word in words(" ".join(str(r[1]) for r in (result or []) if float(r[2]) >= 0.5))
    return {"word_accuracy": found / len(images), "ms_p50": 1000 * statistics.median(times),
            "ms_mean": 1000 * statistics.mean(times)}


def throughput(folder: Path, model: str, cache: str, ocr: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(str(Path(tmp) / "bench.db"), collection="pixsearch_bench_ocr")
        embedder = load_embedder(model, cache, threads=0, precision="fp32")
        store.ensure_collection(embedder.model_id, model, embedder.dim)
        indexer = Indexer(store, embedder, ocr=Recognizer() if ocr else None)
        report = indexer.run([folder])
        store.close()
        return (report.added + report.updated) / report.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="", help="model to index with (default: the tiny test model)")
    args = parser.parse_args()
    data = SHARED if SHARED.is_dir() else ROOT.parents[1] / "shared" / "data"  # a worktree sits one level deeper
    backgrounds = sorted((data / "clothing" / "test").rglob("*.jpg"))[::4][:10]
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render_set(backgrounds, WORDS, Path(tmp) / "written")
        paths = [(r.word, r.path) for r in rendered]
        results: dict[str, Any] = {"images": len(paths), "configs": {}}
        for name, options in CONFIGS.items():
            results["configs"][name] = accuracy(paths, options)
            print(f"{name}: {json.dumps(results['configs'][name])}", flush=True)
        model = args.model
        if not model:
            from tests.conftest import CAPTIONS
            from tests.tiny_model import build_tiny_model

            model = str(build_tiny_model(Path(tmp) / "tiny", texts=CAPTIONS * 5))
        for ocr in (False, True):
            rate = throughput(rendered[0].path.parent, model, tmp, ocr)
            results[f"index_images_per_s_ocr_{'on' if ocr else 'off'}"] = rate
            print(f"indexing {'with' if ocr else 'without'} --ocr: {rate:.2f} images/s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ocr.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
