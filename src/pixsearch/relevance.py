"""Where a query's relevant results end: an automatic cut that adapts to each query and model.

A fixed ``--min-score`` fails because each model (and each query) puts good and bad matches at
different scores. The cut here looks only at the query's own scores against the collection (its
top ``CUT_DEPTH`` results, best first) and splits them in two groups: the few that stand out and the
bulk of the library. Pure numpy; the Searcher applies it before paging, so every page of one query
sees the same cut.

Methods (``CUT_METHODS``):

- ``otsu``: the split that maximises the between-group variance of the scores (Otsu's threshold),
  exact over every split point.
- ``mixture``: a two-component 1-D Gaussian mixture fitted by EM (started from the Otsu split); the
  results kept are the leading run whose posterior for the high component is at least one half. It
  lets the relevant group be small and tight next to a broad background, where Otsu cuts too deep.
- ``gap``: the largest drop between consecutive scores in the upper part of the ranking.

``auto`` names the method chosen from measurement (``pixsearch eval``; see the README).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

CUT_METHODS = ("mixture", "otsu", "gap")
AUTO_METHOD = "mixture"
"""What ``auto`` means: the method with the best F1 in the README's measurement."""
CUTS = ("none", "auto", *CUT_METHODS)
"""What a query's ``cut`` may be: none keeps every result (only min_score applies)."""
CUT_DEPTH = 1000
"""Scores the cut looks at: the query's top results (a whole small library)."""
MIN_SCORES = 4
"""Fewer results than this are too few to tell two groups apart: all are kept."""
MIN_SPREAD = 1e-4
"""Scores spread over less than this carry no signal: all are kept."""
_EM_STEPS = 60

Scores = npt.NDArray[np.float64]


def method_of(cut: str) -> str | None:
    """The cut method *cut* names (``auto`` resolved), or None for no cut; ValueError for an unknown one."""
    if cut not in CUTS:
        raise ValueError(f"cut must be one of {', '.join(CUTS)} (got {cut!r})")
    if cut == "none":
        return None
    return AUTO_METHOD if cut == "auto" else cut


def _sorted(scores: Sequence[float] | npt.ArrayLike) -> Scores:
    values = np.asarray(scores, dtype=np.float64).ravel()
    return -np.sort(-values[np.isfinite(values)], kind="stable")


def _trivial(values: Scores) -> bool:
    return len(values) < MIN_SCORES or float(values[0] - values[-1]) < MIN_SPREAD


def _extend_ties(values: Scores, keep: int) -> int:
    """*keep* grown over scores equal to the last one kept: equal scores fall on the same side."""
    while 0 < keep < len(values) and values[keep] == values[keep - 1]:
        keep += 1
    return keep


def otsu_keep(scores: Sequence[float] | npt.ArrayLike) -> int:
    """How many of the best *scores* lie above Otsu's threshold (all of them when there is no signal)."""
    values = _sorted(scores)
    if _trivial(values):
        return len(values)
    n = len(values)
    sizes = np.arange(1, n, dtype=np.float64)
    head = np.cumsum(values)[:-1]
    total = float(values.sum())
    mean_head = head / sizes
    mean_tail = (total - head) / (n - sizes)
    between = sizes * (n - sizes) * (mean_head - mean_tail) ** 2
    return _extend_ties(values, int(np.argmax(between)) + 1)


def gap_keep(scores: Sequence[float] | npt.ArrayLike, upper: float = 0.5) -> int:
    """How many of the best *scores* come before the largest drop within the top *upper* share."""
    values = _sorted(scores)
    if _trivial(values):
        return len(values)
    span = max(2, int(len(values) * upper))
    drops = values[:span - 1] - values[1:span]
    return _extend_ties(values, int(np.argmax(drops)) + 1)


def mixture_keep(scores: Sequence[float] | npt.ArrayLike) -> int:
    """How many of the best *scores* a two-Gaussian fit assigns to its high component."""
    values = _sorted(scores)
    if _trivial(values):
        return len(values)
    start = otsu_keep(values)
    fit = _fit_two_gaussians(values, start)
    if fit is None:
        return start
    weight, mean, var = fit
    high = int(np.argmax(mean))
    log_density = (np.log(weight)[None, :] - 0.5 * np.log(2 * np.pi * var)[None, :]
                   - 0.5 * (values[:, None] - mean[None, :]) ** 2 / var[None, :])
    is_high = log_density[:, high] >= log_density[:, 1 - high]
    if not is_high[0]:
        return start
    below = np.flatnonzero(~is_high)
    keep = int(below[0]) if len(below) else len(values)
    return _extend_ties(values, max(1, keep))


def _fit_two_gaussians(values: Scores, start: int) -> tuple[Scores, Scores, Scores] | None:
    """EM for a 1-D two-component Gaussian mixture, started from the split at *start*.

    None when a component collapses (it holds under one score's worth of weight)."""
    n = len(values)
    floor = max(1e-8, float(np.var(values)) * 1e-4)
    groups = (values[:start], values[start:])
    if min(len(g) for g in groups) == 0:
        return None
    weight = np.array([len(g) / n for g in groups])
    mean = np.array([float(g.mean()) for g in groups])
    var = np.array([max(float(g.var()), floor) for g in groups])
    for _ in range(_EM_STEPS):
        log_density = (np.log(weight)[None, :] - 0.5 * np.log(2 * np.pi * var)[None, :]
                       - 0.5 * (values[:, None] - mean[None, :]) ** 2 / var[None, :])
        log_density -= log_density.max(axis=1, keepdims=True)
        resp = np.exp(log_density)
        resp /= resp.sum(axis=1, keepdims=True)
        mass = resp.sum(axis=0)
        if float(mass.min()) < 1.0:
            return None
        weight = mass / n
        mean = (resp * values[:, None]).sum(axis=0) / mass
        var = np.maximum((resp * (values[:, None] - mean[None, :]) ** 2).sum(axis=0) / mass, floor)
    return weight, mean, var


_KEEPERS = {"otsu": otsu_keep, "gap": gap_keep, "mixture": mixture_keep}


def keep_count(scores: Sequence[float] | npt.ArrayLike, method: str) -> int:
    """How many of the best *scores* the cut *method* keeps."""
    if method not in _KEEPERS:
        raise ValueError(f"unknown cut method {method!r}; one of {', '.join(CUT_METHODS)}")
    return _KEEPERS[method](scores)
