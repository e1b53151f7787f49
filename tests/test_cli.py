"""End to end through the real `pixsearch` command, on the committed sample photos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import SAMPLE_CSV, SHARED, run_cli
from .milvus_server import TOKEN, MilvusServer, launcher_python


def index_json(*args: str) -> dict:
    return json.loads(run_cli("index", *args, "--json").stdout)


def search_json(*args: str) -> list[dict]:
    return json.loads(run_cli("search", *args, "--json").stdout)


@pytest.fixture
def indexed(sample_dir, tiny_model):
    report = index_json(str(sample_dir), "--model", str(tiny_model))
    return sample_dir, report


def test_index_each_image_once_and_rerun_adds_nothing(indexed, tiny_model):
    sample_dir, first = indexed
    photos = sorted(sample_dir.rglob("*.jpg"))
    assert first["added"] == len(photos) == 20 and first["skipped"] == []
    second = index_json(str(sample_dir))  # the model comes from the database's only collection
    assert second["added"] == 0 and second["unchanged"] == 20 and second["embedded"] == 0
    stats = json.loads(run_cli("stats", "--json").stdout)
    assert [s["count"] for s in stats] == [20]


def test_search_by_image_returns_itself_first(indexed):
    sample_dir, _ = indexed
    for photo in sorted(sample_dir.rglob("*.jpg"))[::5]:
        hits = search_json("--image", str(photo), "-k", "3")
        assert hits[0]["path"] == str(photo)
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_search_by_text_and_by_id(indexed):
    hits = search_json("a red dress", "-k", "5")
    assert len(hits) == 5 and all(os.path.isfile(h["path"]) for h in hits)
    assert hits == sorted(hits, key=lambda h: -h["score"])
    similar = search_json("--like", hits[0]["id"], "-k", "2")
    assert similar[0]["id"] == hits[0]["id"]


def test_search_filters(indexed):
    sample_dir, _ = indexed
    hats = search_json("a hat", "-k", "10", "--folder", str(sample_dir / "hat"))
    assert len(hats) == 2 and all("/hat/" in h["path"] for h in hats)
    assert search_json("a hat", "--min-score", "1.01") == []


def test_csv_form_with_labels(tmp_path, tiny_model):
    shutil.copytree(SAMPLE_CSV.parent / "clothing", tmp_path / "clothing")
    csv_path = tmp_path / "photos.csv"
    shutil.copy(SAMPLE_CSV, csv_path)
    report = index_json(str(csv_path), "--model", str(tiny_model))
    assert report["added"] == 20
    shoes = search_json("shoes", "--label", "shoes", "-k", "5")
    assert len(shoes) == 2 and {h["label"] for h in shoes} == {"shoes"}


def test_broken_files_are_skipped_with_reasons(sample_dir, tiny_model):
    good = next(sample_dir.rglob("*.jpg")).read_bytes()
    (sample_dir / "empty.jpg").write_bytes(b"")
    (sample_dir / "notes.png").write_text("not a picture")
    (sample_dir / "cut.jpg").write_bytes(good[: len(good) // 3])
    result = run_cli("index", str(sample_dir), "--model", str(tiny_model))
    assert "added 20" in result.stdout and "skipped 3" in result.stdout
    assert "empty file" in result.stderr and "not an image" in result.stderr and "truncated" in result.stderr


def test_errors_are_one_line_not_tracebacks(tmp_path, tiny_model):
    result = run_cli("search", "anything", check=False)
    assert result.returncode == 2 and "nothing indexed yet" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("index", str(tmp_path), "--model", "ViT-B-32__openai", check=False)
    assert result.returncode == 2 and "--model DIR" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("search", "x", "--db", "http://127.0.0.1:9", check=False)
    assert result.returncode == 2 and "cannot open Milvus" in result.stderr


def test_settings_from_env_and_config_file(sample_dir, tiny_model, tmp_path):
    (tmp_path / "pixsearch.toml").write_text(f'db = "from-config.db"\nmodel = "{tiny_model}"\n')
    run_cli("index", str(sample_dir))
    assert (tmp_path / "from-config.db").exists()
    run_cli("index", str(sample_dir), env={"PIXSEARCH_DB": str(tmp_path / "from-env.db")})
    assert (tmp_path / "from-env.db").exists()


@pytest.mark.skipif(not (SHARED / "coco-mini" / "images").is_dir(), reason="../shared/data/coco-mini is absent")
def test_coco_mini_images_index_and_find_themselves(tiny_model, tmp_path):
    images = SHARED / "coco-mini" / "images"
    report = index_json(str(images), "--model", str(tiny_model), "--db", str(tmp_path / "coco.db"))
    count = len(list(images.glob("*.jpg")))
    assert report["added"] == count and report["skipped"] == []
    for photo in sorted(images.glob("*.jpg"))[:3]:
        hits = search_json("--image", str(photo), "-k", "1", "--db", str(tmp_path / "coco.db"))
        assert hits[0]["path"] == str(photo)


def _one_clear_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.server
@pytest.mark.slow
def test_server_wrong_token_wrong_uri_and_down_are_one_clear_error(sample_dir, tiny_model):
    """Against a real Milvus server of its own: start it, index, break the connection in each way, stop it,
    try again."""
    python, why_not = launcher_python()
    if not python:
        pytest.skip(why_not)
    server = MilvusServer(python)
    try:
        with server:
            db = ["--db", server.uri]
            index_json(str(sample_dir / "hat"), "--model", str(tiny_model), *db, "--token", TOKEN)
            _one_clear_error(run_cli("search", "a hat", *db, "--token", "root:wrong", check=False),
                             "cannot open Milvus", "--token")
            _one_clear_error(run_cli("search", "a hat", *db, check=False), "cannot open Milvus", "--token")
            _one_clear_error(run_cli("stats", "--db", server.uri + "/no_such_db", "--token", TOKEN, check=False),
                             "database not found")
            assert len(search_json("a hat", *db, "--token", TOKEN)) == 2
        for args in (["search", "a hat"], ["stats"], ["index", str(sample_dir), "--model", str(tiny_model)]):
            _one_clear_error(run_cli(*args, *db, "--token", TOKEN, check=False), "cannot open Milvus", server.uri)
    finally:
        server.stop()
        server.remove_data()


def test_remove_forgets_a_subtree_without_loading_the_model(indexed, tiny_model):
    sample_dir, _ = indexed
    hidden = tiny_model.parent / (tiny_model.name + ".away")
    tiny_model.rename(hidden)  # the model is not needed to remove rows
    try:
        result = run_cli("remove", str(sample_dir / "hat"))
    finally:
        hidden.rename(tiny_model)
    assert "removed 2 images" in result.stdout
    stats = json.loads(run_cli("stats", "--json").stdout)
    assert [s["count"] for s in stats] == [18]


def test_a_large_fp32_run_suggests_quantize_once_no_variant_exists(tiny_model, tmp_path, capsys):
    from types import SimpleNamespace

    from pixsearch.cli import index as cli
    from pixsearch.config import Settings
    from pixsearch.models import load_embedder

    embedder = load_embedder(str(tiny_model), tmp_path / "cache", precision="fp32")
    ws = SimpleNamespace(embedder=embedder, model=str(tiny_model))
    at_least = Settings().precision_min_images
    cli.suggest_quantize(ws, at_least - 1, [tmp_path], at_least)
    assert "quantize" not in capsys.readouterr().err  # small runs gain too little
    cli.suggest_quantize(ws, at_least, [tmp_path], at_least)
    assert f"pixsearch quantize --model {tiny_model} --images {tmp_path}" in capsys.readouterr().err.replace("\n", "")
    embedder.available_variants = ("int8",)
    cli.suggest_quantize(ws, at_least, [tmp_path], at_least)
    assert "quantize" not in capsys.readouterr().err  # made already: the user chose fp32


CLI_MODULES = ["pixsearch.cli", "pixsearch.cli.common", "pixsearch.cli.app", "pixsearch.cli.index",
               "pixsearch.cli.search", "pixsearch.cli.stats", "pixsearch.cli.models", "pixsearch.cli.quantize",
               "pixsearch.cli.quality", "pixsearch.cli.serve"]


@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_cli_module_imports_on_its_own(module):
    """No import cycle: each module loads first in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_models_layer_imports_no_cli_and_no_settings():
    code = ("import sys, pkgutil, importlib, pixsearch.models as m\n"
            "for info in pkgutil.iter_modules(m.__path__):\n"
            "    importlib.import_module('pixsearch.models.' + info.name)\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] in ('typer', 'rich', 'click')"
            " or n in ('pixsearch.config', 'pixsearch.cli')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
