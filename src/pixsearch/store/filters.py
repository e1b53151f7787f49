"""Milvus filter expressions pixsearch writes, and their Python twins.

Both backends parse the same syntax; what needs care is quoting and folder prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass


def quote(value: str) -> str:
    """A Milvus filter-expression string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def path_prefix_filter(prefix: str) -> str:
    """Filter for exactly the rows whose path is *prefix* or lies under it.

    A string range, not ``like``: ``like`` has no reliable escape on either backend
    (Milvus Lite 2.5 treats ``_`` and ``%`` as wildcards and crashes on ``\\_``;
    Milvus 2.3 refuses an inner ``%``). Every path under ``P/`` sorts at or after
    ``"P/"`` and before ``"P0"``, since ``0`` follows ``/`` in byte order.
    """
    folder = prefix.rstrip("/")
    return f"path == {quote(folder or '/')} or (path >= {quote(folder + '/')} and path < {quote(folder + '0')})"


def is_under(path: str, prefix: str) -> bool:
    """path_prefix_filter for one path, in Python."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Filters:
    """What a search may be narrowed to; ``expression()`` is its Milvus filter."""

    folder: str = ""
    """Only images at or under this folder."""
    label: str = ""
    min_score: float | None = None
    after: float | None = None
    """Only images taken at or after this (UTC epoch seconds, compared with ``taken_at``)."""
    before: float | None = None
    """Only images taken before this (exclusive)."""

    def expression(self) -> str:
        parts = []
        if self.folder:
            parts.append(f"({path_prefix_filter(self.folder)})")
        if self.label:
            parts.append(f"label == {quote(self.label)}")
        if self.after is not None:
            parts.append(f"taken_at >= {float(self.after)!r}")
        if self.before is not None:
            parts.append(f"taken_at < {float(self.before)!r}")
        return " and ".join(parts)
