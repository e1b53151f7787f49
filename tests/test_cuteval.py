"""The relevance cut's evaluation figures on a labelled set small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pixsearch.cli.quality import cut_table
from pixsearch.quality.cuteval import cut_quality
from pixsearch.relevance import AUTO_METHOD, CUT_METHODS, keep_count

# Query 1: two relevant of two, at the top. Query 2: relevant at ranks 1 and 3, a third not retrieved.
QUERIES = [(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), np.array([True, True, False, False, False])),
           (np.array([0.6, 0.5, 0.4, 0.3]), np.array([True, False, True, False]))]
TOTALS = [2, 3]


def test_best_fixed_threshold_oracle_and_no_cut_by_hand():
    rows = cut_quality(QUERIES, TOTALS)["methods"]
    # min-score 0.4: query 1 keeps 3 (P 2/3, R 1, F1 0.8), query 2 keeps 3 (P 2/3, R 2/3, F1 2/3)
    assert rows["best fixed"]["threshold"] == pytest.approx(0.4)
    assert rows["best fixed"]["f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert rows["best fixed"]["precision"] == pytest.approx(2 / 3)
    assert rows["best fixed"]["recall"] == pytest.approx((1 + 2 / 3) / 2)
    # each query's own best: keep 2 (F1 1) and keep 3 (F1 2/3)
    assert rows["per-query best"]["f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert rows["per-query best"]["kept"] == pytest.approx(2.5)
    # everything kept: P 2/5 R 1 and P 2/4 R 2/3, both F1 4/7
    assert rows["none"]["f1"] == pytest.approx(4 / 7)
    assert rows["none"]["recall"] == pytest.approx((1 + 2 / 3) / 2)


def test_cut_methods_are_scored_with_the_product_cut():
    result = cut_quality(QUERIES, TOTALS)
    assert result["auto"] == AUTO_METHOD and result["depth"] == 5
    for method in CUT_METHODS:
        keeps = [keep_count(scores, method) for scores, _ in QUERIES]
        assert result["methods"][method]["kept"] == pytest.approx(np.mean(keeps))
        assert 0.0 <= result["methods"][method]["f1"] <= result["methods"]["per-query best"]["f1"] + 1e-12
    table = cut_table({"models": [{"model": "/m/tiny", "cut": result}]})
    assert table.row_count == len(result["methods"])
    assert cut_quality([], []) == {}
