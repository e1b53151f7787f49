"""Queries: by text, by an example image, by an image already in the index, or a mix of them.

One ``Searcher`` answers every query of the CLI, the REST API and the web page: each builds a
``Query`` and calls ``Searcher.search``. The Searcher owns what bounds a query (``Limits``), the
one error for an unknown id (``NotFound``) and the cache of text embeddings. How a hit is shown
(JSON, URLs, gallery captions) is each front end's business.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from .errors import PixsearchError
from .exif import iso
from .images import ImageError, decode_image
from .models.base import Embedder
from .relevance import CUT_DEPTH, CUTS, keep_count, method_of
from .store import Filters, Hit, ImageRow, Store

ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
"""Row ids are 8-byte blake2b hex digests of the path (indexer.image_id)."""


class QueryError(PixsearchError, ValueError):
    """A query pixsearch refuses (empty, too long, unknown id, not an image...)."""


class NotFound(QueryError, LookupError):
    """An id that names no indexed image, or whose file can no longer be served.

    One error wherever an id is looked up (search by id, images, thumbnails): the API answers
    404, the page and the CLI print the message."""


class UploadTooLarge(QueryError):
    """A query image over ``Limits.max_upload_bytes`` (the API answers 413)."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one query may ask for, so one client cannot stall the server.

    The Searcher enforces them; the front ends only derive their own bounds from them (the
    API's documented parameter ranges, the page's slider, the request-body guards)."""

    max_k: int = 200
    max_window: int = 1000
    """The deepest result a query may reach: ``offset + k`` (Milvus allows at most 16384; a page is
    cut from one top-(offset + k) search, so deep pages cost as much as one big search)."""
    max_terms: int = 16
    """Terms one combined query may hold."""
    max_query_chars: int = 1000
    max_upload_bytes: int = 20 * 1024 * 1024
    max_query_pixels: int = 50_000_000
    """A query image (an upload) may not decode to more than this."""

    def check_k(self, k: int) -> int:
        if not 1 <= k <= self.max_k:
            raise QueryError(f"k must be between 1 and {self.max_k} (got {k})")
        return k

    def check_page(self, offset: int, k: int) -> tuple[int, int]:
        """*offset* and *k* when the page they name lies within ``max_window``."""
        self.check_k(k)
        if offset < 0:
            raise QueryError(f"offset must be 0 or more (got {offset})")
        if offset + k > self.max_window:
            raise QueryError(f"offset + k may be at most {self.max_window} (got {offset} + {k})")
        return offset, k

    def check_terms(self, count: int) -> None:
        if count > self.max_terms:
            raise QueryError(f"too many query terms ({count}; at most {self.max_terms})")

    def check_upload(self, size: int) -> None:
        if size > self.max_upload_bytes:
            raise UploadTooLarge(f"upload too large ({size / 2**20:.2f} MiB): {self.upload_rule}")

    @property
    def upload_rule(self) -> str:
        """The limit as every front end states it."""
        return f"uploads are limited to {self.max_upload_bytes / 2**20:g} MiB"


@dataclass(frozen=True)
class TextTerm:
    """Words describing the picture."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True)
class ImageTerm:
    """The bytes of an example image (an upload or a file)."""

    data: bytes = field(repr=False)
    weight: float = 1.0
    name: str = ""
    """How errors name the image (a file's path, an upload's name); empty for "an image"."""


@dataclass(frozen=True)
class IdTerm:
    """An image already in the index, by its id ("more like this")."""

    image_id: str
    weight: float = 1.0


Term = TextTerm | ImageTerm | IdTerm

SORTS = ("relevance", "date")
"""How a page of results may be ordered: by score, or by capture date (newest first)."""


def parse_date(text: str, what: str = "date") -> float:
    """An ISO date or date-time (2024-05-01, 2024-05-01T12:00+02:00) as UTC epoch seconds.

    One without an offset is read as UTC, the way wall-clock EXIF dates (``exif-local``) are stored."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(f"{what} {text!r} is not an ISO date or date-time (like 2024-05-01 or "
                         "2024-05-01T12:00+02:00)") from None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def hit_fields(hit: Hit) -> dict[str, object]:
    """A hit's stored fields as every front end shows them: the capture time as ISO text
    (with its UTC offset, except a wall-clock ``exif-local`` one; ``taken_from`` says which)."""
    fields = dict(hit.fields)
    if fields.get("taken_at") is not None:
        fields["taken_at"] = iso(float(fields["taken_at"]), str(fields.get("taken_from", "")))
    return fields


def with_dates(filters: Filters, after: str | None, before: str | None) -> Filters:
    """*filters* narrowed to capture dates from *after* (inclusive) to *before* (exclusive), ISO text;
    blank text leaves that side open."""
    after, before = (after or "").strip(), (before or "").strip()
    return replace(filters, after=parse_date(after, "after") if after else None,
                   before=parse_date(before, "before") if before else None)


def check_sort(sort: str) -> str:
    if sort not in SORTS:
        raise QueryError(f"sort must be one of {', '.join(SORTS)} (got {sort!r})")
    return sort


@dataclass(frozen=True)
class Query:
    """What to look for (one term, or several whose weighted vectors are summed), how many
    results, and which images may answer."""

    terms: tuple[Term, ...]
    k: int = 10
    filters: Filters = field(default_factory=Filters)
    offset: int = 0
    """Results to skip: page *n* (from 0) of size k is ``offset = n * k``; pages are cut from one
    ranking, so concatenated they equal one search with ``k = pages * k``."""
    sort: str = "relevance"
    """"date": the page (the relevant results that pass min_score) newest-taken first."""
    cut: str = "none"
    """"auto" (or a method of relevance.CUT_METHODS): keep only the results that stand out from the
    query's own score distribution; applied with min_score, before paging."""

    @classmethod
    def of(cls, term: Term, k: int = 10, filters: Filters = Filters(), offset: int = 0) -> Query:
        return cls((term,), k, filters, offset)


def check_cut(cut: str) -> str:
    if cut not in CUTS:
        raise QueryError(f"cut must be one of {', '.join(CUTS)} (got {cut!r})")
    return cut


@dataclass(frozen=True)
class Results:
    """One page of hits, and what the relevance cut did to the whole ranking (not only this page)."""

    hits: list[Hit]
    cut: int = 0
    """Results the relevance cut removed from the ranking it looked at (0 without a cut)."""
    relevant: int | None = None
    """Results that passed the cut and min_score (None without a cut): pages end there."""


class _LruCache:
    """A small thread-safe LRU map, for text embeddings of repeated queries."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


class Searcher:
    """Embeds queries with the collection's own model and asks the store: the one query path."""

    def __init__(self, store: Store, embedder: Embedder, limits: Limits = Limits(), cache_size: int = 1024):
        self.store = store
        self.embedder = embedder
        self.limits = limits
        self._text_cache = _LruCache(cache_size)

    def search(self, query: Query) -> list[Hit]:
        """The page of hits of ``results(query)``."""
        return self.results(query).hits

    def results(self, query: Query) -> Results:
        """The nearest indexed images to the query's vector, best first: results offset+1 to offset+k.

        A page is the slice of one top-(offset + k) ranking (min_score is applied to that ranking
        before slicing), so page 2 continues page 1 exactly whatever the backend supports. Sorting
        by date reorders that page only: it is the relevant set, not the whole library, by date.
        A relevance cut looks at the query's top ``CUT_DEPTH`` scores whatever the page, so every
        page of a query sees the same cut."""
        offset, k = self.limits.check_page(query.offset, query.k)
        check_sort(query.sort)
        method = method_of(check_cut(query.cut))
        vector = self.query_vector(query.terms)
        filters = query.filters
        cut, relevant = 0, None
        if method is None:
            hits = self.store.search(vector[None, :], k=offset + k, filter=filters.expression(),
                                     min_score=filters.min_score)[0]
        else:
            ranking = self.store.search(vector[None, :], k=max(offset + k, CUT_DEPTH),
                                        filter=filters.expression())[0]
            keep = keep_count([hit.score for hit in ranking], method)
            cut = len(ranking) - keep
            hits = [hit for hit in ranking[:keep] if filters.min_score is None or hit.score >= filters.min_score]
            relevant = len(hits)
        page = hits[offset:offset + k]
        if query.sort == "date":
            page.sort(key=lambda hit: float(hit.fields.get("taken_at") or 0.0), reverse=True)
        return Results(page, cut, relevant)

    def query_vector(self, terms: tuple[Term, ...]) -> np.ndarray:
        """One term's vector as it is; several terms' weighted sum, scaled back to unit length."""
        if not terms:
            raise QueryError("empty query: give words, an image or an image id")
        self.limits.check_terms(len(terms))
        if len(terms) == 1 and terms[0].weight == 1.0:
            return self.term_vector(terms[0])
        total = np.zeros(self.embedder.dim, dtype=np.float64)
        for number, term in enumerate(terms, start=1):
            if not np.isfinite(term.weight):
                raise QueryError(f"term {number} ({describe(term)}): the weight must be a finite number")
            try:
                vector = self.term_vector(term)
            except QueryError as exc:
                raise type(exc)(f"term {number} ({describe(term)}): {exc}") from exc
            total = total + term.weight * _unit(vector)
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise QueryError("the weighted query terms cancel out; change their weights")
        return np.asarray(total / norm, dtype=np.float32)

    def term_vector(self, term: Term) -> np.ndarray:
        if isinstance(term, TextTerm):
            return self.text_vector(term.text)
        if isinstance(term, ImageTerm):
            return self.image_vector(term.data)
        return self.id_vector(term.image_id)

    def text_vector(self, query: str) -> np.ndarray:
        query = " ".join(query.split())
        if not query:
            raise QueryError("empty query: type a few words describing the picture")
        if len(query) > self.limits.max_query_chars:
            raise QueryError(f"query too long ({len(query)} characters; at most {self.limits.max_query_chars})")
        vector = self._text_cache.get(query)
        if vector is None:
            vector = self.embedder.embed_texts([query])[0]
            self._text_cache.put(query, vector)
        return vector

    def image_vector(self, data: bytes) -> np.ndarray:
        self.limits.check_upload(len(data))
        try:
            image = decode_image(data, min_side=self.embedder.min_decode_side,
                                 max_pixels=self.limits.max_query_pixels)
        except ImageError as exc:
            raise QueryError(f"not a usable image: {exc.reason}") from exc
        vector: np.ndarray = self.embedder.embed_images([image.rgb])[0]
        return vector

    def id_vector(self, image_id: str) -> np.ndarray:
        vector: np.ndarray = self.row(image_id, with_vector=True)["vector"]
        return np.asarray(vector, dtype=np.float32)

    def row(self, image_id: str, with_vector: bool = False) -> ImageRow:
        """The indexed row of *image_id* (NotFound when there is none)."""
        rows = self.store.get([check_id(image_id)], with_vectors=with_vector)
        if not rows:
            raise NotFound(f"no indexed image has id {image_id!r}")
        return rows[0]

    # The front ends' shorthands for a one-term query.

    def by_text(self, query: str, k: int = 10, filters: Filters = Filters()) -> list[Hit]:
        return self.search(Query.of(TextTerm(query), k, filters))

    def by_image(self, data: bytes, k: int = 10, filters: Filters = Filters()) -> list[Hit]:
        return self.search(Query.of(ImageTerm(data), k, filters))

    def by_id(self, image_id: str, k: int = 10, filters: Filters = Filters()) -> list[Hit]:
        return self.search(Query.of(IdTerm(image_id), k, filters))


def _unit(vector: np.ndarray) -> np.ndarray:
    """*vector* scaled to length 1 (the models already return unit vectors; stored ones may drift)."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def describe(term: Term) -> str:
    """A term as an error message names it: its kind, and its text or id (short)."""
    weight = "" if term.weight == 1.0 else f"{term.weight:g}*"
    if isinstance(term, TextTerm):
        text = " ".join(term.text.split())
        return f"{weight}text {text[:40]!r}{'…' if len(text) > 40 else ''}"
    if isinstance(term, ImageTerm):
        return f"{weight}image {term.name!r}" if term.name else f"{weight}image of {len(term.data):,} bytes"
    return f"{weight}image id {term.image_id[:40]!r}"


def check_id(image_id: str) -> str:
    """*image_id* if it is well formed; anything else can never name a row."""
    if not ID_PATTERN.fullmatch(image_id or ""):
        raise NotFound(f"{image_id[:40]!r} is not an image id (ids are 16 hex characters, as returned by search)")
    return image_id
