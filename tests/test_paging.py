"""Paging and combined terms through the one query path (Searcher), on Milvus Lite and the server.

Pages are cut from one ranking: pages 1..n concatenated must equal one search for n pages'
worth of results, ids and order, with filters and min_score too."""

from __future__ import annotations

import numpy as np
import pytest

from pixsearch.models import load_embedder
from pixsearch.search import IdTerm, Limits, Query, QueryError, Searcher, TextTerm
from pixsearch.store import Filters
from pixsearch.store.rows import image_id

ROWS = 240


@pytest.fixture
def searcher(backend, tiny_model, tmp_path):
    embedder = load_embedder(str(tiny_model), tmp_path / "cache", precision="fp32")
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((ROWS, embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [{"id": image_id(f"/photos/{i}.jpg"), "vector": vectors[i], "path": f"/photos/{i}.jpg",
             "label": "even" if i % 2 == 0 else "odd", "size": 1, "mtime": 1.0, "width": 1, "height": 1,
             "content_hash": f"{i:016x}", "indexed_at": 1.0} for i in range(ROWS)]
    with backend.store("paging") as store:
        store.ensure_collection(embedder.model_id, str(tiny_model), embedder.dim)
        store.upsert(rows)
        yield Searcher(store, embedder, Limits(max_k=250, max_window=300))


@pytest.mark.parametrize(("filters", "page"), [
    (Filters(), 7), (Filters(label="odd"), 10), (Filters(min_score=0.05), 9), (Filters(min_score=0.3), 4),
    (Filters(), 40)])  # 6 x 40 = 240 > 128: past the server's default ef
def test_pages_concatenated_equal_one_big_search(searcher, filters, page):
    terms = (IdTerm(image_id("/photos/3.jpg")), TextTerm("a red dress", 0.5), TextTerm("a shoe", -0.25))
    pages = 6
    big = searcher.search(Query(terms, k=page * pages, filters=filters))
    joined = []
    for n in range(pages):
        joined += searcher.search(Query(terms, k=page, filters=filters, offset=n * page))
    assert [(h.id, round(h.score, 5)) for h in joined] == [(h.id, round(h.score, 5)) for h in big]
    assert len(big) > page  # the pages really went past the first
    if filters.min_score is not None:
        assert all(h.score >= filters.min_score for h in joined)
    if filters.label:
        assert {h.fields["label"] for h in joined} == {"odd"}


def test_a_page_past_the_end_is_empty_and_the_window_is_bounded(searcher):
    query = Query((IdTerm(image_id("/photos/3.jpg")),), k=50, offset=250)
    assert searcher.search(query) == []
    with pytest.raises(QueryError, match=r"offset \+ k may be at most 300"):
        searcher.search(Query((TextTerm("x"),), k=50, offset=251))
    with pytest.raises(QueryError, match="offset must be 0 or more"):
        searcher.search(Query((TextTerm("x"),), k=5, offset=-1))


def test_combined_vector_is_the_renormalised_weighted_sum_of_unit_vectors(searcher):
    first, second = image_id("/photos/1.jpg"), image_id("/photos/2.jpg")
    a, b = searcher.id_vector(first), searcher.id_vector(second)
    text = searcher.text_vector("a red dress")
    expected = a / np.linalg.norm(a) - 0.5 * b / np.linalg.norm(b) + 2 * text / np.linalg.norm(text)
    got = searcher.query_vector((IdTerm(first), IdTerm(second, -0.5), TextTerm("a red dress", 2.0)))
    assert np.allclose(got, expected / np.linalg.norm(expected), atol=1e-5)
    hits = searcher.search(Query((IdTerm(first), IdTerm(second, -1.0)), k=ROWS // 5))
    assert hits[0].id == first and second not in {h.id for h in hits}


def test_errors_name_the_bad_term(searcher):
    terms = (TextTerm("a red dress"), IdTerm("ffffffffffffffff", -1.0))
    with pytest.raises(QueryError, match=r"term 2 \(-1\*image id 'ffffffffffffffff'\): no indexed image"):
        searcher.search(Query(terms))
    with pytest.raises(QueryError, match=r"term 1 \(0\.5\*text ''\): empty query"):
        searcher.search(Query((TextTerm("  ", 0.5), TextTerm("shoe"))))
    with pytest.raises(QueryError, match="cancel out"):
        searcher.search(Query((TextTerm("shoe"), TextTerm("shoe", -1.0))))


@pytest.mark.parametrize("filters", [Filters(), Filters(min_score=0.05)])
def test_pages_with_the_relevance_cut_continue_each_other_and_count_what_was_cut(searcher, filters):
    terms = (IdTerm(image_id("/photos/3.jpg")), IdTerm(image_id("/photos/8.jpg")), IdTerm(image_id("/photos/21.jpg")))
    whole = searcher.results(Query(terms, k=ROWS, filters=filters, cut="auto"))
    assert whole.relevant == len(whole.hits) and whole.cut > 0
    assert whole.cut + whole.relevant <= ROWS
    # the three example images stand out from random vectors: the cut keeps them, not the bulk
    assert {image_id(f"/photos/{i}.jpg") for i in (3, 8, 21)} <= {h.id for h in whole.hits}
    assert whole.relevant < ROWS // 2
    joined = []
    for n in range(0, ROWS // 2, 2):
        page = searcher.results(Query(terms, k=2, filters=filters, offset=n, cut="auto"))
        assert (page.cut, page.relevant) == (whole.cut, whole.relevant)
        joined += page.hits
    assert [h.id for h in joined] == [h.id for h in whole.hits]
    plain = searcher.search(Query(terms, k=ROWS, filters=filters))
    assert [h.id for h in plain[:len(whole.hits)]] == [h.id for h in whole.hits]
    with pytest.raises(QueryError, match="cut must be one of"):
        searcher.search(Query(terms, k=2, cut="maybe"))
