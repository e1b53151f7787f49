"""`pixsearch search` with combined terms and --offset, through the real command."""

from __future__ import annotations

import json
import os

import pytest

from .conftest import run_cli


def search_json(*args: str) -> list[dict]:
    return json.loads(run_cli("search", *args, "--json").stdout)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, tiny_model):
    """The samples indexed once for this module (run from the folder so ./paths resolve)."""
    import shutil

    from .conftest import SAMPLES

    root = tmp_path_factory.mktemp("cliq")
    shutil.copytree(SAMPLES, root / "photos")
    db = str(root / "index.db")
    run_cli("index", str(root / "photos"), "--model", str(tiny_model), "--db", db, "--json")
    return root, db


def test_combined_query_pages_and_errors(photos, monkeypatch):
    root, db = photos
    monkeypatch.chdir(root)
    photo = sorted((root / "photos").rglob("*.jpg"))[0]
    relative = "./" + os.path.relpath(photo, root)
    plain = search_json("a red dress", "-k", "4", "--db", db)
    quoted = search_json('"a red dress"', "-k", "4", "--db", db)
    assert [h["id"] for h in plain] == [h["id"] for h in quoted]  # plain words: one text term, as before
    combined = search_json(f'"a red dress" + 3*{relative} - @id:{plain[0]["id"]}', "-k", "20", "--db", db)
    assert combined[0]["path"] == str(photo)
    assert [h["id"] for h in combined].index(plain[0]["id"]) > 10  # the negative example sinks
    assert search_json("--image", str(photo), "--like", plain[0]["id"], "-k", "1", "--db", db)
    pages = [search_json("a hat", "-k", "3", "--offset", str(n * 3), "--db", db) for n in range(3)]
    assert [hit for page in pages for hit in page] == search_json("a hat", "-k", "9", "--db", db)

    bad = run_cli("search", '"a" + ./missing.jpg', "--db", db, check=False)
    assert bad.returncode != 0 and "./missing.jpg" in bad.stderr and "position 7" in bad.stderr
    bad = run_cli("search", '"a" + "b" "c"', "--db", db, check=False)
    assert bad.returncode != 0 and "position 11" in bad.stderr and "expected + or -" in bad.stderr
    bad = run_cli("search", "a + @id:ffffffffffffffff", "--db", db, check=False)
    assert bad.returncode != 0 and "term 2" in bad.stderr and "ffffffffffffffff" in bad.stderr


def test_the_relevance_cut_on_the_command_line(photos):
    _, db = photos
    done = run_cli("search", "a hat", "-k", "20", "--relevant", "--json", "--db", db)
    kept = json.loads(done.stdout)
    assert "relevance cut (auto):" in done.stderr and f"{len(kept)} relevant" in done.stderr
    assert 0 < len(kept) < 20
    scores = [h["score"] for h in kept]
    assert scores == sorted(scores, reverse=True)
    page = search_json("a hat", "-k", "1", "--offset", str(len(kept)), "--cut", "auto", "--db", db)
    assert page == []  # the page after the last relevant one is empty
