"""INT8 variants: written into the manifest, verified against fp32, and used by precision=auto only when verified."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pixsearch.models import load_embedder
from pixsearch.models.quantize import MIN_COSINE, quantize_model, sample_images, top_k_overlap
from pixsearch.models.spec import read_pixsearch_dir

from .conftest import SAMPLES, run_cli


@pytest.fixture
def model_copy(tiny_model, tmp_path) -> Path:
    """A private copy: quantizing rewrites the manifest."""
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


def test_top_k_overlap_counts_shared_results():
    rng = np.random.default_rng(0)
    gallery, queries = rng.standard_normal((30, 8)), rng.standard_normal((4, 8))
    assert top_k_overlap(queries, gallery, queries, gallery) == 1.0
    assert top_k_overlap(queries, gallery, -queries, gallery) < 1.0


def test_quantize_writes_a_checked_variant(model_copy, cache_dir):
    report = quantize_model(model_copy, sample_images(SAMPLES, 20), log=lambda _msg: None)
    entry = read_pixsearch_dir(model_copy).variants["int8"]
    assert entry["verified"] == ("true" if report.verified else "false")
    for tower in (report.image, report.text):
        assert (model_copy / getattr(tower, "file")).is_file()
        assert tower.quantized or tower.file in ("visual.onnx", "textual.onnx")
    if report.verified:
        assert min(report.image.min_cosine, report.text.min_cosine) >= MIN_COSINE
    chosen = load_embedder(str(model_copy), cache_dir, precision="auto")
    assert chosen.variant == ("int8" if report.verified else "fp32")
    assert load_embedder(str(model_copy), cache_dir, precision="int8").embed_texts(["a red dress"]).shape[0] == 1


def test_auto_ignores_an_unverified_variant(model_copy, cache_dir):
    quantize_model(model_copy, sample_images(SAMPLES, 20), log=lambda _msg: None)
    manifest = model_copy / "pixsearch.json"
    data = json.loads(manifest.read_text())
    data["variants"]["int8"]["verified"] = "false"
    manifest.write_text(json.dumps(data))
    assert load_embedder(str(model_copy), cache_dir, precision="auto").variant == "fp32"


def test_quantize_command(model_copy):
    result = run_cli("quantize", "--model", str(model_copy), "--images", str(SAMPLES), "--limit", "20")
    assert "top-10 overlap" in result.stdout
    assert "int8" in json.loads((model_copy / "pixsearch.json").read_text())["variants"]
