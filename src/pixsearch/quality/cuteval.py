"""How well the relevance cut separates relevant from irrelevant results, against fixed thresholds.

For each label prompt, a result is relevant when it shares the prompt's label. The cut (relevance.py)
looks at the query's top ``CUT_DEPTH`` scores exactly as ``pixsearch search --cut`` does; precision,
recall and F1 are computed per query (recall against every image of the label in the collection)
and averaged over queries. Next to each cut method stand:

- ``best fixed``: the single ``--min-score`` that maximises that mean F1 over all queries, chosen in
  hindsight on the very data scored, so an upper bound on what one fixed threshold can do;
- ``per-query best``: the best keep count for each query separately (an oracle ceiling);
- ``none``: every result of the top ``CUT_DEPTH`` kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..relevance import AUTO_METHOD, CUT_DEPTH, CUT_METHODS, keep_count

Floats = npt.NDArray[np.float64]
Ranked = tuple[Floats, npt.NDArray[np.bool_]]
"""One query's scores, best first, and whether each result is relevant."""
_THRESHOLDS = 400


class _ScoredHit(Protocol):
    @property
    def score(self) -> float: ...

    @property
    def path(self) -> str: ...


class ScoredSearch(Protocol):
    def search(self, vectors: npt.NDArray[np.float32], k: int, filter: str = "", min_score: float | None = None,
               output_fields: Sequence[str] = ...) -> Sequence[Sequence[_ScoredHit]]: ...


def ranked_queries(store: ScoredSearch, vectors: npt.NDArray[np.float32], query_labels: Sequence[str],
                   labels: dict[str, str], depth: int = CUT_DEPTH, chunk: int = 64) -> list[Ranked]:
    """Each query's top-*depth* scores from the index, with the relevance of each result."""
    out: list[Ranked] = []
    for start in range(0, len(vectors), chunk):
        rows = store.search(vectors[start:start + chunk], k=depth, output_fields=("path",))
        for row, label in zip(rows, query_labels[start:start + chunk], strict=True):
            out.append((np.array([hit.score for hit in row], dtype=np.float64),
                        np.array([labels.get(hit.path) == label for hit in row], dtype=bool)))
    return out


def _prf(kept: Floats, true_pos: Floats, total: Floats) -> tuple[Floats, Floats, Floats]:
    """Per-query precision, recall, F1 (0 where nothing is kept or nothing is relevant)."""
    precision = np.divide(true_pos, kept, out=np.zeros_like(true_pos), where=kept > 0)
    recall = np.divide(true_pos, total, out=np.zeros_like(true_pos), where=total > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(true_pos), where=both > 0)
    return precision, recall, f1


def _summary(kept: Floats, true_pos: Floats, total: Floats, **extra: float) -> dict[str, float]:
    precision, recall, f1 = _prf(kept, true_pos, total)
    return {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean()),
            "kept": float(kept.mean()), **extra}


def _true_positives(queries: Sequence[Ranked], keeps: Sequence[int]) -> Floats:
    return np.array([float(rel[:keep].sum()) for (_, rel), keep in zip(queries, keeps, strict=True)])


def best_fixed(queries: Sequence[Ranked], totals: Floats) -> dict[str, float]:
    """The one threshold (over every query) with the best mean F1, and its figures."""
    every = np.unique(np.concatenate([scores for scores, _ in queries]))
    candidates = every if len(every) <= _THRESHOLDS else np.unique(np.quantile(every, np.linspace(0, 1, _THRESHOLDS)))
    best: dict[str, float] | None = None
    cum = [np.concatenate([[0.0], np.cumsum(rel)]) for _, rel in queries]
    for threshold in candidates:
        keeps = np.array([int(np.searchsorted(-scores, -threshold, side="right")) for scores, _ in queries])
        true_pos = np.array([c[k] for c, k in zip(cum, keeps, strict=True)])
        summary = _summary(keeps.astype(np.float64), true_pos, totals, threshold=float(threshold))
        if best is None or summary["f1"] > best["f1"]:
            best = summary
    assert best is not None
    return best


def per_query_best(queries: Sequence[Ranked], totals: Floats) -> dict[str, float]:
    """Each query's own best keep count: the ceiling of any per-query cut."""
    keeps = []
    for (_, rel), total in zip(queries, totals, strict=True):
        sizes = np.arange(1, len(rel) + 1, dtype=np.float64)
        _, _, f1 = _prf(sizes, np.cumsum(rel).astype(np.float64), np.full(len(rel), total))
        keeps.append(int(np.argmax(f1)) + 1 if len(rel) else 0)
    return _summary(np.array(keeps, dtype=np.float64), _true_positives(queries, keeps), totals)


def cut_quality(queries: Sequence[Ranked], totals: Sequence[int]) -> dict[str, Any]:
    """Mean precision/recall/F1 of every cut method, best fixed threshold, oracle and no cut."""
    if not queries:
        return {}
    total = np.asarray(totals, dtype=np.float64)
    rows: dict[str, Any] = {}
    for method in CUT_METHODS:
        keeps = [keep_count(scores, method) for scores, _ in queries]
        rows[method] = _summary(np.array(keeps, dtype=np.float64), _true_positives(queries, keeps), total)
    rows["best fixed"] = best_fixed(queries, total)
    rows["per-query best"] = per_query_best(queries, total)
    keeps = [len(scores) for scores, _ in queries]
    rows["none"] = _summary(np.array(keeps, dtype=np.float64), _true_positives(queries, keeps), total)
    return {"auto": AUTO_METHOD, "depth": max(len(scores) for scores, _ in queries), "methods": rows}
