"""Retrieval quality you can measure: ``pixsearch eval``.

Captions data (see datasets.py) is reported as Recall@k and median rank; labelled
data as precision@k and mean average precision, plus image-to-image label
precision@k (each image as a query, itself excluded).

The images are indexed with the product's own ``Indexer`` into a Milvus collection
and searched with ``Store.search``, so the figures are what users get. ``exact=True``
also ranks the same stored vectors by brute force in NumPy, which separates the
model's quality from the approximate index's losses. The metrics themselves are
pure functions in metrics.py.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..config import Settings
from .datasets import DEFAULT_TEMPLATES, Dataset, EvalError, load_dataset, prompts_for
from .metrics import average_precision, median_rank, overlap_at_k, precision_at_k, recall_at_k, target_rank

__all__ = ["DEFAULT_KS", "DEFAULT_TEMPLATES", "EvalError", "evaluate_model", "run_eval"]

DEFAULT_KS = (1, 5, 10)
MAX_DEPTH = 1000
"""Deepest ranking fetched per query: ranks beyond it count as 'not found'."""
CURVE_POINTS = 50
_QUERY_CHUNK = 128

Vectors = npt.NDArray[np.float32]
Result = dict[str, Any]
"""JSON-ready results, as ``pixsearch eval --json`` prints them."""


# ----------------------------------------------------------------------------- ranking


Ranker = Callable[[Vectors, int], list[list[str]]]
"""Query vectors and a depth to rankings: image paths, best first."""


class _PathHit(Protocol):
    @property
    def path(self) -> str: ...


class VectorSearch(Protocol):
    """What eval needs of ``Store``: its top-k search with stored fields."""

    def search(self, vectors: Vectors, k: int, filter: str = "", min_score: float | None = None,
               output_fields: Sequence[str] = ...) -> Sequence[Sequence[_PathHit]]: ...


class _TextEmbedder(Protocol):
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> Vectors: ...


def ann_ranker(store: VectorSearch) -> Ranker:
    """Rankings (image paths, best first) from the Milvus index, as ``pixsearch search`` gets them."""

    def rank(vectors: Vectors, depth: int) -> list[list[str]]:
        out: list[list[str]] = []
        for start in range(0, len(vectors), _QUERY_CHUNK):
            hits = store.search(vectors[start:start + _QUERY_CHUNK], k=depth, output_fields=("path",))
            out.extend([hit.path for hit in row] for row in hits)
        return out

    return rank


def exact_ranker(paths: Sequence[str], matrix: Vectors) -> Ranker:
    """Rankings by brute-force inner product over the very vectors stored in Milvus."""

    def rank(vectors: Vectors, depth: int) -> list[list[str]]:
        scores = np.asarray(vectors, dtype=np.float32) @ matrix.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        return [[paths[i] for i in row] for row in order]

    return rank


# ----------------------------------------------------------------------------- scoring


def score_captions(rankings: list[list[str]], targets: Sequence[str], ks: Sequence[int]) -> Result:
    ranks = [target_rank(r, t) for r, t in zip(rankings, targets, strict=True)]
    curve_to = min(CURVE_POINTS, max(len(r) for r in rankings) if rankings else 1)
    return {"queries": len(ranks), **{f"recall@{k}": recall_at_k(ranks, k) for k in ks},
            "median_rank": median_rank(ranks),
            "curve": [recall_at_k(ranks, k) for k in range(1, curve_to + 1)]}


def score_labels(rankings: list[list[str]], query_labels: Sequence[str], labels: dict[str, str],
                 ks: Sequence[int]) -> Result:
    totals: dict[str, int] = {}
    for label in labels.values():
        totals[label] = totals.get(label, 0) + 1
    per_label: dict[str, dict[str, list[float]]] = {}
    for ranking, label in zip(rankings, query_labels, strict=True):
        relevant = [labels.get(p) == label for p in ranking]
        entry = per_label.setdefault(label, {"ap": [], **{f"precision@{k}": [] for k in ks}})
        entry["ap"].append(average_precision(relevant, totals[label]))
        for k in ks:
            entry[f"precision@{k}"].append(precision_at_k(relevant, k))
    means = {name: {metric: float(np.mean(values)) for metric, values in entry.items()}
             for name, entry in sorted(per_label.items())}
    return {"queries": len(rankings), **{f"precision@{k}": float(np.mean([m[f"precision@{k}"] for m in means.values()]))
                                         for k in ks},
            "map": float(np.mean([m["ap"] for m in means.values()])), "per_label": means}


def score_image_to_image(rankings: list[list[str]], queries: Sequence[str], labels: dict[str, str],
                         ks: Sequence[int]) -> dict[str, float]:
    """Label precision@k of each image's neighbours, the query image itself removed."""
    out = {}
    for k in ks:
        values = []
        for ranking, query in zip(rankings, queries, strict=True):
            others = [p for p in ranking if p != query]
            values.append(precision_at_k([labels.get(p) == labels[query] for p in others], k))
        out[f"precision@{k}"] = float(np.mean(values)) if values else 0.0
    return out


def chance(dataset: Dataset, ks: Sequence[int]) -> dict[str, float]:
    """What a random ranking scores, the floor every model must clear."""
    n = len(dataset.images)
    if dataset.kind == "captions":
        return {**{f"recall@{k}": min(1.0, k / n) for k in ks}, "median_rank": (n + 1) / 2}
    counts = {name: sum(1 for v in dataset.labels.values() if v == name) for name in dataset.label_names}
    same = float(np.mean([(counts[label] - 1) / max(1, n - 1) for label in dataset.labels.values()]))
    return {**{f"precision@{k}": float(np.mean([c / n for c in counts.values()])) for k in ks},
            "image_to_image_precision": same}


def label_chance(dataset: Dataset) -> dict[str, float]:
    """Per label, the precision a random ranking expects: the label's share of the images."""
    n = len(dataset.images)
    return {name: sum(1 for v in dataset.labels.values() if v == name) / n for name in dataset.label_names}


def evaluate_rankings(dataset: Dataset, rank: Ranker, text_vectors: Vectors, queries: list[tuple[str, str]],
                      image_paths: Sequence[str], image_vectors: Vectors, ks: Sequence[int]) -> Result:
    """All metrics of one ranker (ANN or exact) on *dataset*."""
    depth = min(len(image_paths), MAX_DEPTH)
    rankings = rank(text_vectors, depth)
    if dataset.kind == "captions":
        return score_captions(rankings, [target for _, target in queries], ks)
    result = score_labels(rankings, [label for _, label in queries], dataset.labels, ks)
    neighbours = rank(image_vectors, min(len(image_paths), max(ks) + 1))
    result["image_to_image"] = score_image_to_image(neighbours, image_paths, dataset.labels, ks)
    return result


# ----------------------------------------------------------------------------- running one model


def queries_of(dataset: Dataset, templates: Sequence[str]) -> list[tuple[str, str]]:
    """(text, target) pairs: target is an image path (captions) or a label (labels)."""
    if dataset.kind == "captions":
        return [(c, path) for path in dataset.images for c in dataset.captions[path]]
    return prompts_for(dataset.label_names, templates)


def _embed_texts(embedder: _TextEmbedder, texts: Sequence[str], batch: int = 64) -> Vectors:
    parts = [embedder.embed_texts(list(texts[i:i + batch])) for i in range(0, len(texts), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)


def evaluate_model(dataset: Dataset, model: str, settings: Settings, templates: Sequence[str] = DEFAULT_TEMPLATES,
                   ks: Sequence[int] = DEFAULT_KS, exact: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> Result:
    """Index *dataset* with *model* into ``settings.db`` and measure retrieval through Milvus."""
    from ..models import load_spec
    from ..store import collection_name_for
    from ..workspace import new_indexer, open_workspace

    spec = load_spec(model, Path(settings.cache_dir).expanduser())
    collection = f"{collection_name_for(spec.model_id)[:160]}_eval_{dataset.key()}"
    ws = open_workspace(settings.with_overrides({"model": model, "collection": collection}), create=True)
    try:
        indexer = new_indexer(ws, settings)
        report = indexer.run(dataset.images, delete=False, progress=progress)
        wanted = set(dataset.images)
        rows = [r for r in ws.store.iter_rows(("path", "vector")) if r["path"] in wanted]
        if not rows:
            raise EvalError(f"none of the {len(dataset.images)} images could be indexed; first problem: "
                            f"{report.skipped[0] if report.skipped else 'unknown'}")
        paths: list[str] = [r["path"] for r in rows]
        matrix: Vectors = np.stack([r["vector"] for r in rows]).astype(np.float32)
        indexed = set(paths)
        queries = [(text, target) for text, target in queries_of(dataset, templates)
                   if dataset.kind == "labels" or target in indexed]
        started = time.perf_counter()
        text_vectors = _embed_texts(ws.embedder, [text for text, _ in queries])
        ann = evaluate_rankings(dataset, ann_ranker(ws.store), text_vectors, queries, paths, matrix, ks)
        result: Result = {"model": model, "model_id": spec.model_id, "dim": spec.dim, "images": len(paths),
                          "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
                          "index_seconds": round(report.seconds, 2), "ann": ann,
                          "query_seconds": round(time.perf_counter() - started, 2)}
        if dataset.kind == "labels":
            result["cut"] = relevance_cut(ws.store, text_vectors, queries, dataset.labels)
        if exact:
            result["exact"] = evaluate_rankings(dataset, exact_ranker(paths, matrix), text_vectors, queries,
                                                paths, matrix, ks)
            result["ann_recall"] = ann_vs_exact(ann_ranker(ws.store), exact_ranker(paths, matrix),
                                                text_vectors, min(max(ks), len(paths)))
        return result
    finally:
        ws.close()


def relevance_cut(store: Any, text_vectors: Vectors, queries: list[tuple[str, str]],
                  labels: dict[str, str]) -> Result:
    """The relevance cut's precision/recall/F1 per method against the best fixed threshold (cuteval.py)."""
    from .cuteval import cut_quality, ranked_queries

    query_labels = [label for _, label in queries]
    totals: dict[str, int] = {}
    for label in labels.values():
        totals[label] = totals.get(label, 0) + 1
    ranked = ranked_queries(store, text_vectors, query_labels, labels)
    return cut_quality(ranked, [totals.get(label, 0) for label in query_labels])


def ann_vs_exact(ann: Ranker, exact: Ranker, vectors: Vectors, k: int) -> dict[str, float]:
    """Mean share of the exact top-k that the ANN index also returns (1.0 = no loss from the index)."""
    got, truth = ann(vectors, k), exact(vectors, k)
    return {f"recall@{k}": float(np.mean([overlap_at_k(a, b, k) for a, b in zip(got, truth, strict=True)]))
            if got else 1.0}


def run_eval(source: Path, models: Sequence[str], settings: Settings, db: str | None = None,
             templates: Sequence[str] = DEFAULT_TEMPLATES, ks: Sequence[int] = DEFAULT_KS, exact: bool = False,
             split: str | None = None, progress: Callable[[str, int, int], None] | None = None) -> Result:
    """Evaluate every model on *source*; with no *db*, in a temporary Milvus Lite file removed afterwards."""
    models = list(dict.fromkeys(models))
    if not models:
        raise EvalError("give at least one --model")
    cutoffs = sorted({int(k) for k in ks})
    if cutoffs[0] < 1:
        raise EvalError("--k values must be positive")
    dataset = load_dataset(source, split)
    with tempfile.TemporaryDirectory(prefix="pixsearch-eval-") as tmp:
        settings = settings.with_overrides({"db": db or str(Path(tmp) / "eval.db")})
        results = [evaluate_model(dataset, model, settings, templates, cutoffs, exact, _per_model(progress, model))
                   for model in models]
    return {"dataset": str(source), "kind": dataset.kind, "images": len(dataset.images),
            "labels": dataset.label_names if dataset.kind == "labels" else None,
            "templates": list(templates) if dataset.kind == "labels" else None,
            "ks": cutoffs, "chance": chance(dataset, cutoffs), "label_chance": label_chance(dataset),
            "backend": "milvus-lite (temporary)" if db is None else db,
            "models": results}


def _per_model(progress: Callable[[str, int, int], None] | None, model: str) -> Callable[[int, int], None] | None:
    """The indexer's (done, total) progress callback for *model*, reporting to *progress*."""
    if progress is None:
        return None
    report = progress

    def callback(done: int, total: int) -> None:
        report(model, done, total)

    return callback
