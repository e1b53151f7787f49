"""Full-text search over the text recognised in images (``ocr``), fused with the vector search.

From schema version ``OCR_SCHEMA_VERSION`` an image row keeps ``ocr_text`` (what OCR read, "" for
none) and ``ocr_model`` (the recogniser that read it; "" = not read yet). Two ways to search it:

* **BM25 in Milvus** (Milvus Lite 2.5.1 here; Milvus 2.5+): ``ocr_text`` has an analyzer, a BM25
  function fills the sparse field ``ocr_sparse``, and one ``hybrid_search`` runs the CLIP vector
  search and the BM25 search and fuses them with Reciprocal Rank Fusion, RRF(k=60): an image's
  score is the sum over both rankings of 1 / (60 + its rank there).
* **Fallback** for servers without sparse vectors or BM25 (the Milvus 2.3 server): ``ocr_text`` is
  a plain VARCHAR. Its ``like`` takes prefixes only (``ab%``), so the rows holding any text (at most
  ``TEXT_CANDIDATES``) are scored in Python by how many distinct query words they contain as whole
  words (shorter texts first on ties), and that ranking is fused with the vector ranking by the
  same RRF(k=60).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("pixsearch.store")

OCR_SCHEMA_VERSION = 4
"""First schema version with the OCR fields (3 added the perceptual hashes)."""
MAX_OCR_TEXT = 4096
MAX_OCR_MODEL = 64
OCR_FIELDS = ("ocr_text", "ocr_model")
SPARSE_FIELD = "ocr_sparse"
RRF_K = 60
"""The RRF constant (Cormack et al.'s 60, also pymilvus' default)."""
TEXT_CANDIDATES = 16384
"""Rows with text the fallback scores in Python per query (Milvus' largest query page): a server
library with more images holding text searches only this many of them (Milvus' order)."""

RawHit = tuple[str, float, dict[str, Any]]
"""(id, score, stored fields) of one fused result."""


def words(text: str) -> list[str]:
    """Lower-case words (letters and digits) of *text*: what both search paths compare."""
    return re.findall(r"[^\W_]+", text.lower())


def add_text_fields(schema: Any, index: Any, full_text: bool) -> None:
    """Add the OCR fields to an image collection's *schema* (and, with *full_text*, the analyzer,
    the BM25 function and its sparse index to *schema* and *index*)."""
    from pymilvus import DataType, Function, FunctionType

    if full_text:
        schema.add_field("ocr_text", DataType.VARCHAR, max_length=MAX_OCR_TEXT, enable_analyzer=True)
    else:
        schema.add_field("ocr_text", DataType.VARCHAR, max_length=MAX_OCR_TEXT)
    schema.add_field("ocr_model", DataType.VARCHAR, max_length=MAX_OCR_MODEL)
    if full_text:
        schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="ocr_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["ocr_text"], output_field_names=[SPARSE_FIELD]))
        index.add_index(field_name=SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")


def has_bm25(description: dict[str, Any]) -> bool:
    """Whether a described collection (``describe_collection``) has the BM25 sparse field."""
    return any(f.get("name") == SPARSE_FIELD for f in description.get("fields", []))


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal Rank Fusion of id rankings: sum of 1 / (k + rank), best first (ties: first seen)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def text_ranking(rows: Sequence[dict[str, Any]], terms: Sequence[str]) -> list[str]:
    """Ids of *rows* that contain query *terms* as whole words: more distinct terms first, then
    shorter texts (a word in a caption weighs more than the same word in a page of print)."""
    wanted = set(terms)
    scored = []
    for row in rows:
        text = str(row.get("ocr_text") or "")
        found = len(wanted.intersection(words(text)))
        if found:
            scored.append((-found, len(text), str(row["id"])))
    return [row_id for _found, _length, row_id in sorted(scored)]


_said_fallback: set[str] = set()


def say_fallback(uri: str) -> None:
    """Log once per server that its text search is the fallback, and why."""
    if uri not in _said_fallback:
        _said_fallback.add(uri)
        log.warning("Milvus at %s has no BM25 full-text search (sparse vectors and BM25 need Milvus 2.5+): "
                    "text in images is matched with a like filter over at most %d candidates, scored in "
                    "pixsearch and fused with the image search by RRF(k=%d)", uri, TEXT_CANDIDATES, RRF_K)


def fuse_fallback(vector_hits: Sequence[RawHit], text_rows: Sequence[dict[str, Any]],
                  terms: Sequence[str], limit: int) -> list[RawHit]:
    """The fallback's fusion: the vector ranking and the Python text ranking by RRF, top *limit*."""
    fields = {hit_id: entity for hit_id, _score, entity in vector_hits}
    for row in text_rows:
        fields.setdefault(str(row["id"]), dict(row))
    fused = rrf([[hit_id for hit_id, _s, _e in vector_hits], text_ranking(text_rows, terms)])
    return [(hit_id, score, fields[hit_id]) for hit_id, score in fused[:limit]]


def bm25_requests(vector: list[float], text: str, limit: int, filter: str,
                  vector_params: dict[str, Any]) -> tuple[list[Any], Any]:
    """pymilvus requests for one hybrid search: the vector arm and the BM25 arm, and the RRF ranker."""
    from pymilvus import AnnSearchRequest, RRFRanker

    requests = [
        AnnSearchRequest(data=[vector], anns_field="vector", param={"metric_type": "IP", "params": vector_params},
                         limit=limit, expr=filter or None),
        AnnSearchRequest(data=[text], anns_field=SPARSE_FIELD, param={"metric_type": "BM25"},
                         limit=limit, expr=filter or None),
    ]
    return requests, RRFRanker(RRF_K)
