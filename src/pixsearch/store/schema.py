"""The Milvus schemas of pixsearch's collections, and the description that marks them as ours.

An image collection's description is JSON: ``{"pixsearch": 1, "model_id", "model", "dim"}``.
A collection without it was not made by pixsearch and is never touched.
"""

from __future__ import annotations

import json
from typing import Any

from .rows import MAX_LABEL, MAX_PATH, MAX_REASON

SKIP_SUFFIX = "__skipped"
"""A collection's skip log is the collection named like it plus this."""


def image_description(model_id: str, model: str, dim: int) -> str:
    return json.dumps({"pixsearch": 1, "model_id": model_id, "model": model, "dim": dim})


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
    """The schema of an image collection: an id, the vector, and the file facts (``rows.FIELDS``)."""
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
