"""The Milvus store: collections per model, idempotent writes, filters, pagination."""

from __future__ import annotations

import numpy as np
import pytest

from pixsearch.store import Store, StoreError, collection_name_for, path_prefix_filter


def rows(n: int, dim: int = 8, prefix: str = "/photos", seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [{"id": f"{i:016x}", "vector": vectors[i], "path": f"{prefix}/img {i}.jpg", "label": "l" + str(i % 3),
             "size": 100 + i, "mtime": 1.5 + i, "width": 640, "height": 480, "content_hash": f"h{i}",
             "indexed_at": 0.0} for i in range(n)]


@pytest.fixture
def store(backend):
    """A fresh collection on each backend: Milvus Lite and a real Milvus server."""
    s = backend.store(collection_name_for("model-a"))
    s.ensure_collection("model-a", "model-a", 8)
    yield s
    s.close()


def test_upsert_is_idempotent_and_searchable(store):
    data = rows(50)
    store.upsert(data)
    store.upsert(data[:10])  # written twice: still one row each
    assert store.count() == 50
    hits = store.search(data[7]["vector"][None, :], k=3)[0]
    assert hits[0].id == data[7]["id"] and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].path == "/photos/img 7.jpg" and hits[0].fields["width"] == 640


def test_model_mismatch_is_refused(store, backend):
    other = backend.store(store.collection)
    with pytest.raises(StoreError, match="never mixes models"):
        other.ensure_collection("model-b", "model-b", 8)
    with pytest.raises(StoreError, match="dim"):
        other.ensure_collection("model-a", "model-a", 16)
    assert [c.model_id for c in other.collections()] == ["model-a"]


def test_iter_rows_pages_through_everything(store):
    store.upsert(rows(45))
    seen = [r["id"] for r in store.iter_rows(("path",), page=10)]
    assert len(seen) == 45 and len(set(seen)) == 45


def test_path_prefix_filter_is_exact_about_folders(store):
    store.upsert(rows(3, prefix="/a/b"))
    odd = rows(2, prefix='/a/b_c "quoted"%', seed=2)
    for r in odd:
        r["id"] = "z" + r["id"][1:]
    store.upsert(odd)
    under_b = {r["path"] for r in store.iter_under("/a/b")}
    assert under_b == {f"/a/b/img {i}.jpg" for i in range(3)}
    under_odd = {r["path"] for r in store.iter_under('/a/b_c "quoted"%')}
    assert len(under_odd) == 2
    # `_` and `%` would be wildcards to Milvus' like: the range filter takes them literally.
    assert {r["path"] for r in store.iter_under("/a/b_")} == set()
    target, lookalike = rows(3, prefix="/c/b_c", seed=3), rows(20, prefix="/c/bXc", seed=4)
    for i, r in enumerate(target + lookalike):
        r["id"] = f"y{i:015x}"
    store.upsert(target + lookalike)
    # The query is a look-alike folder's image: a like-based filter would return only look-alikes.
    hits = store.search(lookalike[0]["vector"][None, :], k=3, filter=path_prefix_filter("/c/b_c"))[0]
    assert sorted(h.path for h in hits) == sorted(r["path"] for r in target)


def test_delete_and_get_with_vectors(store):
    data = rows(5)
    store.upsert(data)
    got = store.get([data[2]["id"]], with_vectors=True)[0]
    assert np.allclose(got["vector"], data[2]["vector"], atol=1e-6)
    store.delete([data[0]["id"], data[1]["id"]])
    assert store.count() == 3


def test_bad_server_uri_is_one_clear_error():
    with pytest.raises(StoreError, match="cannot open Milvus"):
        Store("http://127.0.0.1:9", timeout=2)
