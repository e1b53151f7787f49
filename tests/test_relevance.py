"""The relevance cut's maths on score distributions whose answer is known (relevance.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pixsearch.relevance import CUT_METHODS, gap_keep, keep_count, method_of, mixture_keep, otsu_keep


def two_groups(high: int, low: int, seed: int = 0, gap: float = 0.25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([0.30 + gap + 0.01 * rng.standard_normal(high), 0.30 + 0.02 * rng.standard_normal(low)])


@pytest.mark.parametrize("method", CUT_METHODS)
@pytest.mark.parametrize(("high", "low"), [(30, 300), (100, 200), (5, 500)])
def test_a_clear_split_is_found_exactly(method, high, low):
    scores = two_groups(high, low)
    np.random.default_rng(1).shuffle(scores)  # the order given does not matter
    assert keep_count(scores, method) == high


def test_the_mixture_keeps_a_small_tight_group_that_otsu_overshoots():
    rng = np.random.default_rng(3)
    # 10 relevant at 0.45 ± 0.01 next to a broad background of 990 at 0.2 ± 0.05: Otsu's
    # between-class variance splits the background itself; the mixture keeps the ten and a few
    # of the background's upper tail.
    scores = np.concatenate([0.45 + 0.01 * rng.standard_normal(10), 0.2 + 0.05 * rng.standard_normal(990)])
    assert 10 <= mixture_keep(scores) <= 25
    assert otsu_keep(scores) > 300


@pytest.mark.parametrize("method", CUT_METHODS)
def test_no_signal_keeps_everything(method):
    assert keep_count([0.3] * 50, method) == 50
    assert keep_count([0.5, 0.1], method) == 2  # too few to tell groups apart
    assert keep_count([], method) == 0


def test_ties_fall_on_the_same_side():
    scores = [0.9, 0.9, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
    assert otsu_keep(scores) == gap_keep(scores) == mixture_keep(scores) == 3


def test_cut_names():
    assert method_of("none") is None
    assert method_of("auto") in CUT_METHODS
    with pytest.raises(ValueError, match="cut must be one of"):
        method_of("sometimes")
