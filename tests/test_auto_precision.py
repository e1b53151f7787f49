"""--precision auto: the first big index of a model on a machine measures the fastest verified variant
once, records the decision per model and machine, reuses it, and measures again on another machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pixsearch.config import load_settings
from pixsearch.models import autotune, load_embedder, load_spec
from pixsearch.models.autotune import DECISIONS, Decision, machine_fingerprint, machine_key, read_decision
from pixsearch.models.variants import overlay_dir
from pixsearch.workspace import MEASURING, auto_precision, open_workspace

from .conftest import run_cli, sample_images


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """A private cache: a decision or variant in the session cache would change other tests."""
    path = tmp_path / "cache"
    monkeypatch.setenv("PIXSEARCH_CACHE_DIR", str(path))
    return path


LOW = {"PIXSEARCH_PRECISION_MIN_IMAGES": "5"}
"""A threshold the 20 sample images pass (the real one is measured for ViT-B/32 sizes)."""


def decisions(tiny_model: Path, cache: Path) -> dict:
    path = overlay_dir(cache, load_spec(str(tiny_model), cache).model_id) / DECISIONS
    return json.loads(path.read_text())["machines"] if path.is_file() else {}


def index(tiny_model: Path, folder: Path, db: str, *flags: str, env: dict | None = None):
    return run_cli("index", str(folder), "--model", str(tiny_model), "--db", db, *flags, env=env)


def test_first_big_index_measures_once_and_reuses_the_decision(tiny_model, sample_dir, own_cache):
    first = index(tiny_model, sample_dir, "one.db", env=LOW)
    assert MEASURING in first.stderr
    entries = decisions(tiny_model, own_cache)
    assert len(entries) == 1
    (entry,) = entries.values()
    assert entry["samples"] == 20 and entry["build_seconds"] > 0
    assert entry["image"]["fp32_rate"] > 0 and entry["text"]["fp32_rate"] > 0
    assert entry["reason"] in first.stderr  # the one line saying what it chose and why
    assert entry["reason"].startswith(f"{entry['variant']}: ")
    assert f"({load_spec(str(tiny_model), own_cache).model_id}, {entry['variant']}" in first.stderr

    second = index(tiny_model, sample_dir, "two.db", env=LOW)  # 20 new images again, same machine
    assert MEASURING not in second.stderr
    assert f"{entry['reason']} (measured on this machine" in second.stderr
    assert decisions(tiny_model, own_cache) == entries  # same timestamp: nothing was measured again

    # query time reads the same decision for the text tower, and never builds anything
    assert load_embedder(str(tiny_model), own_cache, precision="auto").variant == entry["variant"]


def test_another_machine_measures_again(tiny_model, sample_dir, own_cache, monkeypatch):
    settings = load_settings({"model": str(tiny_model), "db": "tuned.db", "precision_min_images": 5})
    images = sample_images()

    def choose() -> str | None:
        ws = open_workspace(settings, create=True)
        try:
            return auto_precision(ws, settings, len(images), lambda: images)
        finally:
            ws.close()

    first = choose()
    spec = load_spec(str(tiny_model), own_cache)
    here = read_decision(spec, own_cache, machine_fingerprint())
    assert here is not None and first == here.reason
    assert choose() == f"{here.reason} (measured on this machine " + first_day(here) + ")"

    monkeypatch.setattr(autotune, "_cpu", lambda: ("Some Other CPU", ["avx2"]))
    other = machine_fingerprint()
    assert machine_key(other) != machine_key(here.machine)
    assert read_decision(spec, own_cache, other) is None
    assert choose() == read_decision(spec, own_cache, other).reason  # measured anew: no "(measured on ..."
    assert len(decisions(tiny_model, own_cache)) == 2  # the first machine's decision is kept


def first_day(decision: Decision) -> str:
    import time

    return time.strftime("%Y-%m-%d", time.localtime(decision.measured_at))


def test_changed_model_files_measure_again(tiny_model, tmp_path, own_cache):
    import shutil

    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    images = sample_images()
    spec = load_spec(str(model), own_cache)
    autotune.measure(spec, own_cache, images)
    assert read_decision(spec, own_cache, machine_fingerprint()) is not None
    with (model / "visual.onnx").open("ab") as handle:  # same model id, other weights
        handle.write(b"\0")
    assert read_decision(load_spec(str(model), own_cache), own_cache, machine_fingerprint()) is None


def test_small_run_stays_fp32_and_says_why(tiny_model, sample_dir, own_cache):
    result = index(tiny_model, sample_dir, "small.db")
    assert "fp32: 20 images is below the ~1000 where building an INT8 variant pays off" in result.stderr
    assert MEASURING not in result.stderr and decisions(tiny_model, own_cache) == {}
    run_cli("search", "a red dress", "--db", "small.db", env=LOW)  # query time never measures or builds
    assert decisions(tiny_model, own_cache) == {}
    assert not overlay_dir(own_cache, load_spec(str(tiny_model), own_cache).model_id).exists()


def test_the_decision_wins_over_a_variant_made_elsewhere(tiny_model, own_cache, monkeypatch):
    """A verified variant (from `quantize`, or measured on another machine) runs until this machine's
    decision says otherwise; the decision is what serve and search load for the text tower."""
    from pixsearch.models import quantize as quantize_module

    monkeypatch.setattr(quantize_module, "MIN_SPEEDUP", 0.0)  # tiny towers time too noisily to judge speed
    spec = load_spec(str(tiny_model), own_cache)
    assert quantize_module.quantize_model(spec, own_cache, sample_images()).verified
    assert load_embedder(str(tiny_model), own_cache, precision="auto").variant == "int8"
    autotune.write_decision(load_spec(str(tiny_model), own_cache), own_cache,
                            Decision("fp32", "fp32: slower here", machine=machine_fingerprint()))
    assert load_embedder(str(tiny_model), own_cache, precision="auto").variant == "fp32"
    assert load_embedder(str(tiny_model), own_cache, precision="int8").variant == "int8"  # forcing still works


def test_failed_verification_falls_back_to_fp32_with_the_reason(tiny_model, sample_dir, own_cache):
    result = index(tiny_model, sample_dir, "strict.db", env={**LOW, "PIXSEARCH_PRECISION_MIN_COSINE": "1.5"})
    assert "fp32: INT8 failed verification (min cosine" in result.stderr
    (entry,) = decisions(tiny_model, own_cache).values()
    assert entry["variant"] == "fp32" and "needs 1.5" in entry["reason"]
    assert load_embedder(str(tiny_model), own_cache, precision="auto").variant == "fp32"


def test_forced_precision_skips_measuring(tiny_model, sample_dir, own_cache):
    result = index(tiny_model, sample_dir, "forced.db", "--precision", "fp32", "--backend", "onnxruntime", env=LOW)
    assert MEASURING not in result.stderr and decisions(tiny_model, own_cache) == {}
    refused = run_cli("index", str(sample_dir), "--model", str(tiny_model), "--db", "int8.db", "--precision", "int8",
                      check=False)
    assert refused.returncode == 2
    assert "has no int8 variant" in refused.stderr and "pixsearch quantize" in refused.stderr


def test_unknown_backend_is_refused(tiny_model, sample_dir, own_cache):
    result = run_cli("index", str(sample_dir), "--model", str(tiny_model), "--backend", "tensorrt", check=False)
    assert result.returncode == 2 and "backend 'tensorrt' is not available" in result.stderr
    assert not Path("pixsearch.db").exists()


def test_a_weaker_agreement_bar_is_refused(tiny_model, own_cache):
    with pytest.raises(autotune.ModelError, match=r"below 0\.999"):
        autotune.measure(load_spec(str(tiny_model), own_cache), own_cache, sample_images(), min_cosine=0.99)


def test_break_even():
    assert autotune.break_even(60.0, 10.0, 20.0) == pytest.approx(1200)  # 60 s / (0.1 - 0.05) s per image
    assert autotune.break_even(60.0, 10.0, 9.0) == float("inf")
