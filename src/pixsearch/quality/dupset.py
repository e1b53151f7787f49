"""A labelled duplicate set made from ordinary photos, and how a duplicate finder scores on it.

For each original photo ``build`` writes altered copies that are the same picture (an exact
copy, JPEG re-encodes at quality 50 and 90, a 50% resize, 5% and 10% crops, rotations by 90
and 180 degrees, a mirror image, the file with its metadata segments stripped) and near misses
that are not (a 30% crop shifted to a corner: "similar but different"; a slightly shifted,
re-exposed frame: "the same scene a second later"). Originals of the same label (a folder of
dresses) are distinct photos that look alike: negatives too.

``score`` turns a finder's groups into pairs and measures precision and recall against the
truth: two files are duplicates exactly when they come from the same original by a copy
variant. Used by ``bench/duplicates.py`` and the duplicate tests; never by serving.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from ..images import load_image

Rgb = NDArray[np.uint8]


def _jpeg(rgb: Rgb, quality: int = 90) -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any 8-bit RGB
        raise ValueError("could not encode JPEG")
    return encoded.tobytes()


def _crop(rgb: Rgb, fraction: float, x: float = 0.5, y: float = 0.5) -> Rgb:
    """*rgb* less *fraction* of each side's length, the window placed at (x, y) in 0..1."""
    h, w = rgb.shape[:2]
    ch, cw = max(1, round(h * (1 - fraction))), max(1, round(w * (1 - fraction)))
    top, left = round((h - ch) * y), round((w - cw) * x)
    return rgb[top:top + ch, left:left + cw]


def _resize(rgb: Rgb, scale: float) -> Rgb:
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def strip_metadata(data: bytes) -> bytes:
    """A JPEG without its APPn (EXIF, XMP, ICC) and COM segments: the same pixels, no metadata."""
    if data[:2] != b"\xff\xd8":
        return data
    out, pos = bytearray(data[:2]), 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            out += data[pos:pos + 2 + length]
        pos += 2 + length
    return bytes(out + data[pos:])


Maker = Callable[[bytes, Rgb], bytes]

COPIES: dict[str, Maker] = {
    "exact": lambda data, rgb: data,
    "q50": lambda data, rgb: _jpeg(rgb, 50),
    "q90": lambda data, rgb: _jpeg(rgb, 90),
    "half": lambda data, rgb: _jpeg(_resize(rgb, 0.5), 85),
    "crop5": lambda data, rgb: _jpeg(_crop(rgb, 0.05, 0.3, 0.7), 90),
    "crop10": lambda data, rgb: _jpeg(_crop(rgb, 0.10, 0.5, 0.5), 90),
    "rot90": lambda data, rgb: _jpeg(np.rot90(rgb), 90),
    "rot180": lambda data, rgb: _jpeg(np.rot90(rgb, 2), 90),
    "flip": lambda data, rgb: _jpeg(np.fliplr(rgb), 90),
    "stripped": lambda data, rgb: strip_metadata(data),
}
"""Variants that are the same picture as their original."""

NEAR_MISSES: dict[str, Maker] = {
    "shift30": lambda data, rgb: _jpeg(_crop(rgb, 0.30, 0.0, 0.0), 90),
    "burst": lambda data, rgb: _jpeg(np.asarray(cv2.convertScaleAbs(_crop(rgb, 0.15, 1.0, 0.5), alpha=1.06, beta=5),
                                                dtype=np.uint8), 90),
}
"""Variants that are a different picture of the same scene."""


@dataclass
class LabelledSet:
    root: Path
    group_of: dict[str, str] = field(default_factory=dict)
    """File path -> the id of the picture it is (copies share their original's)."""
    variant_of: dict[str, str] = field(default_factory=dict)
    """File path -> "original", a COPIES name or a NEAR_MISSES name."""

    def true_pairs(self) -> set[frozenset[str]]:
        by_group: dict[str, list[str]] = {}
        for path, group in self.group_of.items():
            by_group.setdefault(group, []).append(path)
        return {frozenset(p) for members in by_group.values() for p in combinations(sorted(members), 2)}


def build(photos: Sequence[Path], out: Path, copies: Iterable[str] = COPIES,
          near_misses: Iterable[str] = NEAR_MISSES, plain: Sequence[Path] = ()) -> LabelledSet:
    """Write each photo, its copies and its near misses under *out*; *plain*: more photos, as they are
    (distinct pictures: negatives, e.g. others of the same label)."""
    copies, near_misses = list(copies), list(near_misses)
    out.mkdir(parents=True, exist_ok=True)
    result = LabelledSet(root=out)
    for n, photo in enumerate(photos):
        data = photo.read_bytes()
        rgb = load_image(photo).rgb
        folder = out / f"p{n:03d}"
        folder.mkdir(exist_ok=True)
        original = folder / f"original{photo.suffix.lower()}"
        shutil.copyfile(photo, original)
        result.group_of[str(original)], result.variant_of[str(original)] = f"p{n}", "original"
        for name in copies:
            path = folder / f"{name}.jpg"
            path.write_bytes(COPIES[name](data, rgb))
            result.group_of[str(path)], result.variant_of[str(path)] = f"p{n}", name
        for name in near_misses:
            path = folder / f"{name}.jpg"
            path.write_bytes(NEAR_MISSES[name](data, rgb))
            result.group_of[str(path)], result.variant_of[str(path)] = f"p{n}-{name}", name
    for n, photo in enumerate(plain):
        path = out / f"plain{n:03d}{photo.suffix.lower()}"
        shutil.copyfile(photo, path)
        result.group_of[str(path)], result.variant_of[str(path)] = f"plain{n}", "plain"
    return result


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    found: int
    """Pairs the groups imply."""
    true: int
    """Pairs that are duplicates."""
    recall_by_variant: dict[str, float]
    """Of the pairs (original, copy made by this variant): the fraction found."""
    false_by_variant: dict[str, int]
    """Wrong pairs, by the variant of their less original-looking member (near misses, plain photos...)."""


def score(groups: Iterable[Sequence[str]], truth: LabelledSet) -> Scores:
    """Precision and recall of the pairs within *groups* (lists of paths) against *truth*."""
    found = {frozenset(p) for members in groups for p in combinations(sorted(set(members)), 2)}
    true = truth.true_pairs()
    hits = found & true
    by_variant: dict[str, list[bool]] = {}
    for pair in true:
        kinds = sorted(truth.variant_of[p] for p in pair)
        if "original" in kinds:
            variant = kinds[1] if kinds[0] == "original" else kinds[0]
            by_variant.setdefault(variant, []).append(pair in hits)
    false: dict[str, int] = {}
    for pair in found - true:
        kinds = sorted((truth.variant_of.get(p, "unknown") for p in pair), key=lambda k: k == "original")
        false[kinds[0]] = false.get(kinds[0], 0) + 1
    return Scores(precision=len(hits) / len(found) if found else 1.0, recall=len(hits) / len(true) if true else 1.0,
                  found=len(found), true=len(true),
                  recall_by_variant={k: sum(v) / len(v) for k, v in sorted(by_variant.items())},
                  false_by_variant=dict(sorted(false.items())))
