"""Peak memory while indexing a large synthetic library, and the cost of re-indexing it unchanged.

Runs in its own process (``python -m bench.memory N OUT.json``) so that nothing
the other sections loaded inflates the figures. RSS is sampled every 0.25 s for
the Python process and, separately, for Milvus Lite's engine (a child process
whose memory holds the vectors themselves and so must grow with the library).
The pipeline's own memory must not: a flat Python RSS is the claim under test.

The model is the ``small`` scratch preset (64 px input): the point is the
pipeline's memory, and a fast model makes any backlog (and leak) show sooner.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from .common import log, tree_rss_mb
from .models import cache_root, ensure_onnx

MODEL_PRESET = "small"


def synthetic_library(count: int, size: tuple[int, int] = (160, 120)) -> Path:
    """*count* distinct small JPEGs (1000 per folder), generated once and cached."""
    root = cache_root() / "synthetic" / f"{count}"
    done = root / ".complete"
    if done.is_file():
        return root
    rng = np.random.default_rng(count)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        folder = root / f"{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(-2, 2, 3)
        base = (np.sin(xs * a / 20 + ys * b / 20 + c) * 127 + 128).astype(np.uint8)
        img = cv2.merge([base, np.roll(base, int(rng.integers(width)), axis=1), base[::-1]])
        x0, y0 = int(rng.integers(width - 20)), int(rng.integers(height - 20))
        cv2.rectangle(img, (x0, y0), (x0 + 20, y0 + 20), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        cv2.putText(img, str(i), (4, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        cv2.imwrite(str(folder / f"img{i:07d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    done.touch()
    return root


def _rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


class RssSampler(threading.Thread):
    """Samples (seconds, files done, Python RSS MB, engine RSS MB) in the background."""

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self.interval = interval
        self.done = 0
        self.samples: list[tuple[float, int, float, float]] = []
        self._halt = threading.Event()
        self._start = time.perf_counter()

    def run(self) -> None:
        pid = os.getpid()
        while not self._halt.is_set():
            own = _rss_mb(pid)
            engine = tree_rss_mb(pid) - own
            self.samples.append((time.perf_counter() - self._start, self.done, own, engine))
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def summarise(samples: list[tuple[float, int, float, float]], total: int) -> dict:
    """Peak RSS and RSS at quarter points of progress: flat Python RSS means no growth with library size."""
    arr = np.asarray(samples)
    out = {"peak_python_mb": float(arr[:, 2].max()), "peak_engine_mb": float(arr[:, 3].max()),
           "samples": [[round(float(t), 2), int(d), round(float(p), 1), round(float(e), 1)] for t, d, p, e in arr]}
    quarters = {}
    for q in (0.25, 0.5, 0.75, 1.0):
        idx = int(np.searchsorted(arr[:, 1], q * total))
        idx = min(idx, len(arr) - 1)
        quarters[f"{int(q * 100)}%"] = {"python_mb": float(arr[idx, 2]), "engine_mb": float(arr[idx, 3])}
    out["at_progress"] = quarters
    growth = quarters["100%"]["python_mb"] - quarters["25%"]["python_mb"]
    out["python_growth_mb_per_10k"] = growth / (0.75 * total / 10_000) if total else 0.0
    return out


def run(count: int, out_path: Path) -> dict:
    """Index *count* synthetic images (RSS sampled), then re-index the unchanged tree; write JSON."""
    import tempfile

    from pixsearch.indexer import Indexer
    from pixsearch.models.onnx import OnnxEmbedder
    from pixsearch.models.spec import read_pixsearch_dir
    from pixsearch.store import Store, collection_name_for

    started = time.perf_counter()
    library = synthetic_library(count)
    generate_s = time.perf_counter() - started
    spec = read_pixsearch_dir(ensure_onnx(MODEL_PRESET))
    embedder = OnnxEmbedder(spec)
    embedder.embed_prepared([np.zeros((*spec.preprocess.size, 3), np.uint8)])
    result: dict = {"images": count, "model": MODEL_PRESET, "generate_seconds": generate_s,
                    "rss_before_mb": _rss_mb(os.getpid())}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        store = Store(str(Path(tmp) / "memory.db"), collection=collection_name_for(spec.model_id))
        try:
            store.ensure_collection(spec.model_id, MODEL_PRESET, spec.dim)
            sampler = RssSampler()
            sampler.start()

            def progress(done: int, total: int) -> None:
                sampler.done = done

            first = Indexer(store, embedder).run([str(library)], progress=progress)
            sampler.stop()
            result["first_run"] = {"seconds": first.seconds, "embedded": first.embedded,
                                   "rate": first.images_per_second, "skipped": len(first.skipped),
                                   **summarise(sampler.samples, count)}
            log(f"  first run: {first.summary()}")
            second_sampler = RssSampler()
            second_sampler.start()
            second = Indexer(store, embedder).run([str(library)])
            second_sampler.stop()
            result["reindex"] = {"seconds": second.seconds, "unchanged": second.unchanged, "embedded": second.embedded,
                                 "peak_python_mb": max(s[2] for s in second_sampler.samples)}
            log(f"  re-index:  {second.summary()}")
        finally:
            store.close()
    out_path.write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    run(int(sys.argv[1]), Path(sys.argv[2]))
