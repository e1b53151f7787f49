"""Text in images: OCR'd words found by full-text search fused with CLIP (Lite: BM25; server: fallback)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pixsearch.indexer import Indexer
from pixsearch.models import load_embedder
from pixsearch.ocr import Recognizer
from pixsearch.quality.metrics import median_rank, recall_at_k, target_rank
from pixsearch.quality.rendered import render_set
from pixsearch.search import Searcher
from pixsearch.store import fulltext, schema

from .conftest import sample_images

WORDS = ["invoice", "harbor", "falcon", "lantern", "cobalt", "meadow"]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    pytest.importorskip("rapidocr_onnxruntime")
    return Recognizer(threads=1)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Six photos, each with one known word in a different font, size and rotation."""
    return render_set(sample_images(), WORDS, tmp_path_factory.mktemp("written"))


def test_rrf_and_the_fallback_ranking_are_the_documented_ones():
    assert fulltext.rrf([["a", "b"], ["b", "c"]]) == [("b", 1 / 62 + 1 / 61), ("a", 1 / 61), ("c", 1 / 62)]
    rows = [{"id": "x", "ocr_text": "Invoice 2024 total"}, {"id": "y", "ocr_text": "invoiced"},
            {"id": "z", "ocr_text": "INVOICE"}]
    assert fulltext.text_ranking(rows, ["invoice", "2024"]) == ["x", "z"]  # whole words; "invoiced" is not one
    from pixsearch.pageview import highlight_text

    shown = highlight_text("Big SALE_today\ninvoice (x)", ["invoice", "sale"])
    assert shown == "Big **SALE**\\_today / **invoice** \\(x\\)"


@pytest.mark.parametrize(("version", "bm25"), [
    ("v2.3.5", False), ("v2.4.15", False), ("v2.5.0", True), ("2.6.1-rc2", True), ("v3.0.1", True),
    ("", False), ("unknown", False), ("v10.0", True),
])
def test_servers_from_milvus_2_5_get_bm25_and_older_or_unreadable_ones_the_fallback(version, bm25):
    from pixsearch.store import policy

    assert policy.has_full_text(version) is bm25
    assert policy.policy_for("http://milvus:19530", version).full_text is bm25
    assert policy.policy_for("./lite.db").full_text  # Milvus Lite 2.5.1 has BM25


@pytest.mark.server
def test_the_2_3_server_reports_its_version_and_gets_the_fallback(milvus_server):
    from pixsearch.store import Store

    from .conftest import SERVER_TOKEN

    with Store(milvus_server.uri, token=SERVER_TOKEN) as store:
        assert store.policy.backend == "milvus-server"
        assert store.policy.full_text is False


@pytest.mark.slow
def test_each_written_word_finds_its_image_first_and_hybrid_beats_clip_only(
        backend, tiny_model, recognizer, written):
    store = backend.store("pixsearch_ocr_test")
    embedder = load_embedder(str(tiny_model), os.environ["PIXSEARCH_CACHE_DIR"], threads=1, precision="fp32")
    try:
        store.ensure_collection(embedder.model_id, str(tiny_model), embedder.dim)
        # First without OCR, as an existing collection would be; then --ocr reads text, embeds nothing.
        Indexer(store, embedder, workers=1).run([written[0].path.parent])
        assert not store.has_ocr_text()
        calls = []
        original = embedder.embed_prepared
        embedder.embed_prepared = lambda crops: calls.append(len(crops)) or original(crops)  # type: ignore[method-assign]
        report = Indexer(store, embedder, workers=1, ocr=recognizer).run([written[0].path.parent])
        assert report.embedded == 0 and calls == [] and report.ocr_read == len(WORDS)
        searcher = Searcher(store, embedder)
        hybrid, clip = [], []
        for image in written:
            hits = searcher.by_text(image.word, k=len(WORDS))
            hybrid.append(target_rank([h.path for h in hits], str(image.path)))
            assert hits[0].fields["ocr_matched"] == [image.word]
            assert image.word in hits[0].fields["ocr_text"].lower()
            vector = searcher.text_vector(image.word)
            clip.append(target_rank([h.path for h in store.search(vector[None, :], k=len(WORDS))[0]], str(image.path)))
        print(f"\n[{backend.kind}] text-in-image queries, n={len(WORDS)}: CLIP only R@1 {recall_at_k(clip, 1):.2f} "
              f"median rank {median_rank(clip)}; hybrid (RRF) R@1 {recall_at_k(hybrid, 1):.2f} "
              f"median rank {median_rank(hybrid)}")
        assert recall_at_k(hybrid, 1) == 1.0
        assert recall_at_k(clip, 1) < 1.0  # the tiny model cannot read: text search is what finds them
        assert np.isfinite(hits[0].score)
    finally:
        store.close()


def test_a_collection_from_before_ocr_gains_the_ocr_fields_with_its_vectors(backend):
    """Migration OCR_SCHEMA_VERSION - 1 -> OCR_SCHEMA_VERSION copies rows and vectors, with no text read."""
    from .test_store import rows

    with pytest.MonkeyPatch.context() as old:
        old.setattr(schema, "SCHEMA_VERSION", fulltext.OCR_SCHEMA_VERSION - 1)
        store = backend.store("pixsearch_ocr_migrate")
        store.ensure_collection("model-a", "model-a", 8)
        from pixsearch.store.rows import FIELDS_V2, HASH_FIELD

        store.write([{n: r[n] for n in FIELDS_V2 if n in r} | {"taken_at": r["mtime"], "taken_from": "mtime",
                     HASH_FIELD: "", "vector": r["vector"].tolist()} for r in rows(5)])
        store.close()
    store = backend.store("pixsearch_ocr_migrate")
    try:
        assert store.info().schema_version == schema.SCHEMA_VERSION
        data = rows(5)
        got = store.get([data[2]["id"]], with_vectors=True)[0]
        assert got["ocr_text"] == "" and got["ocr_model"] == ""
        assert np.allclose(got["vector"], data[2]["vector"])
        assert fulltext.has_bm25(store._calls.describe_collection(store.name)) == (backend.kind == "lite")
    finally:
        store.close()
