"""Keep an index in sync while files change (``pixsearch index --watch``).

File-system events are collected and debounced: once nothing has happened for
``quiet`` seconds, the touched paths are synced in one go -- existing ones are
indexed (new, modified, or moved here: a move reuses the vector by content hash),
vanished ones are removed. Bursts (a copy of 1,000 photos) become one batch run.

Readiness is a signal, not a guess: ``watch`` sets its *ready* event (and logs
``watching ...`` on ``pixsearch.watch``) once the observer has started, i.e. once
the kernel watches exist and every later change is seen.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from .images import IMAGE_SUFFIXES
from .indexer import Indexer, IndexReport

logger = logging.getLogger(__name__)


class _Collector:
    """Thread-safe set of touched paths with the time of the last event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self.last_event = 0.0

    def add(self, *paths: str) -> None:
        with self._lock:
            self._paths.update(p for p in paths if p)
            self.last_event = time.monotonic()

    def take_if_quiet(self, quiet: float) -> set[str]:
        """The touched paths, once nothing has happened for *quiet* seconds (else nothing)."""
        with self._lock:
            if not self._paths or time.monotonic() - self.last_event < quiet:
                return set()
            paths, self._paths = self._paths, set()
            return paths


def _relevant(path: str) -> bool:
    """Folders and image files; not sidecars, temporary files, or CSVs saved in a watched folder."""
    return os.path.isdir(path) or os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def sync_paths(indexer: Indexer, paths: set[str]) -> IndexReport:
    """Index the touched images and folders that exist, remove the ones that are gone."""
    existing = sorted(p for p in paths if os.path.exists(p) and _relevant(p))
    gone = sorted(p for p in paths if not os.path.exists(p))
    report = indexer.run(existing, delete=False) if existing else IndexReport()
    for path in gone:
        report.removed += indexer.remove(path)
    return report


def watch(indexer: Indexer, roots: list[str], on_report: Callable[[IndexReport], None],
          quiet: float = 1.0, stop: threading.Event | None = None,
          ready: threading.Event | None = None) -> None:
    """Watch *roots* until *stop* is set (or Ctrl-C), syncing after each quiet spell.

    *ready* is set once changes under *roots* are being seen (watchdog's ``Observer.start``
    creates the inotify watches of each scheduled folder before it returns).
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    collector = _Collector()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            collector.add(os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or ""))

    stop = stop or indexer.stop
    observer = Observer()
    for root in roots:
        observer.schedule(Handler(), os.path.abspath(root), recursive=True)
    observer.start()
    try:
        logger.info("watching %s for changes", ", ".join(roots))
        if ready is not None:
            ready.set()
        while not stop.wait(0.2):
            paths = collector.take_if_quiet(quiet)
            if paths:
                on_report(sync_paths(indexer, paths))
    finally:
        observer.stop()
        observer.join(timeout=5)


class BackgroundSync:
    """Index (and optionally watch) folders in a thread of a running server.

    Milvus Lite serves a database file to one process only, so a server that
    should stay current while the library changes does the indexing itself:
    searches in other threads see each batch as soon as it is written.
    """

    def __init__(self, indexer: Indexer, paths: list[str], follow: bool,
                 on_report: Callable[[IndexReport], None]):
        self.indexer = indexer
        self.paths = paths
        self.follow = follow
        self.on_report = on_report
        self.watching = threading.Event()
        """Set once *follow* is on and the watcher sees changes (after the first full run)."""
        self._thread = threading.Thread(target=self._run, name="pixsearch-sync", daemon=True)

    def _run(self) -> None:
        try:
            report = self.indexer.run(self.paths)
            self.on_report(report)
            if self.follow and not self.indexer.stop.is_set():
                watch(self.indexer, [p for p in self.paths if os.path.isdir(p)], self.on_report,
                      ready=self.watching)
        except Exception:
            logger.exception("background indexing of %s stopped", ", ".join(self.paths))

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.indexer.stop.set()
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()
