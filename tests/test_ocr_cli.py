"""Text in images through the real entry points: `pixsearch index --ocr`, `search --json` and the API."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from pixsearch.api import create_app
from pixsearch.config import Settings
from pixsearch.quality.rendered import render_set

from .conftest import run_cli, sample_images

WORDS = ["falcon", "lantern", "cobalt"]


@pytest.mark.slow
def test_index_with_ocr_then_cli_and_api_show_the_matched_text(tmp_path, tiny_model):
    pytest.importorskip("rapidocr_onnxruntime")
    written = render_set(sample_images(), WORDS, tmp_path / "photos")
    db, cache = str(tmp_path / "index.db"), str(tmp_path / "cache")
    common = ["--db", db, "--model", str(tiny_model), "--threads", "1"]
    env = {"PIXSEARCH_CACHE_DIR": cache}
    indexed = run_cli("index", str(tmp_path / "photos"), "--ocr", "--json", *common, env=env)
    assert json.loads(indexed.stdout)["ocr_read"] == len(WORDS)

    for image in written:
        found = json.loads(run_cli("search", image.word, "--json", "-k", "3", *common, env=env).stdout)
        first = found["results"][0] if isinstance(found, dict) else found[0]
        assert first["path"] == str(image.path), found
        assert first["ocr_matched"] == [image.word]
        assert image.word in first["ocr_text"].lower()

    settings = Settings(db=db, model=str(tiny_model), cache_dir=cache, threads=1)
    with TestClient(create_app(settings, with_ui=False)) as client:
        answer = client.get("/api/search", params={"q": "cobalt", "k": 3})
        assert answer.status_code == 200, answer.text
        top = answer.json()["results"][0]
        assert top["path"] == str(written[2].path)
        assert top["fields"]["ocr_matched"] == ["cobalt"]
        assert "cobalt" in top["fields"]["ocr_text"].lower()
        # A query word that is nowhere in the text matches nothing, and says so.
        other = client.get("/api/search", params={"q": "zeppelin", "k": 3}).json()["results"]
        assert all(hit["fields"]["ocr_matched"] == [] for hit in other)
