"""Retrieval metrics on plain rankings: pure functions, tested on hand-made cases.

``eval`` scores Milvus' rankings with them, and ``train`` uses ``hits_at_k`` for early stopping.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def target_rank(ranking: Sequence[str], target: str) -> int | None:
    """1-based position of *target* in *ranking*, or None when it was not retrieved."""
    for position, item in enumerate(ranking, start=1):
        if item == target:
            return position
    return None


def recall_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose single target is within the first *k* results."""
    if not ranks:
        return 0.0
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def median_rank(ranks: Sequence[int | None]) -> float | None:
    """Median target rank (lower is better); None when over half the targets were never retrieved."""
    if not ranks:
        return None
    big = float("inf")
    value = statistics.median([float(r) if r is not None else big for r in ranks])
    return None if value == big else value


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """Share of the first *k* results that are relevant (missing results count as wrong)."""
    return sum(1 for flag in relevant[:k] if flag) / k if k > 0 else 0.0


def average_precision(relevant: Sequence[bool], total_relevant: int) -> float:
    """Mean of precision@i over the ranks i of the relevant results, divided by all relevant items.

    Relevant items missing from the ranking contribute zero, so a truncated ranking
    can only under-state AP.
    """
    if total_relevant <= 0:
        return 0.0
    found, score = 0, 0.0
    for position, flag in enumerate(relevant, start=1):
        if flag:
            found += 1
            score += found / position
    return score / total_relevant


def hits_at_k(relevant: Sequence[bool], k: int, total_relevant: int) -> float:
    """Relevant results in the top *k* over the most that could be there, min(k, total_relevant).

    With one relevant item this is plain Recall@k; with many it is precision@k that
    does not punish classes smaller than k. ``train`` uses it for early stopping.
    """
    best = min(k, total_relevant)
    return sum(1 for flag in relevant[:k] if flag) / best if best > 0 else 0.0


def overlap_at_k(approximate: Sequence[str], exact: Sequence[str], k: int) -> float:
    """ANN recall: share of the exact top-*k* that the approximate search also returned in its top-*k*."""
    truth = set(exact[:k])
    return len(truth.intersection(approximate[:k])) / len(truth) if truth else 1.0
