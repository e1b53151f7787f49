"""The shapes of the rows pixsearch keeps in Milvus, and how they cross the wire.

An image row holds a vector and the file facts (path, size, mtime, content hash) that
incremental indexing compares, and the capture time (``taken_at``, with ``taken_from`` saying
whether it is an EXIF date or the mtime; see ``exif``), and its perceptual hashes (``phash``, hex of
the eight orientations' 64-bit pHashes, "" until computed; ``hashes`` keeps them searchable);
Milvus is the only source of truth for them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray

from .fulltext import MAX_OCR_MODEL, MAX_OCR_TEXT, OCR_FIELDS, OCR_SCHEMA_VERSION

FIELDS_V1 = ("id", "path", "label", "size", "mtime", "width", "height", "content_hash", "indexed_at")
"""Scalar fields of an image row at schema version 1."""
FIELDS_V2 = (*FIELDS_V1, "taken_at", "taken_from")
FIELDS = (*FIELDS_V2, *OCR_FIELDS)
"""Scalar fields an image row is read with (the vector is separate); the hashes are read on their own."""
HASH_FIELD = "phash"
"""The perceptual hashes of an image row (schema version 3), as ``phash.to_hex`` text; "" before they are known."""
MAX_PHASH = 128
MAX_TAKEN_FROM = 16
MAX_PATH = 4096
MAX_LABEL = 512
MAX_REASON = 1024
"""Longest skip reason kept."""


class ImageRow(TypedDict, total=False):
    """One indexed image. Writes carry every field; reads carry the fields asked for (and ``id``)."""

    id: str
    vector: NDArray[np.float32]
    path: str
    label: str
    size: int
    mtime: float
    width: int
    height: int
    content_hash: str
    indexed_at: float
    taken_at: float
    """Capture time, UTC epoch seconds (see ``exif`` for what ``exif-local`` means)."""
    taken_from: str
    """"exif", "exif-local" or "mtime"."""
    ocr_text: str
    """Text OCR read in the image ("" for none); see ``fulltext``."""
    ocr_model: str
    """The recogniser that read ``ocr_text``; "" when OCR has not run on this content."""
    phash: str
    """The eight orientations' pHashes as hex (``phash.to_hex``), or "" when not computed yet."""


def fields_for(version: int) -> tuple[str, ...]:
    """The scalar fields of an image collection at schema *version*."""
    if version < 2:
        return FIELDS_V1
    if version < 3:
        return FIELDS_V2
    return (*FIELDS_V2, HASH_FIELD) if version < OCR_SCHEMA_VERSION else (*FIELDS, HASH_FIELD)


class SkipRow(TypedDict, total=False):
    """One file that could not be indexed, and why (see ``SkipLog``)."""

    id: str
    path: str
    size: int
    mtime: float
    reason: str
    seen_at: float


def image_id(path: str) -> str:
    """Stable row id of an image path (the primary key): writing a path twice replaces its row."""
    return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A query row as plain Python values (vectors as float32 arrays)."""
    out = dict(row)
    if "vector" in out and out["vector"] is not None:
        out["vector"] = np.asarray(out["vector"], dtype=np.float32)
    return out


def wire_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An image row as Milvus takes it: every field, strings cut to their limits, the vector a list.

    A row without a capture time gets its mtime, said to be one; one without OCR text has none (""); one
    without hashes, "" (not known yet)."""
    out = {name: row[name] for name in FIELDS_V1}
    out["taken_at"] = float(row["mtime"] if row.get("taken_at") is None else row["taken_at"])
    out["taken_from"] = str(row.get("taken_from") or "mtime")[:MAX_TAKEN_FROM]
    out["ocr_text"] = str(row.get("ocr_text") or "")[:MAX_OCR_TEXT]
    out["ocr_model"] = str(row.get("ocr_model") or "")[:MAX_OCR_MODEL]
    out["path"] = str(out["path"])[:MAX_PATH]
    out["label"] = str(out.get("label") or "")[:MAX_LABEL]
    out["indexed_at"] = float(out.get("indexed_at") or time.time())
    out[HASH_FIELD] = str(row.get(HASH_FIELD) or "")[:MAX_PHASH]
    vector = row["vector"]
    out["vector"] = vector.tolist() if isinstance(vector, np.ndarray) else list(vector)
    return out
