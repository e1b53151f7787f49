"""Indexing: scan sources, decide what changed, embed only that, write it to the store.

The decision per file, against what the collection already holds:

* same path, same size and mtime              -> unchanged (not even read)
* content hash already in the collection     -> vector reused (moved, renamed or copied file)
* otherwise                                   -> decoded and embedded (added or updated)
* indexed path no longer found under a root   -> removed (unless ``delete=False``)

Row ids are a hash of the path, so writing a row twice replaces it: an
interrupted run leaves no duplicates, and the next run finishes the job.
Decoding runs in a thread pool ahead of the model (bounded, so memory stays flat).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .exif import TakenAt, taken_at
from .images import ImageError, decode_image, read_file
from .models.base import Embedder
from .sources import Scan, SourceFile, scan_sources
from .store import ImageRow, SkipLog, SkipRow, Store, image_id, is_under

log = logging.getLogger(__name__)


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
    seconds: float = 0.0
    interrupted: bool = False

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
        return ("interrupted: " if self.interrupted else "") + text


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# ----------------------------------------------------------------------------- the pipeline


RETRIED_REASONS = ("permission denied", "cannot read file")
"""How ``images.read_file`` words a failure to read the bytes at all (``ImageError.unreadable``).
Its cause (a permission, a flaky disk or share) can go away while the file's size and mtime stay
the same, so such a skip is retried on every run; a corrupt file only once it changes."""


def may_have_cleared(reason: str) -> bool:
    """Whether a recorded skip may succeed now although the file did not change."""
    return reason.startswith(RETRIED_REASONS)


@dataclass
class _Work:
    """What a decode worker hands back for one file."""

    file: SourceFile
    digest: str = ""
    crop: np.ndarray | None = None
    width: int = 0
    height: int = 0
    reuse_id: str = ""
    taken: TakenAt | None = None
    """Capture time from the file's EXIF, else its mtime (read for reused vectors too)."""
    error: str = ""
    unreadable: bool = False
    """The error was reading the file (permissions, I/O), not its content."""


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

    def remember(self, row_id: str, digest: str) -> None:
        """Row *row_id* now holds *digest*; forget what it held before as a donor of vectors."""
        old = self.hash_of_id.get(row_id)
        if old and old != digest and self.known_hashes.get(old) == row_id:
            del self.known_hashes[old]
        self.hash_of_id[row_id] = digest
        self.known_hashes[digest] = row_id

    def count(self, path: str, moved: bool) -> None:
        if path in self.existing:
            self.report.updated += 1
        elif moved:
            self.report.moved += 1
        else:
            self.report.added += 1


class Indexer:
    """Brings a collection in line with a set of sources."""

    def __init__(self, store: Store, embedder: Embedder, batch_size: int = 32, workers: int = 0,
                 max_pixels: int = 250_000_000, max_file_bytes: int = 256 * 1024 * 1024):
        self.store = store
        self.embedder = embedder
        self.batch_size = max(1, batch_size)
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.max_pixels = max_pixels
        self.max_file_bytes = max_file_bytes
        self.skips = SkipLog(store)
        self.stop = threading.Event()
        """Set it (e.g. from a SIGINT handler) to finish the current batch and stop."""

    # -- decode worker ---------------------------------------------------------

    def _load(self, file: SourceFile, known_hashes: dict[str, str]) -> _Work:
        """Read and hash a file; decode it only if no row holds its content yet."""
        work = _Work(file=file)
        try:
            data = read_file(Path(file.path), self.max_file_bytes)
            work.digest = content_hash(data)
            work.taken = taken_at(data, file.mtime)
            work.reuse_id = known_hashes.get(work.digest, "")
            if not work.reuse_id:
                self._decode(work, data)
        except ImageError as exc:
            work.error, work.unreadable = exc.reason, exc.unreadable
        except Exception as exc:
            work.error = f"unexpected {type(exc).__name__}: {exc}"
        return work

    def _decode(self, work: _Work, data: bytes) -> None:
        image = decode_image(data, min_side=self.embedder.min_decode_side, max_pixels=self.max_pixels)
        work.crop = self.embedder.prepare(image.rgb)
        work.width, work.height = image.width, image.height

    def _redo_without_reuse(self, work: _Work) -> None:
        """The donor row no longer holds this content (edited or removed since): embed the file itself."""
        fresh = self._load(work.file, {})
        work.digest, work.crop, work.width, work.height = fresh.digest, fresh.crop, fresh.width, fresh.height
        work.reuse_id, work.error, work.unreadable = "", fresh.error, fresh.unreadable
        work.taken = fresh.taken

    # -- main loop -------------------------------------------------------------

    def run(self, sources: Iterable[str | Path], delete: bool = True,
            progress: ProgressCallback | None = None) -> IndexReport:
        started = time.perf_counter()
        scan, todo, state = self.plan(sources)
        self._process(todo, state, progress)
        return self.finish(scan, state, delete, started)

    def plan(self, sources: Iterable[str | Path]) -> tuple[Scan, list[SourceFile], RunState]:
        """Scan *sources* and decide, against the collection's rows, which files need work.

        Public so a distributed run (``pixsearch.distributed``) makes exactly the same decision."""
        scan = scan_sources(sources)
        state = RunState(report=IndexReport(skipped=list(scan.problems)), skipped_before=self.skips.rows())
        for row in self.store.iter_rows(("path", "size", "mtime", "label", "content_hash")):
            state.existing[row["path"]] = row
            state.remember(row["id"], row["content_hash"])
        todo = []
        for file in scan.files:
            indexed, skip = state.existing.get(file.path), state.skipped_before.get(file.path)
            if indexed is not None:
                same = indexed["size"] == file.size and indexed["mtime"] == file.mtime
                relabelled = bool(file.label) and file.label != indexed["label"]
                if same and not relabelled:
                    state.report.unchanged += 1
                else:
                    todo.append(file)
            elif skip is not None and skip["size"] == file.size and skip["mtime"] == file.mtime \
                    and not may_have_cleared(skip["reason"]):
                state.report.still_skipped += 1
            else:  # new, changed since its skip, or a skip whose cause may be gone (a chmod changes no mtime)
                todo.append(file)
        return scan, todo, state

    def finish(self, scan: Scan, state: RunState, delete: bool, started: float) -> IndexReport:
        """After every file was processed: remove vanished rows, flush, close the report."""
        if delete and not self.stop.is_set():
            state.report.removed += self._remove_vanished(scan, state)
        self.store.flush()
        state.report.interrupted = self.stop.is_set()
        state.report.seconds = time.perf_counter() - started
        return state.report

    def process_batch(self, files: list[SourceFile], state: RunState) -> None:
        """Load and commit one batch of files in this process (a distributed worker's unit of work)."""
        self._commit([self._load(file, state.known_hashes) for file in files], state)

    def _process(self, todo: list[SourceFile], state: RunState, progress: ProgressCallback | None) -> None:
        """Decode ahead in threads, embed in batches, write each batch as soon as it is done."""
        window = self.batch_size * 3
        pending: deque[Future[_Work]] = deque()
        batch: list[_Work] = []
        files = iter(todo)
        if progress:
            progress(0, len(todo))
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pixsearch-decode") as pool:
            for file in files:
                pending.append(pool.submit(self._load, file, state.known_hashes))
                if len(pending) >= window:
                    break
            done = 0
            while pending:
                work = pending.popleft().result()
                next_file = None if self.stop.is_set() else next(files, None)
                if next_file is not None:
                    pending.append(pool.submit(self._load, next_file, state.known_hashes))
                batch.append(work)
                done += 1
                if len(batch) >= self.batch_size or not pending or self.stop.is_set():
                    self._commit(batch, state)
                    batch = []
                    if progress:  # files count as done once embedded and written, not when decoded
                        progress(done, len(todo))
                if self.stop.is_set():
                    for future in pending:
                        future.cancel()
                    return

    def _commit(self, batch: list[_Work], state: RunState) -> None:
        """Embed each new content once, reuse known vectors for the rest, upsert, then update the skip log."""
        if not batch:
            return
        for work in batch:  # content committed by an earlier batch of this run
            if not work.error and not work.reuse_id and work.digest in state.known_hashes:
                work.reuse_id = state.known_hashes[work.digest]
        donor_ids = sorted({w.reuse_id for w in batch if w.reuse_id})
        donors = {row["id"]: row for row in self.store.get(donor_ids, with_vectors=True)}
        for work in batch:
            donor = donors.get(work.reuse_id)
            if work.reuse_id and (donor is None or donor["content_hash"] != work.digest):
                self._redo_without_reuse(work)
        failed = [w for w in batch if w.error]
        batch = [w for w in batch if not w.error]
        for work in failed:
            state.report.skipped.append((work.file.path, work.error))
        fresh: dict[str, list[_Work]] = {}
        for work in batch:
            if not work.reuse_id:
                fresh.setdefault(work.digest, []).append(work)
        firsts = [group[0] for group in fresh.values()]
        crops = [w.crop for w in firsts if w.crop is not None]
        vectors = self.embedder.embed_prepared(crops) if crops else np.zeros((0, self.embedder.dim), np.float32)
        state.report.embedded += len(firsts)
        now = time.time()
        rows = []
        for first, vector in zip(firsts, vectors, strict=True):
            for work in fresh[first.digest]:
                rows.append(self._row(work, vector, first.width, first.height, now, state))
                state.count(work.file.path, moved=False)
        for work in (w for w in batch if w.reuse_id):
            donor = donors[work.reuse_id]
            rows.append(self._row(work, donor["vector"], donor["width"], donor["height"], now, state))
            moved = donor["path"] not in state.moved_from and not os.path.exists(donor["path"])
            if moved:  # a second copy of a moved file counts as added
                state.moved_from.add(donor["path"])
            state.count(work.file.path, moved=moved)
        self.store.upsert(rows)
        for row in rows:
            state.remember(row["id"], row["content_hash"])
        self.skips.record([(w.file.path, w.file.size, w.file.mtime, w.error) for w in failed])
        # An indexed file whose content went bad leaves the index; one we merely cannot read now stays.
        broken = [image_id(w.file.path) for w in failed if w.file.path in state.existing and not w.unreadable]
        state.report.removed += self.store.delete(broken)
        self.skips.forget([row["path"] for row in rows if row["path"] in state.skipped_before])
        # After the writes return: a line per batch that an observer (a log, a test) can rely on.
        log.info("committed %d rows, %d files skipped", len(rows), len(failed))

    @staticmethod
    def _row(work: _Work, vector: np.ndarray, width: int, height: int, now: float, state: RunState) -> ImageRow:
        file = work.file
        label = file.label or state.existing.get(file.path, {}).get("label", "")  # a folder run keeps CSV labels
        taken = work.taken or TakenAt(file.mtime, "mtime")
        return {"id": image_id(file.path), "vector": vector, "path": file.path, "label": label,
                "size": file.size, "mtime": file.mtime, "width": int(width), "height": int(height),
                "content_hash": work.digest, "indexed_at": now, "taken_at": taken.timestamp,
                "taken_from": taken.source}

    def _remove_vanished(self, scan: Scan, state: RunState) -> int:
        """Delete rows (and skip records) under the scanned roots whose files are gone."""
        scanned_paths = {f.path for f in scan.files}
        unseen = [path for path, _reason in scan.problems]  # could not be listed: absent is not gone
        gone = []
        for root in scan.roots:
            for row in self.store.iter_under(root, ("path",)):
                if row["path"] not in scanned_paths and not any(is_under(row["path"], p) for p in unseen):
                    gone.append(row["id"])
        self.skips.forget([p for p in state.skipped_before if p not in scanned_paths
                           and any(is_under(p, root) for root in scan.roots)
                           and not any(is_under(p, u) for u in unseen)])
        return self.store.delete(gone)

    def remove(self, prefix: str) -> int:
        """Remove every indexed image at or under *prefix* (a file or a folder)."""
        return remove_under(self.store, prefix)


def remove_under(store: Store, prefix: str) -> int:
    """Remove every indexed image (and skip record) at or under *prefix*; needs no model."""
    path = os.path.abspath(os.path.expanduser(prefix))
    removed = store.delete([row["id"] for row in store.iter_under(path, ("path",))])
    skips = SkipLog(store)
    skips.forget([p for p in skips.rows() if is_under(p, path)])
    store.flush()
    return removed
