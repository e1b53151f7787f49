"""PNG charts of ``pixsearch eval`` results, drawn with OpenCV.

OpenCV is already a dependency; matplotlib (with fonttools, kiwisolver, contourpy,
pillow...) would add tens of MB to every install for two simple plots.
Captions data gets a Recall@k curve per model; labelled data gets per-label
precision bars per model. Chance is drawn as a grey dashed line or tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Color = tuple[int, int, int]

WIDTH, HEIGHT = 960, 540
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 30, 60, 80
FONT = cv2.FONT_HERSHEY_SIMPLEX
PALETTE: list[Color] = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140)]
"""Tableau colours, in OpenCV's BGR order."""
BLACK: Color = (30, 30, 30)
GREY: Color = (150, 150, 150)
LIGHT: Color = (225, 225, 225)


def _text(img: Image, text: str, x: int, y: int, scale: float = 0.45, color: Color = BLACK,
          center: bool = False) -> None:
    if center:
        (width, _), _ = cv2.getTextSize(text, FONT, scale, 1)
        x -= width // 2
    cv2.putText(img, text, (int(x), int(y)), FONT, scale, color, 1, cv2.LINE_AA)


def _dashed(img: Image, p0: tuple[int, int], p1: tuple[int, int], color: Color = GREY, dash: int = 6) -> None:
    length = max(1, int(np.hypot(p1[0] - p0[0], p1[1] - p0[1])))
    for start in range(0, length, 2 * dash):
        a, b = start / length, min(1.0, (start + dash) / length)
        q0 = (int(p0[0] + a * (p1[0] - p0[0])), int(p0[1] + a * (p1[1] - p0[1])))
        q1 = (int(p0[0] + b * (p1[0] - p0[0])), int(p0[1] + b * (p1[1] - p0[1])))
        cv2.line(img, q0, q1, color, 1, cv2.LINE_AA)


class _Axes:
    """Maps data coordinates (x in [x0, x1], y in [0, 1]) to pixels and draws the frame."""

    def __init__(self, img: Image, x0: float, x1: float, title: str, ylabel: str) -> None:
        self.img, self.x0, self.x1 = img, x0, x1
        self.left, self.right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
        self.top, self.bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
        _text(img, title, WIDTH // 2, 30, 0.6, center=True)
        for tick in np.linspace(0, 1, 6):
            y = self.y(tick)
            cv2.line(img, (self.left, y), (self.right, y), LIGHT, 1)
            _text(img, f"{tick:.1f}", self.left - 35, y + 5)
        cv2.rectangle(img, (self.left, self.top), (self.right, self.bottom), BLACK, 1)
        _text(img, ylabel, 8, self.top - 12)

    def x(self, value: float) -> int:
        span = (self.x1 - self.x0) or 1.0
        return int(self.left + (value - self.x0) / span * (self.right - self.left))

    def y(self, value: float) -> int:
        return int(self.bottom - max(0.0, min(1.0, value)) * (self.bottom - self.top))


def _legend(img: Image, names: Sequence[str], chance_label: str) -> None:
    x = MARGIN_LEFT
    for index, name in enumerate([*names, chance_label]):
        color = PALETTE[index % len(PALETTE)] if index < len(names) else GREY
        label = Path(name).name if "/" in name else name
        cv2.rectangle(img, (x, HEIGHT - 28), (x + 14, HEIGHT - 16), color, -1)
        _text(img, label[:40], x + 20, HEIGHT - 17)
        (width, _), _ = cv2.getTextSize(label[:40], FONT, 0.45, 1)
        x += width + 50


def _where(result: dict[str, Any]) -> str:
    """The data's last two path parts: enough to tell test/ from train/ without a long path."""
    return "/".join(Path(result["dataset"]).parts[-2:])


def recall_chart(result: dict[str, Any]) -> Image:
    """Recall@k against k for every model, with the chance line k/N."""
    img = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    curves = [m["ann"]["curve"] for m in result["models"]]
    last = max(len(c) for c in curves)
    axes = _Axes(img, 1, max(2, last), f"text-to-image Recall@k  ({_where(result)})", "recall")
    for k in sorted({1, 5, 10, 20, 30, 40, 50, last}):
        if k <= last:
            _text(img, str(k), axes.x(k), axes.bottom + 18, center=True)
    _text(img, "k", WIDTH // 2, axes.bottom + 38, center=True)
    n = result["images"]
    _dashed(img, (axes.x(1), axes.y(1 / n)), (axes.x(last), axes.y(last / n)))
    for index, curve in enumerate(curves):
        points = np.array([[axes.x(k), axes.y(v)] for k, v in enumerate(curve, start=1)], np.int32)
        cv2.polylines(img, [points], False, PALETTE[index % len(PALETTE)], 2, cv2.LINE_AA)
    _legend(img, [m["model"] for m in result["models"]], "chance")
    return img


def label_chart(result: dict[str, Any]) -> Image:
    """Per-label precision@k (largest k) bars, one per model, with each label's chance as a grey tick."""
    img = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    k = max(result["ks"])
    labels = result["labels"]
    axes = _Axes(img, 0, len(labels), f"label-prompt precision@{k}  ({_where(result)})", f"precision@{k}")
    models = result["models"]
    group = (axes.right - axes.left) / len(labels)
    bar = max(2, int(group * 0.8 / len(models)))
    chance = result.get("label_chance", {})
    for li, label in enumerate(labels):
        start = axes.left + li * group + group * 0.1
        for mi, model in enumerate(models):
            value = model["ann"]["per_label"].get(label, {}).get(f"precision@{k}", 0.0)
            x = int(start + mi * bar)
            cv2.rectangle(img, (x, axes.y(value)), (x + bar - 1, axes.bottom), PALETTE[mi % len(PALETTE)], -1)
        if label in chance:
            y = axes.y(chance[label])
            cv2.line(img, (int(start), y), (int(start + group * 0.8), y), GREY, 2)
        _text(img, label[:12], int(axes.left + (li + 0.5) * group), axes.bottom + 18, 0.4, center=True)
    _legend(img, [m["model"] for m in models], "chance (grey ticks)")
    return img


def save_chart(result: dict[str, Any], path: Path) -> Path:
    """Draw the chart that fits *result*'s data kind and write it as a PNG."""
    img = recall_chart(result) if result["kind"] == "captions" else label_chart(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - OpenCV always encodes 8-bit BGR
        raise OSError(f"could not encode {path}")
    path.write_bytes(data.tobytes())
    return path
