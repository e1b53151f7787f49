"""Indexing: scan sources, decide what changed, embed only that, write it to the store.

The decision per file, against what the collection already holds:

* same path, same size and mtime              -> unchanged (not even read)
* content hash already in the collection     -> vector reused (moved, renamed or copied file)
* unchanged, but no perceptual hash yet       -> decoded for the hash only, vector kept (schema 3 backfill)
* otherwise                                   -> decoded and embedded (added or updated)
* indexed path no longer found under a root   -> removed (unless ``delete=False``)

Row ids are a hash of the path, so writing a row twice replaces it: an
interrupted run leaves no duplicates, and the next run finishes the job.
Decoding runs in a thread pool ahead of the model and writing on a writer thread behind it
(both bounded, so memory stays flat; the run state and report are in ``indexstate``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import phash
from .exif import TakenAt, taken_at
from .images import ImageError, decode_image, read_file
from .indexstate import (
    IndexReport,
    ProgressCallback,
    RunState,
    Work,
    content_hash,
    may_have_cleared,
)
from .models.base import Embedder
from .ocr import DECODE_SIDE as ocr_decode_side
from .ocr import Recognizer
from .ocrindex import read_missing
from .sources import Scan, SourceFile, scan_sources
from .store import HASH_FIELD, ImageRow, SkipLog, Store, image_id, is_under

__all__ = ["IndexReport", "Indexer", "ProgressCallback", "RunState", "content_hash", "image_id",
           "may_have_cleared", "remove_under"]
"""The run's state and report live in ``indexstate``; they stay importable from here."""

log = logging.getLogger(__name__)


@dataclass
class _Ready:
    """A batch embedded and ready to write: its rows, and the files that failed to load."""

    rows: list[ImageRow]
    failed: list[Work]


class Indexer:
    """Brings a collection in line with a set of sources."""

    def __init__(self, store: Store, embedder: Embedder, batch_size: int = 32, workers: int = 0,
                 max_pixels: int = 250_000_000, max_file_bytes: int = 256 * 1024 * 1024,
                 ocr: Recognizer | None = None):
        self.store = store
        self.embedder = embedder
        self.batch_size = max(1, batch_size)
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.max_pixels = max_pixels
        self.max_file_bytes = max_file_bytes
        self.skips = SkipLog(store)
        self.ocr = ocr
        """Reads the text in each new image (``--ocr``); None: no OCR."""
        if ocr is not None:
            ocr.load()  # a missing engine fails here, once, not as a skip per file
        self.stop = threading.Event()
        """Set it (e.g. from a SIGINT handler) to finish the current batch and stop."""

    # -- decode worker ---------------------------------------------------------

    def _load(self, file: SourceFile, known_hashes: dict[str, str], unhashed: AbstractSet[str] = frozenset()) -> Work:
        """Read and hash a file; decode it only if no row holds its content yet, or the row that does has
        no perceptual hash (*unhashed*: then only the hash is computed)."""
        work = Work(file=file)
        try:
            data = read_file(Path(file.path), self.max_file_bytes)
            work.digest = content_hash(data)
            work.taken = taken_at(data, file.mtime)
            work.reuse_id = known_hashes.get(work.digest, "")
            if not work.reuse_id:
                self._decode(work, data)
            elif work.reuse_id in unhashed:
                image = decode_image(data, min_side=phash.SIDE, max_pixels=self.max_pixels)
                work.phash = phash.to_hex(phash.hashes(image.rgb))
        except ImageError as exc:
            work.error, work.unreadable = exc.reason, exc.unreadable
        except Exception as exc:
            work.error = f"unexpected {type(exc).__name__}: {exc}"
        return work

    def _decode(self, work: Work, data: bytes) -> None:
        image = decode_image(data, min_side=self.embedder.min_decode_side, max_pixels=self.max_pixels)
        work.crop = self.embedder.prepare(image.rgb)
        work.phash = phash.to_hex(phash.hashes(image.rgb))
        work.width, work.height = image.width, image.height
        if self.ocr is not None:
            if self.embedder.min_decode_side < ocr_decode_side:  # decoded down for the model: small print lost
                image = decode_image(data, min_side=ocr_decode_side, max_pixels=self.max_pixels)
            work.ocr_text, work.ocr_model = self.ocr.read(image.rgb), self.ocr.model

    def _redo_without_reuse(self, work: Work) -> None:
        """The donor row no longer holds this content (edited or removed since): embed the file itself."""
        fresh = self._load(work.file, {})
        work.digest, work.crop, work.width, work.height = fresh.digest, fresh.crop, fresh.width, fresh.height
        work.reuse_id, work.error, work.unreadable = "", fresh.error, fresh.unreadable
        work.phash = fresh.phash
        work.taken = fresh.taken
        work.ocr_text, work.ocr_model = fresh.ocr_text, fresh.ocr_model

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
        for row in self.store.iter_rows(("path", "size", "mtime", "label", "content_hash", HASH_FIELD)):
            state.existing[row["path"]] = row
            state.remember(row["id"], row["content_hash"])
            if not row.get("phash"):
                state.unhashed.add(row["id"])
        todo = []
        for file in scan.files:
            indexed, skip = state.existing.get(file.path), state.skipped_before.get(file.path)
            if indexed is not None:
                same = indexed["size"] == file.size and indexed["mtime"] == file.mtime
                relabelled = bool(file.label) and file.label != indexed["label"]
                if same and not relabelled and image_id(file.path) in state.unhashed:
                    state.backfill.add(file.path)  # indexed before hashes existed: hash it, keep its vector
                    todo.append(file)
                elif same and not relabelled:
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
        """After every file was processed: read the text of rows OCR has not read yet (``--ocr``), remove
        vanished rows, flush, close the report."""
        if self.ocr is not None and not self.stop.is_set():
            ocr = read_missing(self.store, self.ocr, scan.roots, self.stop, self.max_pixels, self.max_file_bytes)
            state.report.ocr_read += ocr.read
        if delete and not self.stop.is_set():
            state.report.removed += self._remove_vanished(scan, state)
        self.store.flush()
        state.report.interrupted = self.stop.is_set()
        state.report.seconds = time.perf_counter() - started
        return state.report

    def process_batch(self, files: list[SourceFile], state: RunState) -> None:
        """Load and commit one batch of files in this process (a distributed worker's unit of work)."""
        self._write(self._rows_for([self._load(file, state.known_hashes) for file in files], state), state)

    def _process(self, todo: list[SourceFile], state: RunState, progress: ProgressCallback | None) -> None:
        """Decode ahead in threads, embed in batches on this thread, write each batch on a writer thread.

        The writer takes the Milvus round trips off the model's path: while batch N is written,
        batch N+1 is embedded. At most one batch waits to be written, so memory stays bounded and a
        write error stops the run at the next batch."""
        window = self.batch_size * 3
        pending: deque[Future[Work]] = deque()
        batch: list[Work] = []
        files = iter(todo)
        if progress:
            progress(0, len(todo))
        writing: Future[None] | None = None
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pixsearch-decode") as pool, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixsearch-write") as writer:
            for file in files:
                pending.append(pool.submit(self._load, file, state.known_hashes, state.unhashed))
                if len(pending) >= window:
                    break
            done = 0
            while pending:
                work = pending.popleft().result()
                next_file = None if self.stop.is_set() else next(files, None)
                if next_file is not None:
                    pending.append(pool.submit(self._load, next_file, state.known_hashes, state.unhashed))
                batch.append(work)
                done += 1
                if len(batch) >= self.batch_size or not pending or self.stop.is_set():
                    ready = self._rows_for(batch, state)
                    if writing is not None:
                        writing.result()
                    writing = writer.submit(self._write, ready, state, progress, done, len(todo))
                    batch = []
                if self.stop.is_set():
                    for future in pending:
                        future.cancel()
                    break
            if writing is not None:
                writing.result()

    def _rows_for(self, batch: list[Work], state: RunState) -> _Ready:
        """Embed each new content once and reuse known vectors for the rest: the batch's rows, ready to write."""
        for work in batch:  # content committed (or handed to the writer) by an earlier batch of this run
            if not work.error and not work.reuse_id and work.digest in state.known_hashes:
                work.reuse_id = state.known_hashes[work.digest]
        donors = self._donors(sorted({w.reuse_id for w in batch if w.reuse_id}), state)
        for work in batch:
            donor = donors.get(work.reuse_id)
            if work.reuse_id and (donor is None or donor["content_hash"] != work.digest):
                self._redo_without_reuse(work)
        failed = [w for w in batch if w.error]
        batch = [w for w in batch if not w.error]
        for work in failed:
            state.report.skipped.append((work.file.path, work.error))
        fresh: dict[str, list[Work]] = {}
        for work in batch:
            if not work.reuse_id:
                fresh.setdefault(work.digest, []).append(work)
        firsts = [group[0] for group in fresh.values()]
        crops = [w.crop for w in firsts if w.crop is not None]
        vectors = self.embedder.embed_prepared(crops) if crops else np.zeros((0, self.embedder.dim), np.float32)
        state.report.embedded += len(firsts)
        state.report.ocr_read += sum(1 for w in batch if not w.reuse_id and w.ocr_model)  # read as decoded
        now = time.time()
        rows = []
        for first, vector in zip(firsts, vectors, strict=True):
            for work in fresh[first.digest]:
                rows.append(self._row(work, vector, first.width, first.height, now, state, first.phash))
                state.count(work.file.path, moved=False)
        for work in (w for w in batch if w.reuse_id):
            donor = donors[work.reuse_id]
            work.ocr_text, work.ocr_model = donor.get("ocr_text", ""), donor.get("ocr_model", "")  # same content
            rows.append(self._row(work, donor["vector"], donor["width"], donor["height"], now, state,
                                  work.phash or donor.get("phash", "")))
            moved = donor["path"] not in state.moved_from and not os.path.exists(donor["path"])
            if moved:  # a second copy of a moved file counts as added
                state.moved_from.add(donor["path"])
            state.count(work.file.path, moved=moved)
        for row in rows:  # the next batch may reuse these vectors before the writer has written them
            state.unwritten[row["id"]] = row
            state.remember(row["id"], row["content_hash"])
            if row["phash"]:
                state.unhashed.discard(row["id"])
        return _Ready(rows, failed)

    def _donors(self, ids: list[str], state: RunState) -> dict[str, ImageRow]:
        """The rows holding the vectors to reuse: from the writer's queue, else from the store.

        A row leaves ``state.unwritten`` only after its write returned, so each id is always in
        one of the two places."""
        donors = {i: row for i in ids if (row := state.unwritten.get(i)) is not None}
        rest = [i for i in ids if i not in donors]
        if rest:
            donors.update((row["id"], row) for row in self.store.get(rest, with_vectors=True, with_hashes=True))
        return donors

    def _write(self, ready: _Ready, state: RunState, progress: ProgressCallback | None = None,
               done: int = 0, total: int = 0) -> None:
        """Upsert a batch's rows, then update the skip log (on the writer thread in a local run)."""
        self.store.upsert(ready.rows)
        for row in ready.rows:
            state.unwritten.pop(row["id"], None)
        failed = ready.failed
        self.skips.record([(w.file.path, w.file.size, w.file.mtime, w.error) for w in failed])
        # An indexed file whose content went bad leaves the index; one we merely cannot read now stays.
        broken = [image_id(w.file.path) for w in failed if w.file.path in state.existing and not w.unreadable]
        state.report.removed += self.store.delete(broken)
        self.skips.forget([row["path"] for row in ready.rows if row["path"] in state.skipped_before])
        # After the writes return: a line per batch that an observer (a log, a test) can rely on.
        log.info("committed %d rows, %d files skipped", len(ready.rows), len(failed))
        if progress:  # files count as done once embedded and written, not when decoded
            progress(done, total)

    @staticmethod
    def _row(work: Work, vector: np.ndarray, width: int, height: int, now: float, state: RunState,
             hashes: str) -> ImageRow:
        file = work.file
        label = file.label or state.existing.get(file.path, {}).get("label", "")  # a folder run keeps CSV labels
        taken = work.taken or TakenAt(file.mtime, "mtime")
        return {"id": image_id(file.path), "vector": vector, "path": file.path, "label": label,
                "size": file.size, "mtime": file.mtime, "width": int(width), "height": int(height),
                "content_hash": work.digest, "indexed_at": now, "taken_at": taken.timestamp,
                "taken_from": taken.source, "ocr_text": work.ocr_text, "ocr_model": work.ocr_model,
                "phash": hashes}

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
