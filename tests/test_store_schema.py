"""Collection handles, counts only where shown, and schema versions with migrations, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

from pixsearch.store import SkipLog, StoreError, migrations, schema
from pixsearch.store.migrations import MIGRATING_SUFFIX, Migration
from pixsearch.store.rows import FIELDS_V1

from .test_store import rows

NAME = "pixsearch_schema_test"
CURRENT = schema.SCHEMA_VERSION
"""This code's version; the migration tests below add a made-up next one, CURRENT + 1."""
NEXT = CURRENT + 1


def make_collection(backend, n: int = 30, name: str = NAME):
    store = backend.store(name)
    store.ensure_collection("model-a", "model-a", 8)
    store.upsert(rows(n))
    SkipLog(store).record([("/photos/broken.jpg", 10, 1.0, "not an image")])
    store.close()


def count_calls(monkeypatch, store) -> list[int]:
    """Record each real count(*) the store runs (the real method still runs)."""
    calls: list[int] = []
    real = store.count_rows

    def counted() -> int:
        calls.append(1)
        return real()

    monkeypatch.setattr(store, "count_rows", counted)
    return calls


def upper_labels() -> Migration:
    return Migration(source=CURRENT, summary="labels upper-cased (a test migration)",
                     transform=lambda row: {**row, "label": row["label"].upper()})


@pytest.fixture
def version_next(monkeypatch):
    """This code knows schema version NEXT, reached from CURRENT by upper-casing labels."""
    monkeypatch.setattr(migrations, "MIGRATIONS", dict(migrations.MIGRATIONS))
    migrations.register(upper_labels())
    monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT)


def test_a_store_is_bound_to_one_collection_for_life(backend):
    store = backend.store(NAME)
    store.ensure_collection("model-a", "model-a", 8)
    store.upsert(rows(3))
    other = store.bind("pixsearch_other")
    assert store.collection == NAME and other.collection == "pixsearch_other"
    with pytest.raises(AttributeError):
        store.collection = "pixsearch_other"
    with pytest.raises(AttributeError):
        store.name = "pixsearch_other"
    other.ensure_collection("model-b", "model-b", 8)
    assert store.count() == 3 and other.count() == 0
    assert sorted(c.name for c in store.collections()) == ["pixsearch_other", NAME]
    store.drop_collection("pixsearch_other")
    assert [c.name for c in store.collections()] == [NAME]
    other.close()
    store.close()  # the shared connection: closing both is harmless


def test_count_only_where_shown_and_cached_until_a_write(backend, monkeypatch):
    store = backend.store(NAME)
    store.ensure_collection("model-a", "model-a", 8)
    calls = count_calls(monkeypatch, store)
    info = store.info()
    assert info is not None and info.count is None and info.dim == 8
    assert [c.count for c in store.collections(count=False)] == [None] and calls == []
    store.upsert(rows(5))
    assert store.count() == 5 and store.count() == 5 and len(calls) == 1
    store.delete([rows(5)[0]["id"]])
    assert store.count() == 4 and len(calls) == 2
    assert store.info(count=True).count == 4 and len(calls) == 2
    store.close()


def test_an_older_collection_is_migrated_on_open(backend, version_next):
    with pytest.MonkeyPatch.context() as old:
        old.setattr(schema, "SCHEMA_VERSION", CURRENT)
        make_collection(backend)
        before = backend.store(NAME)
        assert before.info().schema_version == CURRENT
        before.close()
    store = backend.store(NAME)
    info = store.info(count=True)
    assert info.schema_version == NEXT and info.count == 30 and info.model_id == "model-a"
    assert {r["label"] for r in store.iter_rows(("label",))} == {"L0", "L1", "L2"}
    data = rows(30)
    got = store.get([data[7]["id"]], with_vectors=True)[0]
    assert np.allclose(got["vector"], data[7]["vector"], atol=1e-6) and got["path"] == data[7]["path"]
    assert store.search(data[7]["vector"][None, :], k=1)[0][0].id == data[7]["id"]
    assert list(SkipLog(store).rows()) == ["/photos/broken.jpg"]
    assert not store.other(NAME + MIGRATING_SUFFIX).exists()
    store.close()
    again = backend.store(NAME)  # migrated once: opening again changes nothing
    assert {r["label"] for r in again.iter_rows(("label",))} == {"L0", "L1", "L2"}
    again.close()


def test_a_migration_interrupted_after_the_copy_is_finished_on_the_next_open(backend, version_next, monkeypatch):
    with pytest.MonkeyPatch.context() as old:
        old.setattr(schema, "SCHEMA_VERSION", CURRENT)
        make_collection(backend)

    def power_cut(collection, staging):
        raise KeyboardInterrupt("power cut")

    with monkeypatch.context() as m:
        m.setattr(migrations, "_restore", power_cut)
        with pytest.raises(KeyboardInterrupt):
            backend.store(NAME)
    store = backend.store(NAME)  # the original is gone; the complete copy is restored
    info = store.info(count=True)
    assert info.schema_version == NEXT and info.count == 30
    assert {r["label"] for r in store.iter_rows(("label",))} == {"L0", "L1", "L2"}
    assert not store.other(NAME + MIGRATING_SUFFIX).exists()
    store.close()


def test_a_migration_that_fails_mid_copy_leaves_the_collection_whole(backend, version_next, monkeypatch):
    with pytest.MonkeyPatch.context() as old:
        old.setattr(schema, "SCHEMA_VERSION", CURRENT)
        make_collection(backend, n=30)
    seen: list[str] = []

    def breaks_on_the_tenth(row):
        seen.append(row["id"])
        if len(seen) == 10:
            raise ValueError("a bug in a migration")
        return upper_labels().transform(row)

    with monkeypatch.context() as m:
        broken = Migration(CURRENT, "broken", breaks_on_the_tenth)
        m.setattr(migrations, "MIGRATIONS", {**migrations.MIGRATIONS, CURRENT: broken})
        with pytest.raises(ValueError):
            backend.store(NAME)
    store = backend.store(NAME)
    info = store.info(count=True)
    assert info.schema_version == NEXT and info.count == 30
    store.close()


def test_a_newer_collection_is_refused_with_what_to_do(backend, monkeypatch):
    with pytest.MonkeyPatch.context() as newer:
        newer.setattr(schema, "SCHEMA_VERSION", NEXT)
        make_collection(backend)
    newer_text = rf"schema version {NEXT}, newer than this pixsearch knows \({CURRENT}\).*Upgrade"
    with pytest.raises(StoreError, match=newer_text):
        backend.store(NAME)
    with pytest.raises(StoreError, match="newer"):
        backend.store("").bind(NAME)


def test_a_version_without_a_migration_says_how_to_rebuild(backend, monkeypatch):
    make_collection(backend)
    monkeypatch.setattr(migrations, "MIGRATIONS", {})
    monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT)
    needs = rf"schema version {CURRENT} and this pixsearch needs {NEXT}.*--collection NEW"
    with pytest.raises(StoreError, match=needs):
        backend.store(NAME)


def test_a_version_1_collection_gains_capture_dates_from_its_mtimes(backend):
    """The real migration 1 -> 2: a collection written as pixsearch 1 wrote it (no taken_at/taken_from)."""
    with pytest.MonkeyPatch.context() as old:
        old.setattr(schema, "SCHEMA_VERSION", 1)
        store = backend.store(NAME)
        store.ensure_collection("model-a", "model-a", 8)
        v1 = [{name: row[name] for name in FIELDS_V1} | {"vector": row["vector"].tolist()} for row in rows(12)]
        store.write(v1)  # the version-1 layout refuses the new fields: write exactly the old ones
        assert store.info().schema_version == 1
        store.close()
    store = backend.store(NAME)
    assert store.info().schema_version == schema.SCHEMA_VERSION
    got = {r["path"]: r for r in store.iter_rows(("path", "mtime", "taken_at", "taken_from"))}
    assert len(got) == 12
    assert all(r["taken_at"] == r["mtime"] and r["taken_from"] == "mtime" for r in got.values())
    data = rows(12)
    assert store.search(data[3]["vector"][None, :], k=1)[0][0].fields["taken_from"] == "mtime"
    store.upsert([{**data[3], "taken_at": 5.0, "taken_from": "exif"}])
    assert store.get([data[3]["id"]])[0]["taken_at"] == 5.0
    store.close()
