"""Everything that differs between Milvus backends, chosen in one place: ``policy_for``.

The same code serves the embedded Milvus Lite file (``./pixsearch.db``), a Milvus
standalone server and a cluster (``http://host:19530`` plus a token).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class IndexPolicy:
    """How pixsearch uses one kind of Milvus backend; measured choices, see the README."""

    backend: str
    index_type: str
    index_params: dict[str, Any]
    search_params: dict[str, Any]
    insert_batch: int
    """Rows per insert call. Milvus Lite 2.5 slows sharply above ~1k rows per call."""
    consistency: str = "Strong"
    """The collection's level, used for the reads that decide what to write (existing rows, counts)."""
    search_consistency: str = "Strong"
    """Level of searches and id lookups: these must be fast, and see this process's own writes."""
    page: int = 2000
    """Rows per query page when listing a collection (at most 16384)."""
    flush: bool = True
    """Whether to flush at the end of an index run."""
    full_text: bool = True
    """Whether new collections get Milvus' BM25 full-text search on the OCR text (Milvus 2.5+; the 2.3
    server has no sparse vectors: ``fulltext`` describes its fallback)."""

    def search_params_for(self, k: int) -> dict[str, Any]:
        """Search parameters for a top-*k* search (HNSW wants ef >= k)."""
        params = dict(self.search_params)
        if self.index_type == "HNSW":
            params["ef"] = max(int(params.get("ef", 0)), k)
        return params


DELETE_BATCH = 1000
"""Ids per delete call (one filter expression each; both backends take this many comfortably)."""


def is_local_uri(uri: str) -> bool:
    """True when *uri* names an embedded Milvus Lite file rather than a server."""
    return not re.match(r"^(https?|tcp|grpc|unix)://", uri)


FULL_TEXT_SINCE = (2, 5)
"""The first Milvus server release with sparse vectors and the BM25 function (Milvus 2.5)."""


def has_full_text(server_version: str) -> bool:
    """Whether a server reporting *server_version* (``v2.5.4``, ``2.6.0-rc1``, ``v3.0.1``) runs BM25.

    An unreadable version counts as too old: the fallback works everywhere, BM25 fields do not."""
    found = re.match(r"v?(\d+)\.(\d+)", server_version.strip())
    return found is not None and (int(found[1]), int(found[2])) >= FULL_TEXT_SINCE


def policy_for(uri: str, server_version: str = "") -> IndexPolicy:
    """The measured index/search configuration for the backend behind *uri* (a server's version,
    when known, decides whether new collections get BM25 full-text search)."""
    if is_local_uri(uri):
        # Milvus Lite 2.5 (C++ engine) offers FLAT, IVF_FLAT and AUTOINDEX. Measured at 100k CLIP-like
        # vectors: IVF_FLAT and AUTOINDEX answer in ~2 ms but find only 61% of the true top-10, whatever
        # nprobe/ef or limit is asked (Lite keeps rows in growing segments, searched through an interim
        # index with fixed parameters). FLAT is exact (recall 1.0) at ~16 ms: correctness wins.
        return IndexPolicy(backend="milvus-lite", index_type="FLAT", index_params={},
                           search_params={}, insert_batch=1000)
    # A Milvus server (measured on standalone 2.3.5). A Strong read waits for the next time tick
    # (~200 ms per call); Session reads this client's own writes at once (~3 ms), and others'
    # within a time tick: right for searches and id lookups, while the listing that decides what
    # an index run writes stays Strong, in big pages. A flush costs 0.5-3.5 s per call and is not
    # needed: acknowledged writes are already durable and searchable; the server seals segments.
    return IndexPolicy(backend="milvus-server", index_type="HNSW", index_params={"M": 16, "efConstruction": 200},
                       search_params={"ef": 128}, insert_batch=5000, search_consistency="Session",
                       page=10000, flush=False, full_text=has_full_text(server_version))
