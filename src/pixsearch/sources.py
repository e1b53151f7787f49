"""Sources of images: what a folder tree or an ``id,path,label`` CSV names, with size and mtime.

A scan lists the files to consider and the ones to report (dangling symlinks, special files named
like images, CSV rows naming missing files); it reads no image bytes. ``indexer`` decides what to
do with each file.
"""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PixsearchError
from .images import IMAGE_SUFFIXES


class SourceError(PixsearchError, ValueError):
    """A source the user named cannot be used as given (a CSV without a path column, unreadable)."""



@dataclass(frozen=True)
class SourceFile:
    path: str
    size: int
    mtime: float
    label: str = ""


@dataclass
class Scan:
    files: list[SourceFile] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    """Folders whose indexed contents this scan fully covers (deletions apply under them)."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of things the walk could not enter or list."""


# ----------------------------------------------------------------------------- scanning


def _stat_file(path: str, label: str = "") -> SourceFile:
    st = os.stat(path)
    return SourceFile(path=path, size=st.st_size, mtime=st.st_mtime, label=label)


def _not_a_file(entry: os.DirEntry[str]) -> str:
    """Why an entry named like an image is not one: a dangling symlink or a special file."""
    if entry.is_symlink() and not os.path.exists(entry.path):
        return f"broken symlink: its target {os.readlink(entry.path)} does not exist"
    mode = entry.stat().st_mode
    kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
    return f"not a regular file ({kind})"


def walk_folder(root: str, scan: Scan) -> None:
    """Add every image file under *root* to *scan*, following symlinks but never looping."""
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                scan.problems.append((folder, "symlink loop: folder already visited"))
                continue
            seen_dirs.add(key)
            entries = list(os.scandir(folder))
        except OSError as exc:
            scan.problems.append((folder, f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                if entry.is_dir():
                    stack.append(entry.path)
                elif os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
                    continue
                elif entry.is_file():
                    scan.files.append(_stat_file(entry.path))
                else:
                    scan.problems.append((entry.path, _not_a_file(entry)))
            except OSError as exc:
                scan.problems.append((entry.path, f"cannot stat: {exc.strerror or exc}"))


def read_csv(csv_path: Path, scan: Scan) -> None:
    """Add the images listed in a CSV with a ``path`` column (and optional ``label``, ``id``).

    Relative paths are relative to the CSV's folder, as in Milvus' text-image-search tutorial.
    """
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            _read_csv_rows(csv_path, csv.DictReader(fh), scan)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SourceError(f"cannot read {csv_path}: {reason}") from exc


def _read_csv_rows(csv_path: Path, reader: csv.DictReader[str], scan: Scan) -> None:
    if not reader.fieldnames or "path" not in reader.fieldnames:
        raise SourceError(f"{csv_path}: a CSV needs a 'path' column (id,path,label); found {reader.fieldnames}")
    base = csv_path.parent
    for line, row in enumerate(reader, start=2):
        raw = (row.get("path") or "").strip()
        if not raw:
            scan.problems.append((f"{csv_path}:{line}", "empty path"))
            continue
        path = os.path.abspath(base / os.path.expanduser(raw))
        try:
            scan.files.append(_stat_file(path, label=(row.get("label") or "").strip()))
        except OSError as exc:
            scan.problems.append((path, f"listed in {csv_path.name} line {line} but {exc.strerror or exc}"))


def check_sources(sources: Iterable[str | Path]) -> None:
    """Refuse, before anything is opened or created, sources that cannot be indexed at all:
    a path that does not exist, or a folder that cannot be listed."""
    for source in sources:
        path = os.path.abspath(os.path.expanduser(str(source)))
        if not os.path.lexists(path):
            raise SourceError(f"{source}: no such file or folder")
        if os.path.isdir(path):
            try:
                with os.scandir(path):
                    pass
            except OSError as exc:
                raise SourceError(f"{source}: cannot list folder: {exc.strerror or exc}") from exc


def scan_sources(sources: Iterable[str | Path]) -> Scan:
    """Scan folders, single image files and CSV lists into one deduplicated Scan."""
    scan = Scan()
    for source in sources:
        path = os.path.abspath(os.path.expanduser(str(source)))
        if os.path.isdir(path):
            scan.roots.append(path)
            walk_folder(path, scan)
        elif path.lower().endswith(".csv") and os.path.isfile(path):
            read_csv(Path(path), scan)
        elif os.path.isfile(path):
            scan.files.append(_stat_file(path))
        else:
            scan.problems.append((path, "no such file or folder"))
    unique = {f.path: f for f in scan.files}
    scan.files = list(unique.values())
    return scan
