"""The Milvus schemas of pixsearch's collections, and the description that marks them as ours.

An image collection's description is JSON: ``{"pixsearch": 1, "model_id", "model", "dim",
"schema_version"}``. A collection without it was not made by pixsearch and is never touched.
``schema_version`` says which layout of fields the collection has (see ``migrations``);
collections made before it was recorded have version 1.
"""

from __future__ import annotations

import json
from typing import Any

from .fulltext import OCR_SCHEMA_VERSION
from .rows import HASH_FIELD, MAX_LABEL, MAX_PATH, MAX_PHASH, MAX_REASON, MAX_TAKEN_FROM

SCHEMA_VERSION = OCR_SCHEMA_VERSION
"""The layout of image collections this code writes. Raise it with a migration in ``migrations``.

1: the file facts; 2: plus the capture time (``taken_at``, ``taken_from``); 3: plus the perceptual
hashes (``phash``), searchable in the ``HASH_SUFFIX`` companion collection; 4 (``OCR_SCHEMA_VERSION``):
plus the text read in the image (``ocr_text``, ``ocr_model``; ``fulltext.add_text_fields``)."""
HASH_SUFFIX = "__phash"
"""A collection's perceptual-hash index is the collection named like it plus this (see ``hashes``)."""
SKIP_SUFFIX = "__skipped"
"""A collection's skip log is the collection named like it plus this."""


def image_description(model_id: str, model: str, dim: int, version: int | None = None) -> str:
    """The description of a new image collection, at *version* (default: this code's ``SCHEMA_VERSION``)."""
    return json.dumps({"pixsearch": 1, "model_id": model_id, "model": model, "dim": dim,
                       "schema_version": SCHEMA_VERSION if version is None else version})


def schema_version(meta: dict[str, Any]) -> int:
    """The schema version a parsed description records (1 when it records none)."""
    return int(meta.get("schema_version", 1))


def parse_description(text: str) -> dict[str, Any] | None:
    """The pixsearch facts in a collection description, or None when it is not one of ours."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or "pixsearch" not in data or not {"model_id", "dim"} <= data.keys():
        return None
    return data


def image_schema(description: str, dim: int) -> Any:
    """The schema of an image collection: an id, the vector, and the file facts (``rows.fields_for``)
    of the schema version *description* records."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=description)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=32)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH)
    schema.add_field("label", DataType.VARCHAR, max_length=MAX_LABEL)
    schema.add_field("size", DataType.INT64)
    schema.add_field("mtime", DataType.DOUBLE)
    schema.add_field("width", DataType.INT64)
    schema.add_field("height", DataType.INT64)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("indexed_at", DataType.DOUBLE)
    meta = parse_description(description)
    if meta is not None and schema_version(meta) >= 2:
        schema.add_field("taken_at", DataType.DOUBLE)
        schema.add_field("taken_from", DataType.VARCHAR, max_length=MAX_TAKEN_FROM)
    if meta is not None and schema_version(meta) >= 3:
        schema.add_field(HASH_FIELD, DataType.VARCHAR, max_length=MAX_PHASH)
    return schema


def skip_schema() -> Any:
    """The schema of a skip log. Milvus wants a vector in every collection: a constant 2-d placeholder."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                        description=json.dumps({"pixsearch_skipped": 1}))
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=32)
    schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH)
    schema.add_field("size", DataType.INT64)
    schema.add_field("mtime", DataType.DOUBLE)
    schema.add_field("reason", DataType.VARCHAR, max_length=MAX_REASON)
    schema.add_field("seen_at", DataType.DOUBLE)
    return schema
