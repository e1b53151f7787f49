"""The vector store: one Milvus collection per model, through pymilvus' MilvusClient.

Milvus is the only source of truth: each row holds an image's vector and the file facts
(path, size, mtime, content hash) that incremental indexing compares. The parts:

- ``connection``: ``Store``, a connection bound to one collection;
- ``collection``: the image collection's reads, writes and searches;
- ``table``: row paging and batching shared by every collection;
- ``skiplog``: the files that could not be indexed;
- ``hashes``: the perceptual hashes, searchable by Hamming distance (``pixsearch duplicates``);
- ``schema``: the schemas, ``SCHEMA_VERSION`` and the description that marks a collection as pixsearch's;
- ``migrations``: schema versions checked on open, and the migrations between them;
- ``policy``: what differs between Milvus Lite and a server;
- ``filters``: Milvus filter expressions;
- ``client``: the typed MilvusClient calls and their errors;
- ``lite``: Milvus Lite's engine process.
"""

from __future__ import annotations

from .collection import Collection, CollectionInfo, Hit, collection_name_for
from .connection import Store
from .errors import StoreError
from .filters import Filters, is_under, path_prefix_filter, quote
from .fulltext import words
from .hashes import HashHit, HashIndex
from .migrations import Migration
from .policy import IndexPolicy, is_local_uri, policy_for
from .rows import FIELDS, HASH_FIELD, MAX_LABEL, MAX_PATH, ImageRow, SkipRow, image_id
from .schema import SCHEMA_VERSION
from .skiplog import SkipLog

__all__ = [
    "FIELDS",
    "HASH_FIELD",
    "MAX_LABEL",
    "MAX_PATH",
    "SCHEMA_VERSION",
    "Collection",
    "CollectionInfo",
    "Filters",
    "HashHit",
    "HashIndex",
    "Hit",
    "ImageRow",
    "IndexPolicy",
    "Migration",
    "SkipLog",
    "SkipRow",
    "Store",
    "StoreError",
    "collection_name_for",
    "image_id",
    "is_local_uri",
    "is_under",
    "path_prefix_filter",
    "policy_for",
    "quote",
    "words",
]
