"""Settings sweep: ONNX Runtime graph optimisation level, intra-op threads vs decode workers, batch size.

Not part of the headline table: it is how the defaults were chosen, and it is
re-run with ``--sweep`` (and in ``--full``) so a new machine can check them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .indexing import pixsearch_index


def session_rate(model_path: Path, level: str, threads: int, batch: int, seconds: float = 6.0) -> float:
    """Images/s of a bare image-tower session on random input (no decoding, no store)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    pixels = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    session.run(None, {name: pixels})
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {name: pixels})
        done += batch
    return done / (time.perf_counter() - start)


def optimisation_levels(model_dir: Path, files: Sequence[str], log=print) -> list[dict]:
    """Bare-session throughput of fp32 and int8 towers at each graph optimisation level."""
    out = []
    for file in files:
        for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
            rate = session_rate(model_dir / file, level, threads=0, batch=32)
            out.append({"file": file, "level": level, "images_per_s": rate})
            log(f"  {file} {level}: {rate:.1f} img/s")
    return out


def pipeline_grid(model_dir: Path, variant: str, images: Sequence[Path], log=print) -> list[dict]:
    """End-to-end Indexer rate for combinations of ORT threads, decode workers and batch size."""
    out = []
    for threads, workers, batch in ((2, 2, 32), (2, 1, 32), (1, 1, 32), (1, 2, 32), (2, 2, 8), (2, 2, 64)):
        run = pixsearch_index(model_dir, variant, images, batch=batch, workers=workers, threads=threads)
        out.append({"variant": variant, "threads": threads, "workers": workers, "batch": batch, "rate": run.rate})
        log(f"  {variant} threads={threads} workers={workers} batch={batch}: {run.rate:.1f} img/s")
    return out
