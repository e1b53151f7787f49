"""Training-time image augmentation on model-sized uint8 crops (numpy + OpenCV, no torchvision).

A from-scratch model sees each of a few thousand photos dozens of times; without
augmentation it memorises them (training loss falls, held-out recall stalls). The
three classic CLIP/ImageNet augmentations are applied per image, each drawn from a
seeded generator so a resumed epoch replays the same pixels:

- random resized crop: a random region (``scale`` of the area, aspect 3/4..4/3)
  resized back to the model's size, so objects are seen at several sizes and places;
- horizontal flip;
- colour jitter: brightness, contrast and saturation each scaled by 1 ± ``jitter``.

Validation and indexing never augment: they use the crop indexing makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Crop = npt.NDArray[np.uint8]
_GREY = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Augment:
    """Augmentation strengths; ``Augment.off()`` leaves images as they are."""

    scale: tuple[float, float] = (0.5, 1.0)
    """Area share of the random crop (1, 1: no crop)."""
    flip: bool = True
    jitter: float = 0.3
    """Brightness/contrast/saturation factor range 1 ± jitter (0: none)."""

    @classmethod
    def off(cls) -> Augment:
        return cls(scale=(1.0, 1.0), flip=False, jitter=0.0)

    @property
    def active(self) -> bool:
        return self.scale != (1.0, 1.0) or self.flip or self.jitter > 0


def _crop_box(height: int, width: int, scale: tuple[float, float],
              rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random region with area share in *scale* and aspect in [3/4, 4/3]."""
    area = height * width * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = min(width, max(1, round(math.sqrt(area * aspect))))
    h = min(height, max(1, round(math.sqrt(area / aspect))))
    return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w


def _jitter(image: npt.NDArray[np.float32], amount: float, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Brightness, contrast and saturation, each by a factor in 1 ± *amount* (values stay in 0..255)."""
    brightness, contrast, saturation = rng.uniform(1 - amount, 1 + amount, size=3)
    image = image * brightness
    image = (image - image.mean()) * contrast + image.mean()
    grey = (image @ _GREY)[..., None]
    image = (image - grey) * saturation + grey
    return np.clip(image, 0, 255)


def augment_crop(crop: Crop, aug: Augment, rng: np.random.Generator) -> Crop:
    """One augmented copy of *crop* (same shape and dtype)."""
    if not aug.active:
        return crop
    height, width = crop.shape[:2]
    out = crop
    if aug.scale != (1.0, 1.0):
        top, left, h, w = _crop_box(height, width, aug.scale, rng)
        out = np.asarray(cv2.resize(np.ascontiguousarray(out[top:top + h, left:left + w]), (width, height),
                                    interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
    if aug.flip and rng.random() < 0.5:
        out = out[:, ::-1]
    if aug.jitter > 0:
        out = _jitter(out.astype(np.float32), aug.jitter, rng).astype(np.uint8)
    return np.ascontiguousarray(out)
