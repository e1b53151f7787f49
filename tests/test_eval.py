"""pixsearch eval: metric functions on hand-made rankings, and a real run through Milvus on the samples."""

from __future__ import annotations

import json
import math

import pytest

from pixsearch.quality.datasets import EvalError, load_dataset, prompts_for, read_captions
from pixsearch.quality.eval import chance, score_captions, score_labels
from pixsearch.quality.metrics import (
    average_precision,
    hits_at_k,
    median_rank,
    overlap_at_k,
    precision_at_k,
    recall_at_k,
    target_rank,
)

from .conftest import SAMPLE_CSV, SAMPLES, run_cli


def test_target_rank_and_recall():
    rankings = [["a", "b", "c"], ["c", "a", "b"], ["b", "c", "x"]]
    ranks = [target_rank(r, "a") for r in rankings]
    assert ranks == [1, 2, None]
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 2) == pytest.approx(2 / 3)
    assert recall_at_k(ranks, 10) == pytest.approx(2 / 3)  # a target never retrieved is a miss at every k
    assert recall_at_k([], 5) == 0.0


def test_median_rank():
    assert median_rank([1, 3, 10]) == 3
    assert median_rank([1, 2, 3, 4]) == 2.5
    assert median_rank([1, None, None]) is None  # the median lies beyond the retrieved depth
    assert median_rank([1, 2, None]) == 2


def test_precision_and_average_precision():
    relevant = [True, False, True, False, False]
    assert precision_at_k(relevant, 1) == 1.0
    assert precision_at_k(relevant, 4) == 0.5
    assert precision_at_k(relevant[:2], 5) == pytest.approx(1 / 5)  # short rankings count missing as wrong
    # relevant at ranks 1 and 3, three relevant in all: (1/1 + 2/3) / 3
    assert average_precision(relevant, 3) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision([True, True], 2) == 1.0
    assert average_precision([False, False], 0) == 0.0


def test_hits_at_k_and_overlap():
    assert hits_at_k([False, True, True], 1, 1) == 0.0
    assert hits_at_k([False, True, True], 2, 1) == 1.0  # one relevant item: plain recall
    assert hits_at_k([True, False, True, True], 2, 10) == 0.5  # many relevant: precision
    assert overlap_at_k(["a", "b", "c"], ["b", "a", "d"], 2) == 1.0
    assert overlap_at_k(["a", "x"], ["b", "a"], 2) == 0.5


def test_scores_from_rankings():
    captions = score_captions([["i1", "i2"], ["i1", "i2"]], ["i1", "i2"], ks=(1, 2))
    assert captions["recall@1"] == 0.5 and captions["recall@2"] == 1.0 and captions["median_rank"] == 1.5
    labels = {"p1": "cat", "p2": "dog", "p3": "cat"}
    result = score_labels([["p1", "p3", "p2"], ["p1", "p2", "p3"]], ["cat", "dog"], labels, ks=(1, 2))
    assert result["per_label"]["cat"]["precision@2"] == 1.0
    assert result["per_label"]["dog"]["ap"] == 0.5
    assert result["precision@1"] == 0.5 and result["map"] == pytest.approx(0.75)


def test_datasets(tmp_path):
    folders = load_dataset(SAMPLES)
    assert folders.kind == "labels" and len(folders.images) == 20 and len(folders.label_names) == 10
    assert chance(folders, (10,))["precision@10"] == pytest.approx(0.1)
    assert load_dataset(SAMPLE_CSV).labels == folders.labels
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"image": "x.jpg", "captions": ["a cat", "the cat"]}\n\n'
                     '{"image": "y.jpg", "captions": "a dog"}\n')
    data = read_captions(jsonl)
    assert data.captions[str(tmp_path / "x.jpg")] == ["a cat", "the cat"] and len(data.images) == 2
    jsonl.write_text('{"img": "x.jpg"}\n')
    with pytest.raises(EvalError, match=r"c\.jsonl:1"):
        read_captions(jsonl)
    assert prompts_for(["long_sleeve"], ["a photo of a {label}", "une photo de {label}"]) == [
        ("a photo of a long sleeve", "long_sleeve"), ("une photo de long sleeve", "long_sleeve")]
    with pytest.raises(EvalError, match="placeholder"):
        prompts_for(["cat"], ["a photo"])


def test_eval_command_on_samples(tiny_model, tmp_path):
    chart = tmp_path / "chart.png"
    out = run_cli("eval", str(SAMPLES), "--model", str(tiny_model), "--exact", "--json", "--chart", str(chart),
                  "--template", "a photo of a {label}", "--template", "une photo de {label}")
    result = json.loads(out.stdout)
    assert result["kind"] == "labels" and result["images"] == 20 and result["ks"] == [1, 5, 10]
    assert result["chance"]["precision@10"] == pytest.approx(0.1)
    assert chart.is_file() and chart.read_bytes().startswith(b"\x89PNG") and result["chart"] == str(chart)
    (model,) = result["models"]
    assert model["images"] == 20 and model["skipped"] == []
    for source in ("ann", "exact"):
        metrics = model[source]
        assert metrics["queries"] == 20  # 10 labels x 2 templates
        assert set(metrics["per_label"]) == set(result["labels"])
        assert all(0.0 <= metrics[f"precision@{k}"] <= 1.0 for k in (1, 5, 10))
        assert 0.0 < metrics["map"] <= 1.0 and not math.isnan(metrics["map"])
        assert set(metrics["image_to_image"]) == {"precision@1", "precision@5", "precision@10"}
    # 20 vectors: the index searches them exhaustively, so it must agree with brute force
    assert model["ann_recall"] == {"recall@10": pytest.approx(1.0)}
    assert model["exact"]["precision@10"] == pytest.approx(model["ann"]["precision@10"])
    # the relevance cut is measured through the index, next to the best fixed threshold in hindsight
    cut = model["cut"]["methods"]
    assert set(cut) >= {"mixture", "otsu", "gap", "best fixed", "per-query best", "none"}
    assert all(cut[name]["f1"] <= cut["per-query best"]["f1"] + 1e-9 for name in cut)
    assert cut["best fixed"]["f1"] >= cut["none"]["f1"] - 1e-9
    assert cut["none"]["recall"] == pytest.approx(1.0) and cut["none"]["kept"] == 20
