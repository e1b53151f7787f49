"""Real permission denials in tests, also when the tests run as root (as CI does).

Root reads a chmod-000 file anyway: the capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
bypass file modes. A test about a denied permission therefore runs the code under test in a
subprocess that has neither (``setpriv`` removes them from its bounding and inheritable sets
before it executes the command), and first proves with a control read, through that very
mechanism, that the files really cannot be read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

DROP_DAC_BYPASS = ("setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--")

_CONTROL = """\
import os, sys
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").close()
    except PermissionError:
        continue
    sys.exit(f"not denied: {path} can be read")
"""


def without_dac_bypass(command: Sequence[str]) -> list[str]:
    """*command* run so that file modes bind it: unchanged for a normal user; for root, under setpriv."""
    if os.geteuid() != 0:
        return list(command)
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv (util-linux): cannot make a permission denial real")
    return [*DROP_DAC_BYPASS, *command]


def assert_really_denied(*paths: Path) -> None:
    """Control: a process started like :func:`without_dac_bypass` cannot open or list any of *paths*."""
    command = without_dac_bypass([sys.executable, "-c", _CONTROL, *map(str, paths)])
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"the permission denial is not real ({' '.join(command[:4])}): {result.stderr}"


@contextlib.contextmanager
def unreadable(*paths: Path) -> Iterator[None]:
    """chmod 000 *paths* (files or folders) for the block, checked to be really denied; modes restored after."""
    modes = {path: path.stat().st_mode & 0o7777 for path in paths}
    try:
        for path in paths:
            path.chmod(0)
        assert_really_denied(*paths)
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
