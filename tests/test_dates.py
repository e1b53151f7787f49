"""Capture dates end to end: indexed from EXIF (or the mtime), filtered by --after/--before, sorted by date."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pixsearch.api import create_app
from pixsearch.config import Settings
from pixsearch.store import Filters

from .conftest import run_cli
from .test_exif import DATETIME, OFFSET_ORIGINAL, ORIGINAL, jpeg_with_exif, tiff_block
from .test_store import rows

MTIME = datetime(2021, 1, 1, tzinfo=UTC).timestamp()


def photo(color: tuple[int, int, int]) -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.tile(np.array(color, np.uint8), (64, 64, 1)))
    assert ok
    return encoded.tobytes()


@pytest.fixture
def dated(tmp_path, tiny_model):
    """Three photos: an EXIF date with offset, a wall-clock EXIF date, and none (its mtime is 2021-01-01)."""
    folder = tmp_path / "dated"
    folder.mkdir()
    exif = tiff_block({DATETIME: b"2000:01:01 00:00:00\x00"}, "<",
                      {ORIGINAL: b"2024:05:01 12:00:00\x00", OFFSET_ORIGINAL: b"+02:00\x00"})
    (folder / "offset.jpg").write_bytes(_with_app1(photo((200, 30, 30)), exif))
    (folder / "local.jpg").write_bytes(_with_app1(photo((30, 200, 30)), tiff_block({}, "<", {
        ORIGINAL: b"2023:06:15 08:30:00\x00"})))
    (folder / "plain.jpg").write_bytes(photo((30, 30, 200)))
    os.utime(folder / "plain.jpg", (MTIME, MTIME))
    run_cli("index", str(folder), "--model", str(tiny_model), "--db", str(tmp_path / "dates.db"))
    return tmp_path / "dates.db"


def _with_app1(jpeg: bytes, tiff: bytes) -> bytes:
    segment = jpeg_with_exif(tiff)
    app1_length = int.from_bytes(segment[4:6], "big")
    return jpeg[:2] + segment[2:4 + app1_length] + jpeg[2:]


def search(*args: str) -> list[dict]:
    db = os.path.join(os.getcwd(), "dates.db")  # the dated fixture's (tests run in their tmp_path)
    return json.loads(run_cli("search", "a photo", "-k", "10", "--db", db, *args, "--json").stdout)


def test_indexed_rows_carry_their_capture_time_and_where_it_came_from(dated):
    got = {os.path.basename(h["path"]): (h["taken_at"], h["taken_from"]) for h in search()}
    assert got == {"offset.jpg": ("2024-05-01T10:00:00+00:00", "exif"),
                   "local.jpg": ("2023-06-15T08:30:00", "exif-local"),
                   "plain.jpg": ("2021-01-01T00:00:00+00:00", "mtime")}


def test_after_and_before_filter_by_capture_date(dated):
    names = lambda hits: sorted(os.path.basename(h["path"]) for h in hits)  # noqa: E731
    assert names(search("--after", "2023-01-01")) == ["local.jpg", "offset.jpg"]
    assert names(search("--before", "2023-06-15T08:30:00")) == ["plain.jpg"]
    assert names(search("--after", "2024-05-01T11:30+02:00", "--before", "2024-05-01T12:30+02:00")) == ["offset.jpg"]
    assert search("--after", "2030-01-01") == []


def test_sort_by_date_orders_the_results_newest_first(dated):
    hits = search("--sort", "date")
    assert [os.path.basename(h["path"]) for h in hits] == ["offset.jpg", "local.jpg", "plain.jpg"]
    by_score = search()
    assert [h["score"] for h in by_score] == sorted((h["score"] for h in by_score), reverse=True)


@pytest.mark.parametrize(("args", "words"), [
    (("--after", "last tuesday"), "--after 'last tuesday' is not an ISO date"),
    (("--before", "2024-13-01"), "--before '2024-13-01' is not an ISO date"),
    (("--sort", "size"), "sort must be one of relevance, date"),
])
def test_bad_dates_and_sorts_are_clear_errors(dated, args, words):
    result = run_cli("search", "a photo", "--db", str(dated), *args, check=False)
    assert result.returncode != 0 and words in result.stdout + result.stderr


def test_the_date_filter_expression_on_both_backends(backend):
    store = backend.store("pixsearch_dates_test")
    store.ensure_collection("model-a", "model-a", 8)
    data = rows(10)
    store.upsert([{**row, "taken_at": 1000.0 * i, "taken_from": "exif"} for i, row in enumerate(data)])
    store.flush()
    query = data[0]["vector"][None, :]
    hits = store.search(query, k=10, filter=Filters(after=3000.0, before=6000.0).expression())[0]
    assert sorted(h.fields["taken_at"] for h in hits) == [3000.0, 4000.0, 5000.0]
    assert len(store.search(query, k=10, filter=Filters(after=9000.5).expression())[0]) == 0
    store.close()


def test_the_api_filters_and_sorts_by_date_on_every_search_endpoint(dated, tiny_model):
    settings = Settings(db=str(dated), model=str(tiny_model), cache_dir=os.environ["PIXSEARCH_CACHE_DIR"], threads=1)
    with TestClient(create_app(settings, with_ui=False)) as client:
        def names(response) -> list[str]:
            assert response.status_code == 200, response.text
            return [os.path.basename(r["path"]) for r in response.json()["results"]]

        everything = client.get("/api/search", params={"q": "a photo", "sort": "date"})
        assert names(everything) == ["offset.jpg", "local.jpg", "plain.jpg"]
        first = everything.json()["results"][0]["fields"]
        assert (first["taken_at"], first["taken_from"]) == ("2024-05-01T10:00:00+00:00", "exif")
        recent = {"after": "2023-01-01", "sort": "date"}
        assert names(client.get("/api/search", params={"q": "a photo", **recent})) == ["offset.jpg", "local.jpg"]
        body = {"terms": [{"text": "a photo"}], "before": "2023-06-15T08:30:00"}
        assert names(client.post("/api/search", json=body)) == ["plain.jpg"]
        image_id = everything.json()["results"][2]["id"]
        similar = client.get(f"/api/search/similar/{image_id}", params={"after": "2022-01-01", "sort": "date"})
        assert names(similar) == ["offset.jpg", "local.jpg"]
        upload = client.post("/api/search/image", params={"before": "2024-01-01"},
                             files={"file": ("q.jpg", photo((10, 10, 10)), "image/jpeg")})
        assert sorted(names(upload)) == ["local.jpg", "plain.jpg"]
        bad = client.get("/api/search", params={"q": "a photo", "after": "soon"})
        assert bad.status_code == 400 and "not an ISO date" in bad.text
        assert client.get("/api/search", params={"q": "a photo", "sort": "size"}).status_code == 422
        assert client.post("/api/search", json={**body, "sort": "size"}).status_code == 422


def test_the_page_filters_by_its_date_boxes_and_sorts_by_capture_date(dated, tiny_model):
    from pixsearch.ui import ANY, details_markdown, run_page, run_query

    settings = Settings(db=str(dated), model=str(tiny_model), cache_dir=os.environ["PIXSEARCH_CACHE_DIR"], threads=1)
    with TestClient(create_app(settings)) as client:
        service = client.app.state.service
        query = {"text": "a photo", "image": None, "examples": []}
        _, message, shown = run_query(service, query, 10, 0.0, ANY, ANY, "date")
        assert [os.path.basename(r["path"]) for r in shown] == ["offset.jpg", "local.jpg", "plain.jpg"]
        assert "newest first" in message
        assert "taken 2024-05-01T10:00:00+00:00 (EXIF)" in details_markdown(shown[0])
        _, _, recent, _ = run_page(service, query, 10, 0.0, ANY, ANY, "date", after="2023-01-01", before=" ")
        assert [os.path.basename(r["path"]) for r in recent] == ["offset.jpg", "local.jpg"]
        items, message, results, _ = run_page(service, query, 10, 0.0, ANY, ANY, "date", before="yesterday")
        assert items == [] and results == [] and "before 'yesterday' is not an ISO date" in message
