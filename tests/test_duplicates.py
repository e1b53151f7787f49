"""The duplicate finder on altered copies of the shared photos: precision and recall floors, on Milvus Lite
and on the server, with the tiny random CLIP (so the perceptual hash has to carry the decision)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pixsearch import phash
from pixsearch.api import create_app
from pixsearch.config import Settings
from pixsearch.duplicates import Limits, Rules, find
from pixsearch.indexer import Indexer
from pixsearch.models.loader import load_embedder
from pixsearch.quality import dupset
from pixsearch.service import SearchService
from pixsearch.store import HashIndex
from pixsearch.uidups import find_groups

from .conftest import SHARED, run_cli

COCO = SHARED / "coco-mini" / "images"
if not COCO.is_dir():
    COCO = Path("/work/shared/data/coco-mini/images")


def test_orientation_hashes_match_a_turned_copy():
    rng = np.random.default_rng(1)
    rgb = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    rgb = np.asarray(np.kron(rgb, np.ones((4, 4, 1))), dtype=np.uint8)
    codes = phash.hashes(rgb)
    for turned in (np.rot90(rgb), np.rot90(rgb, 2), np.fliplr(rgb)):
        distance, orientation = phash.min_hamming(phash.hashes(np.ascontiguousarray(turned))[0], codes)
        assert distance <= 2 and orientation != 0
    assert phash.from_hex(phash.to_hex(codes)).tolist() == codes.tolist()
    other = phash.hashes((rng.random((192, 256, 3)) * 255).astype(np.uint8))
    assert phash.min_hamming(other[0], codes)[0] > 12


@pytest.mark.slow
def test_duplicates_found_among_altered_copies_and_near_misses(backend, tiny_model, tmp_path, cache_dir):
    if not COCO.is_dir():
        pytest.skip("the shared coco-mini photos are not here")
    truth = dupset.build(sorted(COCO.glob("*.jpg"))[:8], tmp_path / "set")
    store = backend.store("pixsearch_dups")
    embedder = load_embedder(str(tiny_model), cache_dir)
    store.ensure_collection(embedder.model_id, str(tiny_model), embedder.dim)
    Indexer(store, embedder, workers=2).run([truth.root])
    assert len(HashIndex(store).images()) == len(truth.group_of)
    report = find(store, Rules(), Limits())
    scores = dupset.score([[m.path for m in g.members] for g in report.groups], truth)
    assert report.examined == len(truth.group_of) and report.unhashed == 0
    assert scores.precision >= 0.95 and scores.recall >= 0.8, scores
    assert scores.recall_by_variant["exact"] == 1.0 and scores.recall_by_variant["q90"] == 1.0
    group = report.groups[0]
    assert group.original.kind == "original" and all(m.hamming <= 12 for m in group.members)
    store.close()


@pytest.mark.slow
def test_cli_reports_the_copies_not_the_near_miss(tiny_model, tmp_path):
    if not COCO.is_dir():
        pytest.skip("the shared coco-mini photos are not here")
    truth = dupset.build(sorted(COCO.glob("*.jpg"))[:1], tmp_path / "set", copies=("rot90", "q50"),
                         near_misses=("shift30",))
    db = str(tmp_path / "cli.db")
    run_cli("index", str(truth.root), "--model", str(tiny_model), "--db", db)
    report = json.loads(run_cli("duplicates", "--db", db, "--json").stdout)
    paths = sorted(Path(m["path"]).name for m in report["groups"][0]["members"])
    assert len(report["groups"]) == 1 and paths == ["original.jpg", "q50.jpg", "rot90.jpg"]
    assert report["groups"][0]["members"][0]["kind"] == "original" and report["unhashed"] == 0
    text = run_cli("duplicates", "--db", db).stdout
    assert "group 1: 3 copies" in text and "orientation" in text
    settings = Settings(db=db, model=str(tiny_model))
    with TestClient(create_app(settings, with_ui=False)) as client:
        answer = client.get("/api/duplicates", params={"limit": 5})
        assert answer.status_code == 200, answer.text
        members = answer.json()["groups"][0]["members"]
        assert sorted(Path(m["path"]).name for m in members) == paths
        assert members[0]["thumbnail_url"].startswith("/api/thumbnails/")
        assert client.get("/api/duplicates", params={"max_hamming": 99}).status_code == 422
        assert "/api/duplicates" in client.get("/openapi.json").json()["paths"]
    service = SearchService.open(settings)
    try:
        items, summary = find_groups(service, similar=False)
    finally:
        service.close()
    assert len(items) == 3 and items[0][1].endswith("original") and summary.startswith("1 groups among 4 images")
