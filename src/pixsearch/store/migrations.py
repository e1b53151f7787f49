"""Schema versions of image collections, checked on every open, and the migrations between them.

Every image collection records the ``schema_version`` of its layout (``schema.py``; none
recorded means 1). Opening a collection brings an older one up to ``SCHEMA_VERSION`` through
``MIGRATIONS``, one version at a time, and refuses a newer one: that needs a newer pixsearch.

A Milvus 2.3 server cannot add fields to a collection and Milvus Lite cannot rename one, so
a migration that changes the layout rebuilds the collection under its own name, through a
companion ``<name>__migrating`` collection that always holds a complete copy while the
original is gone: an interrupted migration is finished on the next open. A migration that
cannot be done by copying (new embeddings, say) names the command that rebuilds instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import schema
from .collection import Collection, create_image_table
from .errors import StoreError
from .fulltext import OCR_SCHEMA_VERSION
from .rows import fields_for
from .schema import image_description, image_schema, schema_version
from .table import Table

MIGRATING_SUFFIX = "__migrating"

Row = dict[str, Any]


@dataclass(frozen=True)
class Migration:
    """How an image collection goes from version ``source`` to ``source + 1``."""

    source: int
    summary: str
    """What changes, for messages."""
    transform: Callable[[Row], Row] | None
    """A row (every field and the vector) at ``source`` -> the row at ``source + 1``; None when copying
    cannot do it (``instructions`` then say what the user runs instead)."""
    schema_for: Callable[[str, int], Any] = image_schema
    """The pymilvus schema of version ``source + 1``, from (description, dim)."""
    instructions: str = ""


MIGRATIONS: dict[int, Migration] = {}
"""Migration from each version to the next, by source version."""


def register(migration: Migration) -> Migration:
    """Add a migration to the registry (one per source version)."""
    if migration.source in MIGRATIONS:
        raise ValueError(f"a migration from schema version {migration.source} is registered already")
    MIGRATIONS[migration.source] = migration
    return migration


def ensure_version(collection: Collection) -> None:
    """Bring *collection* to ``SCHEMA_VERSION``, or refuse it; a missing collection is left alone."""
    staging = collection.sibling(collection.name + MIGRATING_SUFFIX)
    meta = collection.description()
    if staging.exists() and (meta is None or _version(staging) == schema_version(meta)):
        _restore(collection, staging)  # a migration stopped after the copy: finish it
        meta = collection.description()
    if meta is None:
        return
    version, current = schema_version(meta), schema.SCHEMA_VERSION
    if version > current:
        raise StoreError(
            f"collection {collection.name!r} in {collection.uri} has schema version {version}, newer than this "
            f"pixsearch knows ({current}): it was written by a newer pixsearch. Upgrade pixsearch "
            "(pip install -U pixsearch) to use it."
        )
    while version < current:
        step = MIGRATIONS.get(version)
        if step is None or step.transform is None:
            how = step.instructions if step is not None and step.instructions else (
                "index into a new collection instead (pixsearch index PATH --collection NEW)")
            summary = f" ({step.summary})" if step is not None else ""
            raise StoreError(f"collection {collection.name!r} in {collection.uri} has schema version {version} and "
                             f"this pixsearch needs {current}{summary}; it cannot be converted in place: {how}")
        _rebuild(collection, staging, step)
        version = _version(collection)
        if version != step.source + 1:
            raise RuntimeError(f"migration from schema version {step.source} left version {version}")


def _version(table: Table) -> int:
    meta = table.description()
    if meta is None:
        raise StoreError(f"collection {table.name!r} in {table.uri} lost its pixsearch description mid-migration")
    return schema_version(meta)


def _rebuild(collection: Collection, staging: Table, step: Migration) -> None:
    """Copy every row through the step's transform into *staging* at the next version, then back."""
    meta = collection.description()
    assert meta is not None and step.transform is not None
    dim = int(meta["dim"])
    description = image_description(meta["model_id"], meta.get("model", meta["model_id"]), dim, step.source + 1)
    if staging.exists():
        staging.drop_table()  # an unfinished copy from an interrupted run; the original is still whole
    create_image_table(staging, description, dim, step.schema_for)
    _copy(collection, staging, step.transform)
    collection.drop_table()
    _restore(collection, staging)


def _restore(collection: Collection, staging: Table) -> None:
    """Recreate *collection* from the complete copy in *staging*, then drop the copy."""
    meta = staging.description()
    if meta is None:
        raise StoreError(f"{staging.name!r} in {staging.uri} is not a pixsearch migration copy; drop it by hand")
    version = schema_version(meta)
    step = MIGRATIONS.get(version - 1)
    schema_for = step.schema_for if step is not None else image_schema
    if collection.exists():
        collection.drop_table()  # a copy back that did not finish
    create_image_table(collection, staging.description_text(), int(meta["dim"]), schema_for)
    _copy(staging, collection, lambda row: row)
    staging.drop_table()
    collection.invalidate_count()


def _copy(source: Table, target: Table, transform: Callable[[Row], Row]) -> None:
    """Every row of *source*, with its vector, through *transform* into *target*, a page at a time."""
    batch: list[Row] = []
    for row in source.scan((*fields_for(_version(source)), "vector")):
        out = transform(dict(row))
        batch.append({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in out.items()})
        if len(batch) >= target.policy.insert_batch:
            target.write(batch)
            batch = []
    if batch:
        target.write(batch)


def _with_mtime_dates(row: Row) -> Row:
    """A version-1 row at version 2: its capture time is its mtime (EXIF is re-read when the file changes)."""
    return {**row, "taken_at": float(row["mtime"]), "taken_from": "mtime"}


register(Migration(source=1, summary="capture dates added (taken_at, taken_from); existing rows get their mtime",
                   transform=_with_mtime_dates))


def _without_hashes(row: Row) -> Row:
    """A version-2 row at version 3: no perceptual hashes yet ("" = the next index run computes them)."""
    return {**row, "phash": ""}


register(Migration(source=2, summary="perceptual hashes added (for pixsearch duplicates); images already "
                   "indexed get theirs on the next pixsearch index, without re-embedding",
                   transform=_without_hashes))


def _without_ocr_text(row: Row) -> Row:
    """A row before OCR at the OCR version: no text read yet (``--ocr`` reads it, and embeds nothing)."""
    return {**row, "ocr_text": "", "ocr_model": ""}


register(Migration(source=OCR_SCHEMA_VERSION - 1, summary="text read in images added (ocr_text, ocr_model); "
                   "existing rows have none until an index run with --ocr", transform=_without_ocr_text))
