"""Row operations on one named Milvus collection, whatever its schema.

The image collection and its skip log both page through rows, write in backend-sized
batches and delete by id; ``Table`` does that once, through the typed client.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .client import MilvusCalls
from .filters import quote
from .policy import DELETE_BATCH, IndexPolicy
from .rows import plain_row
from .schema import parse_description


class Table:
    """One collection by name, on an open connection, with the backend's policy."""

    def __init__(self, calls: MilvusCalls, policy: IndexPolicy, name: str):
        self._calls = calls
        self.policy = policy
        self._name = name

    @property
    def name(self) -> str:
        """The collection's name, fixed for this object's life."""
        return self._name

    @property
    def uri(self) -> str:
        return self._calls.uri

    def sibling(self, name: str) -> Table:
        """Another collection on the same connection (a skip log, a migration target)."""
        return Table(self._calls, self.policy, name)

    def exists(self) -> bool:
        return self._calls.has_collection(self.name)

    def description(self) -> dict[str, Any] | None:
        """The pixsearch facts in the collection's description, or None if it does not exist or is not
        an image collection of pixsearch's (see ``schema.parse_description``)."""
        if not self.exists():
            return None
        return parse_description(self.description_text())

    def description_text(self) -> str:
        """The collection's description as Milvus holds it."""
        return str(self._calls.describe_collection(self.name).get("description", ""))

    def create(self, schema: Any, index_params: Any) -> None:
        """Create the collection with pymilvus' *schema* and *index_params* (see ``schema.py``)."""
        self._calls.create_collection(self.name, schema=schema, index_params=index_params,
                                      consistency_level=self.policy.consistency)

    def index_params(self) -> Any:
        """An empty pymilvus IndexParams to describe this collection's indexes with."""
        return self._calls.prepare_index_params()

    def drop_table(self) -> None:
        """Drop this one collection (nothing else)."""
        self._calls.drop_collection(self.name)

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Upsert rows already in wire form, in backend-sized batches."""
        step = self.policy.insert_batch
        for start in range(0, len(rows), step):
            self._calls.upsert(self.name, [dict(r) for r in rows[start:start + step]])

    def delete(self, ids: Iterable[str]) -> int:
        """Delete rows by id; returns how many ids were asked for."""
        ids = list(ids)
        for start in range(0, len(ids), DELETE_BATCH):
            self._calls.delete(self.name, ids=ids[start:start + DELETE_BATCH])
        return len(ids)

    def scan(self, fields: Sequence[str], filter: str = "", page: int = 0) -> Iterator[dict[str, Any]]:
        """Every row matching *filter*, page by page in primary-key order (memory stays flat)."""
        page = page or self.policy.page
        last = ""
        while True:
            condition = f"id > {quote(last)}" + (f" and ({filter})" if filter else "")
            rows = self._calls.query(self.name, filter=condition, output_fields=list(dict.fromkeys(["id", *fields])),
                                     limit=page, consistency_level=self.policy.consistency)
            if not rows:
                return
            rows.sort(key=lambda r: str(r["id"]))
            yield from (plain_row(r) for r in rows)
            if len(rows) < page:
                return
            last = str(rows[-1]["id"])

    def search_field(self, field: str, data: Sequence[Any], limit: int, filter: str, output_fields: Sequence[str],
                     search_params: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """A raw search of vector *field* (hits as pymilvus gives them), at the policy's search consistency."""
        return self._calls.search(self.name, data=data, limit=limit, filter=filter, output_fields=output_fields,
                                  search_params=search_params, consistency_level=self.policy.search_consistency,
                                  anns_field=field)

    def count_rows(self) -> int:
        """A Strong ``count(*)``: exact, and ~200 ms on a server (a time tick)."""
        rows = self._calls.query(self.name, filter="", output_fields=["count(*)"],
                                 consistency_level=self.policy.consistency)
        return int(rows[0]["count(*)"]) if rows else 0
