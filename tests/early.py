"""Long waits that overlap the rest of the run: a test whose condition is "nothing happens for N
seconds" starts its subprocess when collection finishes (only when that test was selected), and the
test itself only collects the outcome. The subprocess keeps its own idle time, so the test checks
the same thing; the suite does not spend N seconds doing nothing.

Register with ``@starts_early(test_name)``: a function taking a temp dir and returning the started
``Popen``. ``tests/conftest.py`` runs the registered starts and stops whatever is still running at
the end of the session.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

Start = Callable[[Path], "subprocess.Popen[str]"]
STARTS: dict[str, Start] = {}
RUNNING: dict[str, subprocess.Popen[str]] = {}
_dirs: list[tempfile.TemporaryDirectory[str]] = []


def starts_early(test_name: str) -> Callable[[Start], Start]:
    def register(start: Start) -> Start:
        STARTS[test_name] = start
        return start
    return register


def start_selected(selected_names: set[str]) -> None:
    for name, start in STARTS.items():
        if name in selected_names and name not in RUNNING:
            folder = tempfile.TemporaryDirectory(prefix="pixsearch-early-")
            _dirs.append(folder)
            RUNNING[name] = start(Path(folder.name))


def outcome(test_name: str, timeout: float) -> tuple[int, str, str]:
    """(returncode, stdout, stderr) of the early process of *test_name*, started now when it was not
    (a test run on its own by a plugin that skipped collection hooks)."""
    if test_name not in RUNNING:
        start_selected({test_name})
    process = RUNNING.pop(test_name)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def stop_all() -> None:
    for process in RUNNING.values():
        process.kill()
        process.communicate()
    RUNNING.clear()
    for folder in _dirs:
        folder.cleanup()
    _dirs.clear()
