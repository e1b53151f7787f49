"""INT8 variants: kept in the cache's variants overlay (never in the model folder), verified against
fp32, used by precision=auto only when verified, for pixsearch and Immich layouts alike."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pixsearch.images import load_image
from pixsearch.models import ModelError, load_embedder, load_spec
from pixsearch.models import quantize as quantize_module
from pixsearch.models.quantize import (
    FIRST_BLOCK,
    MIN_COSINE,
    MLP_DOWN,
    Recipe,
    quantize_model,
    quantize_tower,
    sample_images,
    top_k_overlap,
)
from pixsearch.models.spec import Variant
from pixsearch.models.variants import OVERLAY, overlay_dir

from .conftest import CAPTIONS, SAMPLES, run_cli


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """A private cache: the session cache's overlay would otherwise make every later test run int8."""
    path = tmp_path / "cache"
    monkeypatch.setenv("PIXSEARCH_CACHE_DIR", str(path))
    return path


@pytest.fixture
def model_copy(tiny_model, tmp_path) -> Path:
    """A private copy, for tests that change the model's files."""
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under *folder* with a hash of its content."""
    return {p.relative_to(folder).as_posix(): hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def quantize(model: Path, cache: Path):
    return quantize_model(load_spec(str(model), cache), cache, sample_images(SAMPLES, 20), log=lambda _msg: None)


def test_top_k_overlap_counts_shared_results():
    rng = np.random.default_rng(0)
    gallery, queries = rng.standard_normal((30, 8)), rng.standard_normal((4, 8))
    assert top_k_overlap(queries, gallery, queries, gallery) == 1.0
    assert top_k_overlap(queries, gallery, -queries, gallery) < 1.0


@pytest.mark.parametrize("name, first, down", [
    ("/text_model/encoder/layers.0/mlp/fc2/MatMul", True, True),  # transformers export
    ("/transformer/resblocks.0/mlp/c_proj/MatMul", True, True),  # open_clip export (Immich)
    ("/transformer/encoder/layer.0/output/dense/MatMul", True, True),  # XLM-R text encoder (multilingual)
    ("/transformer/encoder/layer.3/attention/output/dense/MatMul", False, False),
    ("/text_model/encoder/layers.10/mlp/fc1/MatMul", False, False),
    ("/visual/transformer/resblocks.1/attn/out_proj/MatMul", False, False),
])
def test_recipe_patterns_name_the_same_layers_in_each_export_style(name, first, down):
    import re

    assert bool(re.search(FIRST_BLOCK, name)) is first
    assert bool(re.search(MLP_DOWN, name)) is down


def test_recipe_keeps_its_layers_in_fp32(tiny_model, tmp_path):
    """The kept MatMuls stay float MatMuls; every other weight MatMul becomes integer."""
    import onnx

    spec = load_spec(str(tiny_model), tmp_path)
    src = spec.path(spec.text.file)
    recipe = Recipe("test", reduce_range=True, exclude=(FIRST_BLOCK,), keep_projection=True)
    graph = onnx.load(str(quantize_tower(src, tmp_path / "text.int8.onnx", recipe))).graph
    weights = {i.name for i in onnx.load(str(src)).graph.initializer}
    original = [n for n in onnx.load(str(src)).graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    still_float = {n.name for n in graph.node if n.op_type == "MatMul"}
    integer = [n for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    expected_kept = {n.name for n in original if "layers.0/" in n.name} | {original[-1].name}
    assert len(expected_kept) >= 2 and expected_kept <= still_float
    assert len(integer) == len(original) - len(expected_kept)


def test_keep_projection_keeps_the_last_weight_matmul_not_a_later_activation_matmul(tmp_path):
    """A graph ending in an activation-by-activation MatMul, with unnamed nodes: the projection is the
    last MatMul with a stored weight, and no empty name reaches the quantizer's exclusion list."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name=""),  # unnamed
             helper.make_node("MatMul", ["h", "w2"], ["p"], name="/proj/MatMul"),
             helper.make_node("Transpose", ["p"], ["pt"], name="t"),
             helper.make_node("MatMul", ["p", "pt"], ["y"], name="/gram/MatMul")]  # activations only
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [w1, w2])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert quantize_module._excluded_nodes(path, Recipe("t", keep_projection=True)) == ["/proj/MatMul"]


def test_quantize_writes_a_checked_variant_into_the_overlay(tiny_model, own_cache):
    before = snapshot(tiny_model)
    report = quantize(tiny_model, own_cache)
    assert snapshot(tiny_model) == before  # the model folder is only read
    folder = overlay_dir(own_cache, load_spec(str(tiny_model), own_cache).model_id)
    assert report.overlay == folder / OVERLAY
    entry = json.loads(report.overlay.read_text())["variants"]["int8"]
    assert entry["verified"] is report.verified
    for tower in (report.image, report.text):
        assert Path(tower.file).is_file()
        if tower.quantized:  # stored relative to the overlay folder
            assert Path(tower.file).parent == folder and entry[tower.tower] == Path(tower.file).name
        else:  # runs the model's own fp32 file
            assert tower.tower not in entry and Path(tower.file).parent == tiny_model
    if report.verified:
        assert min(report.image.min_cosine, report.text.min_cosine) >= MIN_COSINE
    chosen = load_embedder(str(tiny_model), own_cache, precision="auto")
    assert chosen.variant == ("int8" if report.verified else "fp32")
    assert "int8" in load_embedder(str(tiny_model), own_cache, precision="fp32").available_variants
    assert entry["ladder"] == quantize_module.LADDER
    assert load_embedder(str(tiny_model), own_cache, precision="int8").embed_texts(["a red dress"]).shape[0] == 1


def test_immich_layout_quantizes_into_the_overlay(immich_model, own_cache, monkeypatch):
    """Immich exports (int32 `text` input, batch fixed at 1) get a variant without touching their folder."""
    monkeypatch.setattr(quantize_module, "MIN_SPEEDUP", 0.0)  # tiny towers time too noisily to judge speed
    before = snapshot(immich_model)
    report = quantize(immich_model, own_cache)
    assert snapshot(immich_model) == before
    assert report.verified and report.image.quantized and report.text.quantized
    assert report.overlay.is_relative_to(own_cache)

    fp32 = load_embedder(str(immich_model), own_cache, precision="fp32")
    auto = load_embedder(str(immich_model), own_cache, precision="auto")
    int8 = load_embedder(str(immich_model), own_cache, precision="int8")
    assert auto.variant == int8.variant == "int8"
    for tower in ("image", "text"):
        assert auto._file(tower) == Path(report.image.file if tower == "image" else report.text.file)
        assert auto._file(tower).parent == report.overlay.parent
    assert int8.image_tower().fixed_batch == 1 and int8.text_tower().fixed_batch == 1
    images = [load_image(p).rgb for p in sample_images(SAMPLES, 20)]
    for embedder in (auto, int8):
        assert np.sum(embedder.embed_images(images) * fp32.embed_images(images), axis=1).min() >= MIN_COSINE
        assert np.sum(embedder.embed_texts(CAPTIONS) * fp32.embed_texts(CAPTIONS), axis=1).min() >= MIN_COSINE


def test_auto_ignores_an_unverified_variant(tiny_model, own_cache):
    report = quantize(tiny_model, own_cache)
    data = json.loads(report.overlay.read_text())
    data["variants"]["int8"]["verified"] = "false"
    report.overlay.write_text(json.dumps(data))
    assert load_embedder(str(tiny_model), own_cache, precision="auto").variant == "fp32"
    assert load_embedder(str(tiny_model), own_cache, precision="int8").variant == "int8"


def test_overlay_of_other_model_files_is_ignored(model_copy, own_cache):
    quantize(model_copy, own_cache)
    assert "int8" in load_spec(str(model_copy), own_cache).variants
    with (model_copy / "visual.onnx").open("ab") as handle:  # same model id, different weights
        handle.write(b"\0")
    assert "int8" not in load_spec(str(model_copy), own_cache).variants
    with pytest.raises(ModelError, match="pixsearch quantize"):
        load_embedder(str(model_copy), own_cache, precision="int8")


def test_variant_entries_read_as_typed_values_in_either_format():
    """Overlays written before spec.Variant held every value as a string; both formats read the same."""
    old = {"image": "image.int8.onnx", "verified": "true", "image_min_cosine": "0.99931", "top10_overlap": "0.950",
           "image_recipe": "per-channel", "made_by": "a newer version"}
    variant = Variant.from_json(old)
    assert variant.verified is True and variant.image_min_cosine == 0.99931 and variant.top10_overlap == 0.95
    assert variant.text is None and variant.file("text") is None and variant.image_recipe == "per-channel"
    written = variant.to_json()
    assert written["verified"] is True and written["image_min_cosine"] == 0.99931 and "text" not in written
    assert Variant.from_json(json.loads(json.dumps(written))) == variant
    assert Variant.from_json({"verified": "false"}).verified is False
    assert Variant.from_json({"verified": False}).verified is False
    assert Variant.from_json({"verified": "yes"}).verified is False  # only an explicit true verifies


def test_manifest_variants_still_load(model_copy, own_cache):
    """pixsearch.json files written by older versions kept their variant beside the model."""
    shutil.copy(model_copy / "visual.onnx", model_copy / "visual.int8.onnx")
    manifest = model_copy / "pixsearch.json"
    data = json.loads(manifest.read_text())
    data["variants"] = {"int8": {"image": "visual.int8.onnx", "text": "textual.onnx", "verified": "true"}}
    manifest.write_text(json.dumps(data))
    embedder = load_embedder(str(model_copy), own_cache, precision="auto")
    assert embedder.variant == "int8" and embedder._file("image") == model_copy / "visual.int8.onnx"


def test_quantize_command(immich_model, own_cache, tmp_path):
    result = run_cli("quantize", "--model", str(immich_model), "--images", str(SAMPLES), "--limit", "20")
    assert "top-10 overlap" in result.stdout
    overlay = overlay_dir(own_cache, immich_model.name) / OVERLAY
    assert str(overlay) in result.stdout.replace("\n", "")
    variant = json.loads(overlay.read_text())["variants"]["int8"]
    # the next index run says which precision it chose
    indexed = run_cli("index", str(SAMPLES), "--model", str(immich_model), "--db", str(tmp_path / "q.db"))
    chosen = "int8" if variant["verified"] is True else "fp32"
    # Whether the image tower itself beat fp32 is a timing on a shared machine: the variant may keep
    # it in fp32 and say so ("int8, image tower fp32"); the precision named first is the variant's.
    said = indexed.stderr.replace("\n", "")
    assert f"({immich_model.name}, {chosen})" in said or f"({immich_model.name}, {chosen}, image tower fp32)" in said
