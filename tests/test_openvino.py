"""The OpenVINO backend (``pixsearch[openvino]``; in the test extra, so CI runs it): same vectors as ONNX
Runtime, the same search results through the CLI, a clear error without the extra, and an autotune candidate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pixsearch.models import load_embedder, load_spec
from pixsearch.models.autotune import candidates_for, measure
from pixsearch.models.onnx import OnnxEmbedder

from .conftest import CAPTIONS, run_cli, sample_images

pytest.importorskip("openvino", reason="the openvino extra: pip install '.[openvino]'")

from pixsearch.models.openvino import OpenVinoEmbedder, cache_dir_for


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("PIXSEARCH_CACHE_DIR", str(path))
    return path


def _images(count: int) -> list[np.ndarray]:
    return [np.random.default_rng(i).integers(0, 255, (40 + i, 56, 3), dtype=np.uint8) for i in range(count)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_matches_onnxruntime(tiny_model, own_cache, precision):
    spec = load_spec(str(tiny_model), own_cache)
    ort, ov = OnnxEmbedder(spec), OpenVinoEmbedder(spec, own_cache, precision=precision)
    images, texts = _images(6), CAPTIONS[:6]
    for a, b in ((ort.embed_images(images), ov.embed_images(images)), (ort.embed_texts(texts), ov.embed_texts(texts))):
        assert b.shape == a.shape and b.dtype == np.float32
        assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        assert float(np.sum(a * b, axis=1).min()) >= 0.9999
    assert ov.variant == precision
    # compiled towers live in pixsearch's cache, never in the model folder
    assert any(cache_dir_for(own_cache, spec.model_id).iterdir())
    assert not any(p.suffix == ".blob" for p in Path(tiny_model).rglob("*"))


def test_load_embedder_backend_openvino(tiny_model, own_cache):
    embedder = load_embedder(str(tiny_model), own_cache, backend="openvino")
    assert isinstance(embedder, OpenVinoEmbedder) and embedder.variant == "fp32"
    assert type(load_embedder(str(tiny_model), own_cache)) is OnnxEmbedder  # auto without a decision: ORT


def test_cli_index_and_search_match_onnxruntime(tiny_model, sample_dir, tmp_path, own_cache):
    results = {}
    for backend in ("onnxruntime", "openvino"):
        db = str(tmp_path / f"{backend}.db")
        run_cli("index", str(sample_dir), "--model", str(tiny_model), "--db", db, "--backend", backend)
        # `search` takes no --backend flag; the setting comes from the environment
        out = run_cli("search", CAPTIONS[0], "--db", db, "--top", "5", "--json", env={"PIXSEARCH_BACKEND": backend})
        results[backend] = [hit["path"] for hit in json.loads(out.stdout)]
    assert results["openvino"] == results["onnxruntime"] and len(results["openvino"]) == 5


def test_missing_openvino_names_the_extra(tiny_model, own_cache):
    code = ("import sys; sys.modules['openvino'] = None\n"
            "from pixsearch.models import load_embedder\n"
            "from pixsearch.models.autotune import candidates_for\n"
            "assert [c.backend for c in candidates_for('auto')] == ['onnxruntime']\n"
            f"load_embedder({str(tiny_model)!r}, {str(own_cache)!r}, backend='openvino')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "pip install 'pixsearch[openvino]'" in result.stderr, result.stderr


def test_autotune_measures_openvino(tiny_model, sample_dir, own_cache):
    assert {c.variant for c in candidates_for("auto")} >= {"int8", "openvino-fp32", "openvino-bf16"}
    spec = load_spec(str(tiny_model), own_cache)
    said: list[str] = []
    decision = measure(spec, own_cache, sample_images(), backend="openvino", say=said.append)
    assert any(line.startswith("openvino-bf16") for line in said) and any("openvino-fp32" in s for s in said)
    assert decision.backend == "openvino" and decision.image is not None and decision.text is not None
    assert decision.image.fp32_rate > 0 and decision.image.rate > 0 and decision.image.recipe == "openvino"
    assert decision.image.min_cosine >= 0.999
    embedder = load_embedder(str(tiny_model), own_cache)  # auto reads the decision just recorded
    expected = OpenVinoEmbedder if decision.variant.startswith("openvino-") else OnnxEmbedder
    assert type(embedder) is expected
