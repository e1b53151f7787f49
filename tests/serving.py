"""Helpers for the server tests: a real index of the sample photos and a real `pixsearch serve`."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from pixsearch.config import Settings
from pixsearch.indexer import Indexer
from pixsearch.workspace import open_workspace

from .conftest import SAMPLE_CSV, run_cli
from .observe import logged_command

SAMPLE_COUNT = 20


def build_index(root: Path, model: Path, index: bool = True, in_process: bool = True,
                prepare: Callable[[Path], None] | None = None) -> Settings:
    """Copy the samples under *root* and index them through their CSV (so rows carry labels).

    *prepare* gets the copied samples folder before indexing (to write EXIF dates into copies, say).

    ``index=False`` creates the collection but leaves it empty. A server subprocess needs
    ``in_process=False``: Milvus Lite keeps a database file locked by the process that opened it.
    """
    shutil.copytree(SAMPLE_CSV.parent, root / "samples")
    if prepare is not None:
        prepare(root / "samples")
    settings = Settings(db=str(root / "index.db"), model=str(model), cache_dir=str(root / "cache"), threads=1)
    if not in_process:
        empty = root / "empty"
        empty.mkdir()
        source = root / "samples" / SAMPLE_CSV.name if index else empty
        run_cli("index", str(source), "--db", settings.db, "--model", settings.model, "--workers", "2",
                env={"PIXSEARCH_CACHE_DIR": settings.cache_dir})
        return settings
    ws = open_workspace(settings, create=True)
    try:
        if index:
            report = Indexer(ws.store, ws.embedder, workers=2).run([root / "samples" / SAMPLE_CSV.name])
            assert report.added == SAMPLE_COUNT and not report.skipped, report.summary()
    finally:
        ws.close()
    return settings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(settings: Settings, log: Path, *extra: str, timeout: float = 90.0,
                   library_log: bool = False) -> Iterator[str]:
    """Run the real `pixsearch serve` on a free loopback port; yield its base URL.

    *library_log*: the ``pixsearch`` loggers' INFO lines go to *log* too (see tests/observe.py).
    """
    port = free_port()
    args = ["serve", "--db", settings.db, "--model", settings.model, "--port", str(port), "--threads", "1", *extra]
    command = logged_command(*args) if library_log else [sys.executable, "-m", "pixsearch", *args]
    env = {**os.environ, "PIXSEARCH_CACHE_DIR": settings.cache_dir, "GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, log, timeout)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pixsearch serve exited {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"pixsearch serve did not answer within {timeout}s:\n{log.read_text(errors='replace')}")
