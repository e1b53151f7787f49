"""Shared helpers for the benchmark suite: machine facts, timing statistics, RSS, result rows."""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "data"
COCO = SHARED / "coco-mini" / "images"


@dataclass
class Row:
    """One line of the result table: a figure next to the baseline measured in the same run."""

    section: str
    what: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_what: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """value / baseline (for latencies the table says which way is better)."""
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPU model and flags that matter, cores, memory, library versions."""
    cpu = ""
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.*)", text)
        cpu = match.group(1).strip() if match else ""
        match = re.search(r"flags\s*:\s*(.*)", text)
        flags = set(match.group(1).split()) if match else set()
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for name in ("onnxruntime", "torch", "numpy", "cv2", "pymilvus", "milvus_lite"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except Exception:
            versions[name] = None
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1), "python": platform.python_version(),
            "cpu_flags": [f for f in wanted if f in flags], "load_avg_at_start": os.getloadavg()[0],
            "versions": versions}


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50/p95/mean in milliseconds."""
    ms = np.asarray(samples_s) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "mean": float(ms.mean()),
            "n": len(ms)}


def time_calls(fn: Callable[[int], Any], count: int, warmup: int = 3) -> list[float]:
    """Seconds taken by fn(i) for i in range(count), after *warmup* untimed calls."""
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(count):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def _children(pid: int) -> list[int]:
    """Direct children of *pid*, from /proc (Linux)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(x) for x in path.read_text().split()]
    except OSError:
        return []


def tree_rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process and all its descendants (Milvus Lite runs its engine in a child)."""
    pid = pid or os.getpid()
    total, stack = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while stack:
        current = stack.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        stack.extend(_children(current))
    return total / 2**20


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
