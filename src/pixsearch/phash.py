"""Perceptual hashes of decoded images: what ``pixsearch duplicates`` decides with, beside CLIP.

A 64-bit DCT pHash: the image's luma shrunk to 32x32 (area averaging), its 2-D DCT-II, and one
bit per low-frequency coefficient of the top-left 8x8 block, set when the coefficient is above
their median (the DC term excluded from the median: it only says how bright the image is).
Re-encoding, resizing, small crops and stripped metadata move few bits; a different picture
moves about half of them.

A rotation or a flip moves the coefficients themselves, so one hash cannot match a re-oriented
copy. Each image keeps the hashes of its eight orientations (the dihedral group: four rotations,
each with and without a mirror), computed from the same 32x32 thumbnail: a copy turned by 90
degrees has, as its upright hash, one of the original's eight. Measured (bench/duplicates.py):
hashing the rotated thumbnail matches hashing the rotated file within the JPEG noise.

Pure numpy (plus OpenCV's area resize, which ``images`` already uses); no model, no I/O.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

SIDE = 32
"""The thumbnail the DCT is taken of."""
LOW = 8
"""The low-frequency block kept: LOW x LOW = 64 bits."""
BITS = LOW * LOW
BYTES = BITS // 8
ORIENTATIONS = 8
"""0-3: rotated by 0/90/180/270 degrees counter-clockwise; 4-7: mirrored left-right, then the same."""
HEX_CHARS = ORIENTATIONS * BYTES * 2
"""Length of ``to_hex`` of all eight hashes (128)."""


@lru_cache(maxsize=1)
def _dct_matrix() -> NDArray[np.float64]:
    """The orthonormal DCT-II matrix of size SIDE (rows: frequencies)."""
    n = np.arange(SIDE)
    matrix = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * SIDE)) * np.sqrt(2.0 / SIDE)
    matrix[0] /= np.sqrt(2.0)
    return np.asarray(matrix, dtype=np.float64)


def thumbnail(rgb: NDArray[np.uint8]) -> NDArray[np.float64]:
    """The SIDE x SIDE luma thumbnail of an H x W x 3 RGB (or H x W gray) image."""
    if rgb.ndim == 3:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        luma = rgb[..., :3].astype(np.float32) @ weights
    else:
        luma = rgb.astype(np.float32)
    small = cv2.resize(luma, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.float64)


def _bits(thumb: NDArray[np.float64]) -> NDArray[np.uint8]:
    """The 8 bytes of one thumbnail's pHash (big-endian bit order, row-major coefficients)."""
    dct = _dct_matrix()
    block = (dct @ thumb @ dct.T)[:LOW, :LOW].ravel()
    median = np.median(block[1:])
    return np.packbits(block > median)


def oriented(thumb: NDArray[np.float64], orientation: int) -> NDArray[np.float64]:
    """*thumb* turned to *orientation* (see ORIENTATIONS)."""
    base = np.fliplr(thumb) if orientation >= 4 else thumb
    return np.rot90(base, orientation % 4)


def hashes(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """ORIENTATIONS x BYTES: the pHash of each orientation of *rgb*; row 0 is the image as it stands."""
    thumb = thumbnail(rgb)
    return np.stack([_bits(np.ascontiguousarray(oriented(thumb, o))) for o in range(ORIENTATIONS)])


def to_hex(codes: NDArray[np.uint8]) -> str:
    """Hashes as hex text (how an image row keeps them)."""
    return bytes(np.asarray(codes, dtype=np.uint8).ravel()).hex()


def from_hex(text: str) -> NDArray[np.uint8]:
    """``to_hex``'s inverse: ORIENTATIONS x BYTES. Raises ValueError on text that is not one."""
    if len(text) != HEX_CHARS:
        raise ValueError(f"a perceptual hash record has {HEX_CHARS} hex digits, not {len(text)}")
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(ORIENTATIONS, BYTES).copy()


def hamming(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> int:
    """Bits that differ between two hashes of BYTES bytes."""
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())


def min_hamming(upright: NDArray[np.uint8], other: NDArray[np.uint8]) -> tuple[int, int]:
    """(distance, orientation): how close *upright* (one hash) comes to any of *other*'s eight."""
    distances = [hamming(upright, other[o]) for o in range(ORIENTATIONS)]
    best = int(np.argmin(distances))
    return distances[best], best
