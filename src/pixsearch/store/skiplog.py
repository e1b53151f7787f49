"""Files that could not be indexed, with the reason, kept in a companion collection."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import cast

from .rows import MAX_PATH, MAX_REASON, SkipRow, image_id
from .schema import SKIP_SUFFIX, skip_schema
from .table import Table


class SkipLog:
    """The skipped files of one image collection.

    A skipped file is retried only when its size or mtime changes, and
    ``pixsearch stats --skipped`` lists them.
    """

    FIELDS = ("path", "size", "mtime", "reason", "seen_at")

    def __init__(self, store: Table, collection: str = ""):
        """*store*: the image collection (or any table on the same connection, with *collection* naming it)."""
        self.name = f"{collection or store.name}{SKIP_SUFFIX}"
        self._table = store.sibling(self.name)

    def _ensure(self) -> None:
        if self._table.exists():
            return
        index = self._table.index_params()
        index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
        self._table.create(skip_schema(), index)

    def rows(self) -> dict[str, SkipRow]:
        """Every skipped file, by path."""
        if not self._table.exists():
            return {}
        return {str(row["path"]): cast(SkipRow, row) for row in self._table.scan(self.FIELDS)}

    def record(self, entries: Sequence[tuple[str, int, float, str]]) -> None:
        """Remember (path, size, mtime, reason) of files that failed."""
        if not entries:
            return
        self._ensure()
        now = time.time()
        self._table.write([{"id": image_id(path), "placeholder": [0.0, 0.0], "path": path[:MAX_PATH],
                            "size": int(size), "mtime": float(mtime), "reason": reason[:MAX_REASON], "seen_at": now}
                           for path, size, mtime, reason in entries])

    def forget(self, paths: Iterable[str]) -> None:
        ids = [image_id(p) for p in paths]
        if ids and self._table.exists():
            self._table.delete(ids)

    def drop(self) -> None:
        if self._table.exists():
            self._table.drop_table()
