"""Queries: by text, by an example image, or by an image already in the index."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .errors import PixsearchError
from .images import decode_image
from .models.base import Embedder
from .store import Filters, Hit, Store

MAX_QUERY_CHARS = 1000
MAX_K = 1000
QUERY_MAX_PIXELS = 50_000_000
"""A query image (an upload) may not decode to more than this."""


class QueryError(PixsearchError, ValueError):
    """A query pixsearch refuses (empty, too long, unknown id, not an image...)."""


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
    """Embeds queries with the collection's own model and asks the store."""

    def __init__(self, store: Store, embedder: Embedder, cache_size: int = 1024):
        self.store = store
        self.embedder = embedder
        self._text_cache = _LruCache(cache_size)

    def text_vector(self, query: str) -> np.ndarray:
        query = " ".join(query.split())
        if not query:
            raise QueryError("empty query: type a few words describing the picture")
        if len(query) > MAX_QUERY_CHARS:
            raise QueryError(f"query too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")
        vector = self._text_cache.get(query)
        if vector is None:
            vector = self.embedder.embed_texts([query])[0]
            self._text_cache.put(query, vector)
        return vector

    def image_vector(self, data: bytes) -> np.ndarray:
        from .images import ImageError

        try:
            image = decode_image(data, min_side=self.embedder.min_decode_side, max_pixels=QUERY_MAX_PIXELS)
        except ImageError as exc:
            raise QueryError(f"not a usable image: {exc.reason}") from exc
        return self.embedder.embed_images([image.rgb])[0]

    def id_vector(self, image_id: str) -> np.ndarray:
        rows = self.store.get([image_id], with_vectors=True)
        if not rows:
            raise QueryError(f"no indexed image has id {image_id!r}")
        return rows[0]["vector"]

    def search(self, vector: np.ndarray, k: int = 10, filters: Filters = Filters()) -> list[Hit]:
        if not 1 <= k <= MAX_K:
            raise QueryError(f"k must be between 1 and {MAX_K}")
        return self.store.search(vector[None, :], k=k, filter=filters.expression(), min_score=filters.min_score)[0]

    def by_text(self, query: str, k: int = 10, filters: Filters = Filters()) -> list[Hit]:
        return self.search(self.text_vector(query), k, filters)

    def by_image(self, data: bytes, k: int = 10, filters: Filters = Filters()) -> list[Hit]:
        return self.search(self.image_vector(data), k, filters)

    def by_id(self, image_id: str, k: int = 10, filters: Filters = Filters()) -> list[Hit]:
        return self.search(self.id_vector(image_id), k, filters)
