"""One pixsearch image collection: its facts, its writes, its reads and searches."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from .client import MilvusCalls
from .errors import StoreError
from .filters import path_prefix_filter
from .fulltext import (
    OCR_SCHEMA_VERSION,
    TEXT_CANDIDATES,
    add_text_fields,
    bm25_requests,
    fuse_fallback,
    has_bm25,
    say_fallback,
    text_ranking,
    words,
)
from .hashes import HashIndex
from .policy import IndexPolicy
from .rows import FIELDS, HASH_FIELD, ImageRow, plain_row, wire_row
from .schema import image_description, image_schema, parse_description, schema_version
from .skiplog import SkipLog
from .table import Table


def collection_name_for(model_id: str) -> str:
    """Default collection of a model: Milvus names allow letters, digits and underscores."""
    return "pixsearch_" + re.sub(r"[^0-9A-Za-z_]", "_", model_id)[:200]


@dataclass
class Hit:
    id: str
    score: float
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return str(self.fields.get("path", ""))


def create_image_table(table: Table, description: str, dim: int,
                       schema_for: Callable[[str, int], Any] = image_schema) -> None:
    """Create *table* as an image collection: *schema_for(description, dim)* and the policy's vector index,
    plus the OCR text fields from ``OCR_SCHEMA_VERSION`` on (searched by BM25 where the backend can)."""
    index = table.index_params()
    index.add_index(field_name="vector", index_type=table.policy.index_type, metric_type="IP",
                    params=table.policy.index_params)
    schema = schema_for(description, dim)
    meta = parse_description(description)
    if meta is not None and schema_version(meta) >= OCR_SCHEMA_VERSION:
        add_text_fields(schema, index, table.policy.full_text)
    table.create(schema, index)


COUNT_MAX_AGE_S = 5.0
"""How long a count may be reused when this process has not written since: other processes
writing to a server show up within this long. (A Milvus Lite file has no other writers.)"""


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection's description says, and its row count where one was asked for."""

    name: str
    model_id: str
    model: str
    """What to pass as --model to query this collection."""
    dim: int
    count: int | None
    """Rows in the collection; None when not counted (a Strong count(*) costs ~200 ms on a server)."""
    backend: str
    schema_version: int = 1


class Collection(Table):
    """An image collection: rows of ``rows.FIELDS`` plus a vector, made by pixsearch for one model."""

    def __init__(self, calls: MilvusCalls, policy: IndexPolicy, name: str):
        super().__init__(calls, policy, name)
        self._count_lock = threading.Lock()
        self._writes = 0
        """Writes this object has finished; a cached count is valid only for the number it was taken at."""
        self._cached_count: tuple[int, float, int] | None = None
        """(count, monotonic time taken, self._writes when the count started)."""

    def info(self, *, count: bool = False) -> CollectionInfo | None:
        """Facts about this collection, or None if it does not exist or is not ours; *count*: with its rows."""
        meta = self.description()
        if meta is None:
            return None
        return CollectionInfo(name=self.name, model_id=meta["model_id"], model=meta.get("model", meta["model_id"]),
                              dim=int(meta["dim"]), count=self.count() if count else None,
                              backend=self.policy.backend, schema_version=schema_version(meta))

    def count(self) -> int:
        """Rows in the collection: a Strong count(*) (~200 ms on a server), reused until this object
        writes or deletes, or for COUNT_MAX_AGE_S (writes by other processes)."""
        with self._count_lock:
            cached, started_at = self._cached_count, self._writes
        if cached is not None:
            count, taken, writes = cached
            if writes == started_at and time.monotonic() - taken < COUNT_MAX_AGE_S:
                return count
        taken = time.monotonic()
        count = self.count_rows()
        with self._count_lock:
            # A write that finished while counting may be missing from the count: keep it only if none did.
            if self._writes == started_at:
                self._cached_count = (count, taken, started_at)
        return count

    def invalidate_count(self) -> None:
        """Forget the cached count: this object changed the rows (or the collection itself)."""
        with self._count_lock:
            self._writes += 1
            self._cached_count = None

    def ensure_collection(self, model_id: str, model: str, dim: int) -> None:
        """Create the collection for *model_id*, or check that the existing one belongs to it."""
        info = self.info()
        if info is not None:
            if info.model_id != model_id or info.dim != dim:
                raise StoreError(
                    f"collection {self.name!r} in {self.uri} holds embeddings of model {info.model_id!r} "
                    f"(dim {info.dim}), not {model_id!r} (dim {dim}); pixsearch never mixes models. Use "
                    f"--model {info.model} to work with it, or --collection NEW to index this model separately."
                )
            return
        if self.exists():
            raise StoreError(f"collection {self.name!r} in {self.uri} was not made by pixsearch; "
                             "pass another --collection")
        create_image_table(self, image_description(model_id, model, dim), dim)
        self.invalidate_count()

    def drop(self) -> None:
        """Drop the collection, its skip log and its hash index."""
        SkipLog(self).drop()
        HashIndex(self).drop()
        self.drop_table()
        self.invalidate_count()

    # ------------------------------------------------------------------ writes

    def upsert(self, rows: Sequence[ImageRow] | Sequence[dict[str, Any]]) -> None:
        """Insert or replace rows (each with every field and ``vector``), in backend-sized batches; their
        perceptual hashes also go to the hash index (``hashes``), after the rows themselves."""
        try:
            wire = [wire_row(r) for r in rows]
            self.write(wire)
            HashIndex(self).write((r["id"], r[HASH_FIELD]) for r in wire)
        finally:
            self.invalidate_count()

    def delete(self, ids: Iterable[str]) -> int:
        """Delete rows (and their hashes) by id; returns how many ids were asked for."""
        ids = list(ids)
        try:
            HashIndex(self).delete(ids)
            return super().delete(ids)
        finally:
            self.invalidate_count()

    def flush(self, force: bool = False) -> None:
        """Seal what was written so searches use the index instead of scanning growing rows.

        Only where the policy says it pays (a server seals segments itself; flushing costs seconds),
        unless *force* (benchmarks measuring sealed segments); a failed flush loses nothing.
        """
        if not (self.policy.flush or force):
            return
        try:
            self._calls.flush(self.name)
        except StoreError:
            pass

    def index_progress(self) -> dict[str, Any]:
        """Milvus' description of the vector index (indexed_rows, total_rows, pending_index_rows, state)."""
        return self._calls.describe_index(self.name, "vector")

    def reload(self) -> None:
        """Release and load the collection, so a server serves it from its sealed, indexed segments."""
        self._calls.release_collection(self.name)
        self._calls.load_collection(self.name)

    # ------------------------------------------------------------------ reads

    def get(self, ids: Sequence[str], with_vectors: bool = False, with_hashes: bool = False) -> list[ImageRow]:
        if not ids:
            return []
        fields = list(FIELDS) + (["vector"] if with_vectors else []) + ([HASH_FIELD] if with_hashes else [])
        rows = self._calls.get(self.name, ids=list(ids), output_fields=fields,
                               consistency_level=self.policy.search_consistency)
        return [cast(ImageRow, plain_row(r)) for r in rows]

    def iter_rows(self, fields: Sequence[str] = FIELDS, filter: str = "", page: int = 0) -> Iterator[ImageRow]:
        """Every row matching *filter*, page by page in primary-key order (memory stays flat)."""
        for row in self.scan(fields, filter=filter, page=page):
            yield cast(ImageRow, row)

    def iter_under(self, prefix: str, fields: Sequence[str] = FIELDS) -> Iterator[ImageRow]:
        """Every row whose path is *prefix* or lies under it."""
        yield from self.iter_rows(tuple(dict.fromkeys(["path", *fields])), filter=path_prefix_filter(prefix))

    def has_ocr_text(self) -> bool:
        """Whether any row holds text OCR read (only then does a text query also search text)."""
        meta = self.description()
        if meta is None or schema_version(meta) < OCR_SCHEMA_VERSION:
            return False
        return bool(self._calls.query(self.name, filter='ocr_text != ""', output_fields=["id"], limit=1,
                                      consistency_level=self.policy.search_consistency))

    def hybrid_search(self, vector: ArrayLike, text: str, k: int, filter: str = "",
                      output_fields: Sequence[str] = FIELDS) -> list[Hit]:
        """Top-*k* rows for *vector* and the words of *text* in the OCR text, fused by RRF (``fulltext``):
        one Milvus hybrid search with BM25 where the collection has it, else the documented fallback."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        fields = list(output_fields)
        if has_bm25(self._calls.describe_collection(self.name)):
            requests, ranker = bm25_requests(query, text, k, filter, self.policy.search_params_for(k))
            results = self._calls.hybrid_search(self.name, requests, ranker, limit=k, output_fields=fields,
                                                consistency_level=self.policy.search_consistency)
            raw = [(str(h.get("id")), float(h.get("distance", 0.0)), dict(h.get("entity", {}) or {}))
                   for h in (results[0] if results else [])]
        else:
            say_fallback(self.uri)
            vector_hits = [(h.id, h.score, h.fields) for h in self.search([query], k, filter, None, fields)[0]]
            terms = list(dict.fromkeys(words(text)))
            rows: list[dict[str, Any]] = []
            if terms:  # 2.3's like takes prefixes only: the texts are scored here, a bounded set of them
                condition = 'ocr_text != ""' + (f" and ({filter})" if filter else "")
                texts = self._calls.query(self.name, filter=condition, output_fields=["id", "ocr_text"],
                                          limit=TEXT_CANDIDATES, consistency_level=self.policy.search_consistency)
                best = set(text_ranking(texts, terms)[:k])
                rows = self._calls.get(self.name, ids=sorted(best), output_fields=fields,
                                       consistency_level=self.policy.search_consistency) if best else []
            raw = fuse_fallback(vector_hits, rows, terms, k)
        return [Hit(id=hit_id, score=score, fields=plain_row({**entity, "id": hit_id}))
                for hit_id, score, entity in raw]

    def search(self, vectors: ArrayLike, k: int, filter: str = "", min_score: float | None = None,
               output_fields: Sequence[str] = FIELDS) -> list[list[Hit]]:
        """Top-*k* rows by inner product (= cosine for unit vectors) for each query vector."""
        queries = np.asarray(vectors, dtype=np.float32)
        results = self._calls.search(
            self.name, data=queries.tolist(), limit=k, filter=filter, output_fields=list(output_fields),
            search_params={"metric_type": "IP", "params": self.policy.search_params_for(k)},
            consistency_level=self.policy.search_consistency,
        )
        out = []
        for hits in results:
            row = []
            for hit in hits:
                entity = dict(hit.get("entity", {}) or {})
                hit_id = hit.get("id", entity.get("id"))
                score = float(hit.get("distance", hit.get("score", 0.0)))
                if min_score is not None and score < min_score:
                    continue
                entity.setdefault("id", hit_id)
                row.append(Hit(id=str(hit_id), score=score, fields=plain_row(entity)))
            out.append(row)
        return out
