"""What one index run works with: the per-file work item, the run's state and its report.

Apart from ``indexer.py`` so the single-process pipeline and a distributed run
(``pixsearch.distributed``) share one definition of what a run knows and counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .exif import TakenAt
from .sources import SourceFile
from .store import ImageRow, SkipRow


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Files (and folders) that failed in this run, with the reason."""
    still_skipped: int = 0
    """Files that failed before and have not changed since (not retried)."""
    hashed: int = 0
    """Unchanged images that got their perceptual hash in this run, without re-embedding."""
    seconds: float = 0.0
    interrupted: bool = False
    ocr_read: int = 0
    """Images whose text OCR read in this run (``--ocr``): new ones, and indexed ones never read."""

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    @property
    def nothing_indexed(self) -> bool:
        """Files were found but none is in the index: every one failed, now or before."""
        ok = self.added + self.updated + self.moved + self.unchanged
        return ok == 0 and bool(self.skipped or self.still_skipped)

    def summary(self) -> str:
        text = (f"added {self.added}, updated {self.updated}, moved {self.moved}, removed {self.removed}, "
                f"unchanged {self.unchanged}, skipped {len(self.skipped) + self.still_skipped} "
                f"in {self.seconds:.1f}s ({self.images_per_second:.1f} images/s embedded)")
        if self.ocr_read:
            text += f"; text read in {self.ocr_read} images"
        if self.hashed:
            text += f"; {self.hashed} already indexed got their perceptual hash (not re-embedded)"
        return ("interrupted: " if self.interrupted else "") + text


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


RETRIED_REASONS = ("permission denied", "cannot read file")
"""How ``images.read_file`` words a failure to read the bytes at all (``ImageError.unreadable``).
Its cause (a permission, a flaky disk or share) can go away while the file's size and mtime stay
the same, so such a skip is retried on every run; a corrupt file only once it changes."""


def may_have_cleared(reason: str) -> bool:
    """Whether a recorded skip may succeed now although the file did not change."""
    return reason.startswith(RETRIED_REASONS)


@dataclass
class Work:
    """What a decode worker hands back for one file."""

    file: SourceFile
    digest: str = ""
    crop: np.ndarray | None = None
    width: int = 0
    height: int = 0
    reuse_id: str = ""
    phash: str = ""
    """The perceptual hashes (``phash.to_hex``) when the file was decoded, else ""."""
    taken: TakenAt | None = None
    """Capture time from the file's EXIF, else its mtime (read for reused vectors too)."""
    error: str = ""
    unreadable: bool = False
    """The error was reading the file (permissions, I/O), not its content."""
    ocr_text: str = ""
    ocr_model: str = ""
    """The text OCR read and the recogniser that read it ("" when OCR did not run on it)."""


ProgressCallback = Callable[[int, int], None]


@dataclass
class RunState:
    """What one index run knows and has counted so far."""

    report: IndexReport
    existing: dict[str, ImageRow] = field(default_factory=dict)
    """Indexed rows by path, as they were when the run started."""
    known_hashes: dict[str, str] = field(default_factory=dict)
    """content hash -> id of a row holding that content's vector (grows as batches commit)."""
    skipped_before: dict[str, SkipRow] = field(default_factory=dict)
    """The skip log as it was when the run started, by path."""
    hash_of_id: dict[str, str] = field(default_factory=dict)
    """Row id -> the content hash that row holds."""
    moved_from: set[str] = field(default_factory=set)
    """Vanished paths whose vector was already reused by a move in this run."""
    unhashed: set[str] = field(default_factory=set)
    """Ids of rows without perceptual hashes: a file reusing their vector is decoded for its hash."""
    backfill: set[str] = field(default_factory=set)
    """Unchanged paths re-read only for their perceptual hash (counted unchanged)."""
    unwritten: dict[str, ImageRow] = field(default_factory=dict)
    """Rows embedded and handed to the writer whose write has not returned yet, by id."""

    def remember(self, row_id: str, digest: str) -> None:
        """Row *row_id* now holds *digest*; forget what it held before as a donor of vectors."""
        old = self.hash_of_id.get(row_id)
        if old and old != digest and self.known_hashes.get(old) == row_id:
            del self.known_hashes[old]
        self.hash_of_id[row_id] = digest
        self.known_hashes[digest] = row_id

    def count(self, path: str, moved: bool) -> None:
        if path in self.backfill:
            self.report.unchanged += 1
            self.report.hashed += 1
        elif path in self.existing:
            self.report.updated += 1
        elif moved:
            self.report.moved += 1
        else:
            self.report.added += 1
