"""The compute limit: peak fp32 matmul throughput of this CPU and the FLOPs a ViT image costs.

Dividing the two gives the most images per second any fp32 implementation of the
model could reach here; the pipeline's measured rate as a share of it shows how
much is left on the table (and why INT8, which changes the ceiling, is needed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def peak_matmul_gflops(size: int = 2048, seconds: float = 3.0) -> dict[str, float]:
    """Best fp32 GFLOP/s of square matmuls with NumPy's BLAS and with torch (if installed)."""
    out: dict[str, float] = {}
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    out["numpy"] = _best_rate(lambda: a @ b, size, seconds)
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        out["torch"] = _best_rate(lambda: torch.mm(ta, tb), size, seconds)
    except ImportError:
        pass
    return out


def _best_rate(fn, size: int, seconds: float) -> float:
    """Highest rate over repeated runs: the ceiling is the best case, not the average."""
    fn()
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def vit_gflops_per_image(checkpoint: Path) -> float:
    """Forward FLOPs (2 x multiply-adds) of a CLIP image tower, from its transformers config."""
    vision = json.loads((checkpoint / "config.json").read_text())["vision_config"]
    width = vision.get("hidden_size", 768)
    layers = vision.get("num_hidden_layers", 12)
    mlp = vision.get("intermediate_size", 4 * width)
    patch = vision.get("patch_size", 32)
    size = vision.get("image_size", 224)
    patches = (size // patch) ** 2
    tokens = patches + 1
    per_layer = 4 * tokens * width * width + 2 * tokens * width * mlp + 2 * tokens * tokens * width
    embed = patches * 3 * patch * patch * width
    projection = width * json.loads((checkpoint / "config.json").read_text()).get("projection_dim", 512)
    return 2 * (layers * per_layer + embed + projection) / 1e9
