"""How a model wants its pixels: resize, centre-crop and normalise decoded RGB images.

Each model states its preprocessing in its own config files (read in spec.py and
thirdparty.py) as a ``PreprocessConfig``; indexing, training and INT8 verification
all go through the two functions here, so a model always sees the pixels it was
trained on. Decoding files into RGB arrays is ``pixsearch.images``' job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from ..errors import PixsearchError

ResizeMode = Literal["shortest", "squash"]
Interpolation = Literal["bicubic", "bilinear", "nearest"]


class PreprocessError(PixsearchError, ValueError):
    """A model's preprocessing settings cannot be used; the message names the setting."""


@dataclass(frozen=True)
class PreprocessConfig:
    """How a model wants its pixels; always read from the model's own config files."""

    size: tuple[int, int]
    """Final (height, width) fed to the model."""
    resize: ResizeMode = "shortest"
    """``shortest``: scale the short side to fit, then centre-crop (CLIP).
    ``squash``: scale straight to ``size``, ignoring aspect ratio (SigLIP)."""
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    shortest_edge: int | None = None
    """For ``shortest``: the short side before cropping (defaults to min(size))."""


def channel_values(values: Iterable[Any], what: str) -> tuple[float, float, float]:
    """Per-channel (R, G, B) mean or std from a config; one value stands for all three channels."""
    numbers = [float(v) for v in values]
    if len(numbers) == 1:
        numbers *= 3
    if len(numbers) != 3:
        raise PreprocessError(f"{what}: expected 3 per-channel values (R, G, B), got {len(numbers)}")
    return numbers[0], numbers[1], numbers[2]


def interpolation_named(name: object) -> Interpolation:
    """A config's interpolation name, or ``bicubic`` (the CLIP default) for anything else."""
    if name == "bilinear":
        return "bilinear"
    if name == "nearest":
        return "nearest"
    return "bicubic"


def resize_named(name: object) -> ResizeMode:
    return "squash" if name == "squash" else "shortest"


_INTERPOLATION: dict[Interpolation, int] = {
    "bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST,
}


def _resize(img: np.ndarray, width: int, height: int, interpolation: Interpolation) -> np.ndarray:
    """Resize like PIL's antialiased filters: area-average big reductions first."""
    if img.shape[1] == width and img.shape[0] == height:
        return img
    if img.shape[1] > 2 * width and img.shape[0] > 2 * height:
        img = cv2.resize(img, (2 * width, 2 * height), interpolation=cv2.INTER_AREA)
    return cv2.resize(img, (width, height), interpolation=_INTERPOLATION[interpolation])


def resize_and_crop(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """The model-sized H x W x 3 uint8 crop of *rgb* described by *cfg*."""
    out_h, out_w = cfg.size
    if cfg.resize == "squash":
        return _resize(rgb, out_w, out_h, cfg.interpolation)
    short = cfg.shortest_edge or min(out_h, out_w)
    h, w = rgb.shape[:2]
    scale = short / min(h, w)
    new_w, new_h = max(out_w, round(w * scale)), max(out_h, round(h * scale))
    resized = _resize(rgb, new_w, new_h, cfg.interpolation)
    top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
    return resized[top : top + out_h, left : left + out_w]


def to_model_input(crops: Sequence[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """Stack model-sized uint8 crops into a normalised N x 3 x H x W float32 batch."""
    batch = np.stack(crops).astype(np.float32)
    batch *= 1.0 / 255.0
    batch -= np.asarray(cfg.mean, dtype=np.float32)
    batch /= np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
