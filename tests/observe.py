"""Run the real `pixsearch` command with its log on stderr, so a test can wait on what it reports.

The CLI configures no logging; the library logs what an observer can rely on (``pixsearch.indexer``:
one line per committed batch; ``pixsearch.watch``: a line once the file watcher is running). This
launcher is ``python -m pixsearch`` with a handler for the ``pixsearch`` loggers at INFO, so those
lines arrive on stderr as ``<logger>: <message>``, one per line, in the order they happened.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

COMMITTED = "pixsearch.indexer: committed "
"""How a committed-batch line starts (written after the batch's upsert returned)."""
WATCHING = "pixsearch.watch: watching "
"""How the line starts that says the file watcher is running (events from now on are seen)."""

_LAUNCHER = (
    "import logging, runpy, sys\n"
    "handler = logging.StreamHandler(sys.stderr)\n"
    "handler.setFormatter(logging.Formatter('%(name)s: %(message)s'))\n"
    "logger = logging.getLogger('pixsearch')\n"
    "logger.addHandler(handler)\n"
    "logger.setLevel(logging.INFO)\n"
    "runpy.run_module('pixsearch', run_name='__main__', alter_sys=True)\n"
)


def logged_command(*args: str) -> list[str]:
    """The argv of `pixsearch *args* with the library's INFO log on stderr."""
    return [sys.executable, "-c", _LAUNCHER, *args]


def start_logged(*args: str, stdout: int | IO[str] | None = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """Start `pixsearch *args*` with its log on a pipe (``process.stderr``, text, line-buffered)."""
    return subprocess.Popen(logged_command(*args), stdout=stdout, stderr=subprocess.PIPE, text=True,
                            bufsize=1, env=os.environ.copy())


class Lines:
    """The lines of a text stream, read by a thread so that waiting on one can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)  # end of stream: the process closed it or died

    def expect(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The next line that matches *predicate*; AssertionError at end of stream or after *timeout* s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no expected line within {timeout:.0f}s:\n" + "".join(self.seen)) from None
            if line is None:
                self._queue.put(None)
                raise AssertionError("the stream ended before the expected line:\n" + "".join(self.seen))
            self.seen.append(line)
            if predicate(line):
                return line


    def all(self, timeout: float) -> str:
        """Everything the stream held, read to its end (AssertionError if it is still open after *timeout* s)."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream is still open after {timeout:.0f}s"
        while (line := self._queue.get()) is not None:
            self.seen.append(line)
        self._queue.put(None)
        return "".join(self.seen)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll *condition* until it holds; AssertionError naming *what* once *timeout* seconds passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
