"""Reading text in images that are indexed already: the OCR-only pass of ``index --ocr``.

New and changed files are read by the indexer's decode workers as they are embedded. Rows that
were indexed without ``--ocr`` (or by another recogniser, or before the OCR fields existed) keep
their vectors: this pass reads only their files' text and rewrites the rows with the same vector,
so turning ``--ocr`` on never re-embeds anything.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .images import ImageError, decode_image, read_file
from .ocr import DECODE_SIDE, Recognizer
from .store import FIELDS, ImageRow, Store, path_prefix_filter, quote

log = logging.getLogger(__name__)

BATCH = 32
"""Rows rewritten per upsert."""


@dataclass
class OcrReport:
    read: int = 0
    """Images whose text was read (and their rows rewritten, vectors untouched)."""
    failed: int = 0
    """Images that could not be read now (changed or unreadable since indexing; the next run retries)."""


def read_missing(store: Store, recognizer: Recognizer, roots: Iterable[str], stop: threading.Event,
                 max_pixels: int = 250_000_000, max_file_bytes: int = 256 * 1024 * 1024) -> OcrReport:
    """OCR every row under *roots* whose text *recognizer* has not read, keeping its vector.

    A file whose size or mtime differs from its row changed after this run looked at it: it is
    left for the next run, which re-indexes it (and reads its text then)."""
    report = OcrReport()
    pending: list[ImageRow] = []
    unread = f"ocr_model != {quote(recognizer.model)}"
    for root in roots:
        for row in store.iter_rows((*FIELDS, "vector"), filter=f"({path_prefix_filter(root)}) and {unread}"):
            if stop.is_set():
                break
            try:
                path = Path(row["path"])
                facts = os.stat(path)
                if facts.st_size != row["size"] or facts.st_mtime != row["mtime"]:
                    raise ImageError("changed since it was indexed")
                image = decode_image(read_file(path, max_file_bytes), min_side=DECODE_SIDE, max_pixels=max_pixels)
            except (ImageError, OSError) as exc:
                log.info("no OCR for %s now: %s", row["path"], exc)
                report.failed += 1
                continue
            pending.append({**row, "ocr_text": recognizer.read(image.rgb), "ocr_model": recognizer.model})
            if len(pending) >= BATCH:
                _write(store, pending, report)
                pending = []
    _write(store, pending, report)
    return report


def _write(store: Store, rows: list[ImageRow], report: OcrReport) -> None:
    if rows:
        store.upsert(rows)
        report.read += len(rows)
