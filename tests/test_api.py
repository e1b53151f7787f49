"""The REST API, through FastAPI's test client and through a real `pixsearch serve` on loopback."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pixsearch.api import create_app
from pixsearch.config import Settings
from pixsearch.search import Limits

from .serving import SAMPLE_COUNT, build_index, running_server

SECRET = b"top secret: never served"


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model):
    """A real index of the 20 sample photos (with labels), shared by the read-only tests."""
    return build_index(tmp_path_factory.mktemp("api"), tiny_model)


@pytest.fixture(scope="module")
def client(library):
    with TestClient(create_app(library, limits=Limits(max_k=50, max_upload_bytes=256 * 1024))) as test_client:
        yield test_client


def sample(library, label: str) -> Path:
    return sorted((Path(library.db).parent / "samples" / "clothing" / label).glob("*.jpg"))[0]


def test_health_and_stats(client):
    assert client.get("/health").json() == {"status": "ok"}
    stats = client.get("/api/stats").json()
    assert stats["count"] == SAMPLE_COUNT and stats["dim"] == 16 and stats["backend"] == "milvus-lite"
    assert stats["model_id"].startswith("tiny-clip") and stats["last_indexed"].endswith("+00:00")
    assert "dress" in stats["labels"] and any(f.endswith("/clothing/dress") for f in stats["folders"])


def test_text_search_returns_k_results_with_working_urls(client, library):
    body = client.get("/api/search", params={"q": "a red dress", "k": 5}).json()
    assert body["count"] == 5 and len(body["results"]) == 5
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    first = body["results"][0]
    assert set(first) == {"id", "path", "score", "fields", "thumbnail_url", "image_url"}
    assert {"label", "width", "height", "mtime", "indexed_at"} <= set(first["fields"])
    original = client.get(first["image_url"])
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    assert original.content == Path(first["path"]).read_bytes()
    assert client.get(first["image_url"], headers={"If-None-Match": original.headers["etag"]}).status_code == 304


def test_thumbnails_are_made_once_and_cached_on_disk(client, library):
    hit = client.get("/api/search", params={"q": "a blue hat", "k": 1}).json()["results"][0]
    response = client.get(hit["thumbnail_url"])
    assert response.status_code == 200 and response.content[:3] == b"\xff\xd8\xff"
    cached = next(Path(library.cache_dir, "thumbnails").glob(f"*/{hit['id']}.jpg"))
    first_mtime = cached.stat().st_mtime_ns
    assert client.get(hit["thumbnail_url"]).content == cached.read_bytes()
    assert cached.stat().st_mtime_ns == first_mtime


def test_filters_by_folder_label_and_min_score(client, library):
    folder = str(sample(library, "dress").parent)
    by_folder = client.get("/api/search", params={"q": "clothes", "k": 20, "folder": folder}).json()["results"]
    assert len(by_folder) == 2 and all(r["path"].startswith(folder + "/") for r in by_folder)
    by_label = client.get("/api/search", params={"q": "clothes", "k": 20, "label": "hat"}).json()["results"]
    assert len(by_label) == 2 and {r["fields"]["label"] for r in by_label} == {"hat"}
    everything = client.get("/api/search", params={"q": "clothes", "k": 20}).json()["results"]
    cut = everything[len(everything) // 2]["score"]
    kept = client.get("/api/search", params={"q": "clothes", "k": 20, "min_score": cut}).json()["results"]
    assert kept and all(r["score"] >= cut for r in kept) and len(kept) < len(everything)


def test_search_by_uploaded_image_finds_itself_first(client, library):
    photo = sample(library, "shoes")
    response = client.post("/api/search/image", params={"k": 3},
                           files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    first = response.json()["results"][0]
    assert first["path"] == str(photo) and first["score"] > 0.99


def test_more_like_this_starts_with_the_image_itself(client):
    hit = client.get("/api/search", params={"q": "shorts for summer", "k": 1}).json()["results"][0]
    similar = client.get(f"/api/search/similar/{hit['id']}", params={"k": 4}).json()["results"]
    assert len(similar) == 4 and similar[0]["id"] == hit["id"]


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"q": "hat", "k": 0}, 422, "k"),
    ({"q": "hat", "k": 51}, 422, "k"),
    ({"q": "hat", "k": "many"}, 422, "k"),
    ({"q": "x" * 1001}, 400, "too long"),
    ({"q": "   "}, 400, "empty query"),
    ({}, 422, "q"),
    ({"q": "hat", "min_score": 2}, 422, "min_score"),
    ({"q": "hat", "folder": "relative/dir"}, 400, "absolute"),
])
def test_bad_queries_get_json_errors(client, params, status, words):
    response = client.get("/api/search", params=params)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_bad_uploads_are_refused_with_a_reason(client):
    not_image = client.post("/api/search/image", files={"file": ("notes.jpg", b"hello, not a picture", "image/jpeg")})
    assert not_image.status_code == 400 and "not a usable image" in not_image.json()["detail"]
    too_big = client.post("/api/search/image", files={"file": ("big.jpg", b"\xff" * (400 * 1024), "image/jpeg")})
    assert too_big.status_code == 413 and "MiB" in too_big.json()["detail"]
    assert client.post("/api/search/image").status_code == 422


def test_combined_terms_in_json(client, library):
    import base64

    hats = client.get("/api/search", params={"q": "a hat", "k": 5}).json()["results"]
    plain = client.post("/api/search", json={"terms": [{"text": "a hat"}], "k": 5}).json()
    assert [r["id"] for r in plain["results"]] == [r["id"] for r in hats]  # one term: the GET answer
    photo = sample(library, "dress")
    encoded = base64.b64encode(photo.read_bytes()).decode()
    body = {"terms": [{"text": "a hat", "weight": 0.05}, {"image": encoded, "weight": 3},
                      {"image_id": hats[0]["id"], "weight": -1}], "k": 20}
    combined = client.post("/api/search", json=body).json()["results"]
    assert combined[0]["path"] == str(photo)
    assert [r["id"] for r in combined].index(hats[0]["id"]) > 10  # the negative example sinks


@pytest.mark.parametrize(("terms", "status", "words"), [
    ([], 422, "terms"),
    ([{"text": "hat", "image_id": "0123456789abcdef"}], 422,
     "terms.0: a term has exactly one of: text, image, image_id"),
    ([{}], 422, "terms.0: a term has exactly one of"),
    ([{"text": "hat"}, {"image_id": "ffffffffffffffff"}], 404, "term 2 (image id 'ffffffffffffffff')"),
    ([{"text": "hat"}, {"image": "not base64!"}], 400, "term 2 (image): not valid base64"),
    ([{"text": "hat"}, {"image": "aGVsbG8="}], 400, "term 2 (image of 5 bytes): not a usable image"),
    ([{"text": "hat"}, {"text": "hat", "weight": -1}], 400, "cancel out"),
    ([{"text": "hat", "weight": "heavy"}], 422, "weight"),
    # The error is about the form the term takes, not also about the two forms it does not.
    ([{"text": "hat", "weight": 1000}], 422, "terms.0.text.weight: Input should be less than or equal to 100"),
    ([{"text": "x"}] * 17, 400, "too many query terms"),
    # One bound and one message for a long text, however long (the body had its own, different one).
    ([{"text": "x" * 1001}], 400, "query too long (1001 characters; at most 1000)"),
    ([{"text": "x" * 20_000}], 400, "query too long (20000 characters; at most 1000)"),
])
def test_bad_terms_are_named(client, terms, status, words):
    response = client.post("/api/search", json={"terms": terms})
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_pages_continue_each_other_in_every_form(client):
    big = client.get("/api/search", params={"q": "a shoe", "k": 18, "min_score": -1}).json()
    pages, offset = [], 0
    while offset is not None and offset < 18:
        page = client.post("/api/search", json={"terms": [{"text": "a shoe"}], "k": 6, "offset": offset,
                                               "min_score": -1}).json()
        assert page["offset"] == offset
        pages += page["results"]
        offset = page["next_offset"]
    assert [r["id"] for r in pages] == [r["id"] for r in big["results"]]
    similar = client.get(f"/api/search/similar/{big['results'][0]['id']}", params={"k": 5, "offset": 5}).json()
    assert similar["offset"] == 5 and len(similar["results"]) == 5
    last = client.get("/api/search", params={"q": "a shoe", "k": 5, "offset": 18}).json()
    assert last["count"] == 2 and last["next_offset"] is None  # 20 photos
    deep = client.get("/api/search", params={"q": "a shoe", "k": 50, "offset": 990})
    assert deep.status_code == 400 and "offset + k may be at most 1000" in deep.json()["detail"]


def test_json_images_are_bounded_by_the_upload_limit(client):
    import base64

    huge = base64.b64encode(b"\xff" * (300 * 1024)).decode()
    response = client.post("/api/search", json={"terms": [{"image": huge}]})
    assert response.status_code == 413 and "limited to" in response.json()["detail"]
    twice = base64.b64encode(b"\xff" * (150 * 1024)).decode()
    response = client.post("/api/search", json={"terms": [{"image": twice}, {"image": twice}]})
    assert response.status_code == 413 and "term 2" in response.json()["detail"]


BOUNDARY = "pixsearch-test-boundary"


def multipart_chunks(size: int, chunk: int = 64 * 1024):
    """A multipart upload of *size* bytes, in pieces: sent without Content-Length (chunked)."""
    yield (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
           "Content-Type: image/jpeg\r\n\r\n").encode()
    for start in range(0, size, chunk):
        yield b"\xff" * min(chunk, size - start)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def test_oversized_uploads_are_413_with_or_without_content_length(client):
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    declared = client.post("/api/search/image", content=b"".join(multipart_chunks(400 * 1024)), headers=headers)
    assert "content-length" in declared.request.headers
    streamed = client.post("/api/search/image", content=multipart_chunks(400 * 1024), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert "uploads are limited to" in response.json()["detail"]
    # Under the limit, a chunked upload is parsed as usual (and refused for not being an image).
    small = client.post("/api/search/image", content=multipart_chunks(1024), headers=headers)
    assert small.status_code == 400 and "not a usable image" in small.json()["detail"]


def test_unknown_and_malformed_ids_are_404(client):
    for url in ("/api/images/0123456789abcdef", "/api/thumbnails/0123456789abcdef",
                "/api/search/similar/0123456789abcdef", "/api/images/not-an-id", "/api/thumbnails/ABC",
                '/api/images/" or id != "'):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "detail" in response.json()


def test_api_token_guards_the_api_and_the_page_but_not_health(library):
    settings = library.with_overrides({"api_token": "s3cret"})
    with TestClient(create_app(settings)) as guarded:
        assert guarded.get("/health").status_code == 200
        refused = guarded.get("/api/search", params={"q": "hat"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert guarded.get("/api/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = guarded.get("/api/search", params={"q": "hat"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["count"] == 10
        assert guarded.get("/config").status_code == 401  # the page asks for the token as its password
        assert guarded.post("/login", data={"username": "me", "password": "wrong"}).status_code == 400
        assert guarded.post("/login", data={"username": "me", "password": "s3cret"}).status_code == 200
        assert guarded.get("/config").status_code == 200


def test_empty_index_answers_with_no_results(tmp_path, tiny_model):
    settings = build_index(tmp_path, tiny_model, index=False)
    with TestClient(create_app(settings, with_ui=False)) as empty:
        assert empty.get("/api/stats").json()["count"] == 0
        assert empty.get("/api/stats").json()["last_indexed"] is None
        body = empty.get("/api/search", params={"q": "hat"}).json()
        assert body["count"] == 0 and body["results"] == []


# ----------------------------------------------------------------------------- escapes


def raw_get(base: str, path: str) -> tuple[int, bytes]:
    """GET *path* byte for byte: http.client neither normalises ../ nor re-encodes %2e."""
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def escape_attempts(secret: Path, indexed: Path) -> list[str]:
    attempts = []
    for route in ("/api/images/", "/api/thumbnails/", "/api/search/similar/"):
        attempts += [route + "../../../../../../etc/passwd", route + "..%2f..%2f..%2fetc%2fpasswd",
                     route + "%2e%2e/%2e%2e/%2e%2e/etc/passwd", route + "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                     route + urllib.parse.quote(str(secret), safe=""), route + str(secret),
                     route + urllib.parse.quote(str(indexed), safe=""), route + "..", route + "%2e%2e"]
    attempts += ["/api/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
                 f"/gradio_api/file={secret}", f"/gradio_api/file={indexed}", "/gradio_api/file=/etc/passwd",
                 f"/file={secret}", "/gradio_api/file=..%2f..%2f..%2fetc%2fpasswd"]
    return attempts


@pytest.mark.slow
def test_real_server_refuses_traversal_and_symlink_escapes(tmp_path, tiny_model):
    settings = build_index(tmp_path / "lib", tiny_model, in_process=False)
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    outside_image = tmp_path / "outside" / "other.jpg"
    outside_image.write_bytes(next((tmp_path / "lib" / "samples" / "clothing" / "hat").glob("*.jpg")).read_bytes())
    photos = sorted((tmp_path / "lib" / "samples" / "clothing").rglob("*.jpg"))
    with running_server(settings, tmp_path / "serve.log") as base:
        hits = json.loads(raw_get(base, "/api/search?q=clothes&k=20")[1])["results"]
        ids = {hit["path"]: hit["id"] for hit in hits}
        for attempt in escape_attempts(secret, photos[0]):
            status, body = raw_get(base, attempt)
            assert status in (400, 403, 404, 405), (attempt, status, body[:200])
            assert SECRET not in body and b"root:" not in body, attempt
        # After indexing, indexed files are replaced by symlinks that lead outside.
        to_secret, to_other = photos[1], photos[2]
        for victim, target in ((to_secret, secret), (to_other, outside_image)):
            victim.unlink()
            victim.symlink_to(target)
            for route in ("/api/images/", "/api/thumbnails/"):
                status, body = raw_get(base, route + ids[str(victim)])
                assert status == 404 and b"changed since it was indexed" in body, (route, victim, body)
                assert SECRET not in body
        # The untouched files are still served.
        status, body = raw_get(base, "/api/images/" + ids[str(photos[3])])
        assert status == 200 and body == photos[3].read_bytes()


def post_upload(base: str, size: int, chunked: bool) -> tuple[int, bytes]:
    """POST a multipart upload of *size* bytes to a real server, with Content-Length or chunked."""
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    try:
        if chunked:  # no Content-Length: http.client sends Transfer-Encoding: chunked
            connection.request("POST", "/api/search/image", body=multipart_chunks(size), headers=headers,
                               encode_chunked=True)
        else:  # the server answers on the headers alone; the body is never sent
            connection.putrequest("POST", "/api/search/image")
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(size + 1024))
            connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_real_server_refuses_oversized_chunked_and_declared_uploads(tmp_path, tiny_model):
    settings = build_index(tmp_path / "lib", tiny_model, index=False, in_process=False)
    limit = Limits().max_upload_bytes
    with running_server(settings, tmp_path / "serve.log") as base:
        for chunked in (True, False):
            status, body = post_upload(base, limit + 128 * 1024, chunked)
            assert status == 413 and b"uploads are limited to" in body, (chunked, status, body[:200])
        assert post_upload(base, 1024, chunked=True)[0] == 400  # parsed; not an image


@pytest.mark.slow
def test_real_server_answers_concurrent_clients_correctly(tmp_path, tiny_model):
    settings = build_index(tmp_path / "lib", tiny_model, in_process=False)
    with running_server(settings, tmp_path / "serve.log") as base:
        expected = json.loads(raw_get(base, "/api/search?q=a%20winter%20coat&k=7")[1])["results"]
        queries = ["a%20winter%20coat", "black%20leather%20shoes"] * 20

        def ask(q: str) -> list[str]:
            status, body = raw_get(base, f"/api/search?q={q}&k=7")
            assert status == 200
            return [r["id"] for r in json.loads(body)["results"]]

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(ask, queries))
        assert all(a == [r["id"] for r in expected] for a in answers[::2])
        assert len({tuple(a) for a in answers[1::2]}) == 1
        assert raw_get(base, "/")[0] == 200 and raw_get(base, "/docs")[0] == 200
        assert os.path.getsize(tmp_path / "serve.log") < 10_000, "the server should not log every request"


def test_page_logic_sorts_by_date_and_explains_empty_results(client, library):
    from pixsearch.ui import ANY, run_query

    service = client.app.state.service
    text = {"kind": "text", "value": "a winter coat"}
    items, message, shown = run_query(service, text, 20, 0.0, ANY, ANY, "date")
    mtimes = [row["fields"]["mtime"] for row in shown]
    assert len(items) == 20 and mtimes == sorted(mtimes, reverse=True) and "newest first" in message
    assert all(Path(path).is_file() and caption.endswith(".jpg") for path, caption in items)
    items, message, _ = run_query(service, text, 5, 0.99, ANY, "hat", "relevance")
    assert items == [] and "No results" in message and "lower minimum score" in message
    _, message, _ = run_query(service, {"kind": "text", "value": "x" * 2000}, 5, 0.0, ANY, ANY, "relevance")
    assert "query too long" in message


@pytest.mark.slow
def test_server_indexes_and_watches_while_serving(tmp_path, tiny_model):
    """Milvus Lite allows one process per file: `serve --index --watch` searches while it indexes."""
    import shutil
    import time
    import urllib.request

    from .conftest import SAMPLES, sample_images
    from .observe import WATCHING
    from .observe import wait_for as wait_until

    library = tmp_path / "library"
    shutil.copytree(SAMPLES / "hat", library)
    settings = Settings(db=str(tmp_path / "live.db"), model=str(tiny_model), cache_dir=str(tmp_path / "cache"))

    def count(url: str) -> int:
        with urllib.request.urlopen(f"{url}/api/search?q=a+photo&k=50", timeout=10) as response:
            return len(json.load(response)["results"])

    def wait_for(url: str, expected: int) -> None:
        deadline = time.monotonic() + 60
        while count(url) != expected:
            assert time.monotonic() < deadline, f"never saw {expected} results"
            time.sleep(0.3)

    log = tmp_path / "live.log"
    with running_server(settings, log, "--index", str(library), "--watch", library_log=True) as url:
        wait_for(url, 2)
        watching = WATCHING.encode()
        wait_until(lambda: any(line.startswith(watching) for line in log.read_bytes().splitlines()), 60,
                   "the server's watcher to start")
        shutil.copy(sample_images()[0], library / "new photo.jpg")
        wait_for(url, 3)
        (library / "new photo.jpg").unlink()
        wait_for(url, 2)


def test_page_searches_do_not_wait_for_the_stats_scan(client, monkeypatch):
    """The folder/label scan runs at most once at a time, outside any lock a search needs."""
    from pixsearch import service as service_module
    from pixsearch.ui import ANY, run_query

    service = client.app.state.service
    store = service.workspace.store
    service.stats()  # something cached to fall back on
    monkeypatch.setattr(service_module, "STATS_TTL_SECONDS", 0.0)
    scanning, release = threading.Event(), threading.Event()
    scan = store.iter_rows

    def slow_scan(*args, **kwargs):
        scanning.set()
        assert release.wait(30)
        return scan(*args, **kwargs)

    monkeypatch.setattr(store, "iter_rows", slow_scan)
    with ThreadPoolExecutor(max_workers=2) as pool:
        stale = pool.submit(service.stats)
        try:
            assert scanning.wait(10)
            searched = pool.submit(run_query, service, {"kind": "text", "value": "a hat"}, 5, 0.0, ANY, ANY,
                                   "relevance")
            items, message, _ = searched.result(timeout=10)
            assert len(items) == 5, message
            during = service.stats()  # a second caller gets the previous lists at once
            assert during.count == SAMPLE_COUNT and "hat" in during.labels
        finally:
            release.set()
        assert stale.result(timeout=30).count == SAMPLE_COUNT


def test_stats_count_is_current_and_empty_index_is_a_count(client, monkeypatch):
    from pixsearch.ui import empty_index_message

    service = client.app.state.service
    service.stats()
    monkeypatch.setattr(service.workspace.store, "iter_rows", lambda *a, **k: pytest.fail("scanned the rows"))
    assert empty_index_message(service) is None
    monkeypatch.setattr(service.workspace.store, "count", lambda: 0)
    assert service.stats().count == 0 and service.stats().last_indexed is None
    assert "index is empty" in empty_index_message(service)


def test_more_like_this_reads_the_row_once_and_the_page_keeps_to_max_k(client, monkeypatch):
    from pixsearch.ui import ANY, run_query

    service = client.app.state.service
    hit = client.get("/api/search", params={"q": "a blue hat", "k": 1}).json()["results"][0]
    gets, ks = [], []
    get, search = service.workspace.store.get, service.searcher.results  # the front ends' entry point
    monkeypatch.setattr(service.workspace.store, "get", lambda *a, **k: gets.append(a) or get(*a, **k))
    monkeypatch.setattr(service.searcher, "results", lambda query: ks.append(query.k) or search(query))
    assert client.get(f"/api/search/similar/{hit['id']}", params={"k": 3}).json()["count"] == 3
    assert len(gets) == 1
    run_query(service, {"kind": "similar", "value": hit["id"]}, 100, 0.0, ANY, ANY, "relevance")
    assert ks == [3, service.limits.max_k]


def test_cached_thumbnails_of_changed_files_are_refused(tmp_path, tiny_model, monkeypatch):
    settings = build_index(tmp_path, tiny_model)
    with TestClient(create_app(settings, with_ui=False)) as fresh:
        hits = {Path(h["path"]).name: h for h in
                fresh.get("/api/search", params={"q": "clothes", "k": 20}).json()["results"]}
        names = sorted(hits)
        for name in names[:3]:
            assert fresh.get(hits[name]["thumbnail_url"]).status_code == 200
        # An untouched file's cached thumbnail is served on a stat alone (the file is not read).
        from pixsearch import service as service_module

        with monkeypatch.context() as patch:
            patch.setattr(service_module, "read_file", lambda *a: pytest.fail("read an unchanged file"))
            assert fresh.get(hits[names[0]]["thumbnail_url"]).status_code == 200
        swapped, edited, touched = (Path(hits[name]["path"]) for name in names[:3])
        swapped.unlink()
        swapped.symlink_to(Path(hits[names[-1]]["path"]))
        edited.write_bytes(edited.read_bytes() + b"\0")
        os.utime(touched, (1e9, 1e9))
        for victim in (swapped, edited):
            response = fresh.get(hits[victim.name]["thumbnail_url"])
            assert response.status_code == 404 and "changed since it was indexed" in response.json()["detail"]
        # Same bytes, new mtime: still the indexed content, as for the full image.
        assert fresh.get(hits[touched.name]["thumbnail_url"]).status_code == 200
        assert fresh.get(hits[touched.name]["image_url"]).status_code == 200


def test_shutdown_leaves_the_store_open_while_the_indexer_still_runs(tmp_path, tiny_model, monkeypatch, caplog):
    from pixsearch.indexer import Indexer, IndexReport
    from pixsearch.watch import BackgroundSync

    settings = build_index(tmp_path, tiny_model, index=False)
    running, release = threading.Event(), threading.Event()
    syncs = []

    def stuck(self, *args, **kwargs):
        running.set()
        release.wait(60)
        return IndexReport()

    stop = BackgroundSync.stop
    monkeypatch.setattr(Indexer, "run", stuck)
    monkeypatch.setattr(BackgroundSync, "stop", lambda self, timeout=30.0: syncs.append(self) or stop(self, 0.2))
    app = create_app(settings, with_ui=False, index_paths=[str(tmp_path / "samples")])
    service = app.state.service
    close, closed = service.close, []
    monkeypatch.setattr(service, "close", lambda: closed.append(True))
    try:
        with caplog.at_level(logging.WARNING, logger="pixsearch.api"), TestClient(app):
            assert running.wait(10)
        assert closed == [] and "did not stop in time" in caplog.text
    finally:
        release.set()
        for sync in syncs:
            sync._thread.join(10)
        close()
    # When the indexer does stop, shutdown closes the store.
    release.clear()
    monkeypatch.setattr(Indexer, "run", lambda self, *a, **k: IndexReport())
    app = create_app(settings, with_ui=False, index_paths=[str(tmp_path / "samples")])
    close, closed = app.state.service.close, []
    monkeypatch.setattr(app.state.service, "close", lambda: closed.append(True) or close())
    with TestClient(app):
        pass
    assert closed == [True]


# ----------------------------------------------------------------------------- one query path


def test_one_query_path_weighs_terms_and_bounds_every_query(client, tmp_path):
    """The CLI, the API and the page all ask the service's Searcher; its Limits and errors are the only ones."""
    from pixsearch.search import IdTerm, ImageTerm, NotFound, Query, QueryError, Searcher, TextTerm, UploadTooLarge

    searcher = client.app.state.service.searcher
    hit = client.get("/api/search", params={"q": "a blue hat", "k": 1}).json()["results"][0]
    alone = searcher.search(Query.of(IdTerm(hit["id"]), k=3))
    # A zero-weight term changes nothing; a doubled weight is scaled back to unit length.
    mixed = searcher.search(Query((IdTerm(hit["id"], 2.0), TextTerm("a red dress", 0.0)), k=3))
    assert [h.id for h in mixed] == [h.id for h in alone] and mixed[0].id == hit["id"]
    assert mixed[0].score == pytest.approx(alone[0].score, abs=1e-5)
    with pytest.raises(QueryError, match="cancel out"):
        searcher.search(Query((IdTerm(hit["id"], 1.0), IdTerm(hit["id"], -1.0))))
    with pytest.raises(QueryError, match="between 1 and 50"):
        searcher.search(Query.of(TextTerm("hat"), k=51))
    with pytest.raises(UploadTooLarge, match=r"limited to 0\.25 MiB"):
        searcher.search(Query.of(ImageTerm(b"\xff" * (256 * 1024 + 1))))
    short = Searcher(searcher.store, searcher.embedder, Limits(max_query_chars=5))
    with pytest.raises(QueryError, match="at most 5"):
        short.by_text("a red dress")
    # One error for an unknown id, whichever front end asks: the API's 404, a QueryError to the CLI.
    for bad in ("0123456789abcdef", "not-an-id"):
        with pytest.raises(NotFound) as unknown:
            searcher.by_id(bad)
        assert isinstance(unknown.value, QueryError)
        answer = client.get(f"/api/search/similar/{bad}")
        assert answer.status_code == 404 and answer.json()["detail"] == str(unknown.value)


def test_page_uploads_are_bounded_by_the_same_limit(client, tmp_path):
    from pixsearch.ui import ANY, run_query

    service = client.app.state.service
    upload_dir = (tmp_path / "uploads").resolve()
    upload_dir.mkdir()
    big = upload_dir / "big.jpg"
    big.write_bytes(b"\xff" * (service.limits.max_upload_bytes + 10))
    items, message, _ = run_query(service, {"kind": "image", "value": str(big)}, 5, 0.0, ANY, ANY, "relevance",
                                  upload_dir)
    assert items == [] and "upload too large" in message and "limited to" in message


@pytest.mark.parametrize("min_score", [0.0, 0.3])
def test_the_pages_more_results_continue_the_first_exactly(client, min_score):
    from pixsearch.ui import ANY, run_page, run_query

    service = client.app.state.service
    query = {"text": "a shoe", "image": None, "examples": []}
    _, _, whole = run_query(service, query, 18, min_score, ANY, ANY, "relevance")
    shown: list = []
    offset: int | None = 0
    while offset is not None:
        items, message, shown, offset = run_page(service, query, 5, min_score, ANY, ANY, "relevance",
                                                 shown=shown, offset=offset)
        assert len(items) == len(shown)
    assert [r["id"] for r in shown][:18] == [r["id"] for r in whole]
    assert "results for “a shoe”" in message


def test_the_page_combines_text_upload_and_examples(client, library, tmp_path):
    from pixsearch import pagequery
    from pixsearch.ui import ANY, run_query

    service = client.app.state.service
    hats = client.get("/api/search", params={"q": "a hat", "k": 3}).json()["results"]
    upload_dir = tmp_path / "uploads"
    upload_dir.mkdir()
    upload = upload_dir / "dress.jpg"
    upload.write_bytes(sample(library, "dress").read_bytes())
    query = pagequery.with_image(pagequery.with_text(None, "a hat"), str(upload))
    query = pagequery.with_example(query, hats[0]["id"], -1.0, "hat.jpg")
    query = pagequery.with_example(query, hats[1]["id"], 1.0, "other.jpg")
    _, message, shown = run_query(service, query, 20, 0.0, ANY, ANY, "relevance", upload_dir)
    assert message.startswith("20 results for “a hat” + the uploaded image dress.jpg + 1 liked image − 1 disliked")
    body = {"terms": [{"text": "a hat"}, {"image": base64.b64encode(upload.read_bytes()).decode()},
                      {"image_id": hats[0]["id"], "weight": -1}, {"image_id": hats[1]["id"]}], "k": 20}
    assert [r["id"] for r in shown] == [r["id"] for r in client.post("/api/search", json=body).json()["results"]]
    assert [label for label, _ in pagequery.example_choices(query)] == ["− less like hat.jpg", "+ more like other.jpg"]
    kept = pagequery.keeping(query, [value for _, value in pagequery.example_choices(query)][1:])
    assert pagequery.describe(kept) == "“a hat” + the uploaded image dress.jpg + 1 liked image"
    _, message, _ = run_query(service, pagequery.with_image(query, None), 5, 0.0, ANY, ANY, "relevance", None)
    assert "results for “a hat” + 1 liked image − 1 disliked image" in message
    _, message, _ = run_query(service, query, 5, 0.0, ANY, ANY, "relevance", None)  # no upload folder: refused
    assert message.startswith("⚠️")


def test_legacy_page_queries_read_as_before():
    from pixsearch import pagequery

    assert pagequery.describe({"kind": "text", "value": " a  hat "}) == "“a hat”"
    assert pagequery.describe({"kind": "similar", "value": "0123456789abcdef"}) == "the selected image"
    assert pagequery.normal({"kind": "image", "value": "/up/x.jpg"})["image"] == "/up/x.jpg"
    assert pagequery.is_empty(None) and pagequery.is_empty({"kind": "text", "value": "  "})


def test_the_relevance_cut_pages_and_counts_in_the_api_and_the_page(client):
    from pixsearch.ui import ANY, run_page

    whole = client.post("/api/search", json={"terms": [{"text": "a shoe"}], "k": 20, "cut": "auto"}).json()
    plain = client.get("/api/search", params={"q": "a shoe", "k": 20}).json()
    assert plain["cut"] == 0 and plain["relevant"] is None
    assert whole["relevant"] == whole["count"] and whole["cut"] + whole["relevant"] == SAMPLE_COUNT
    assert 0 < whole["relevant"] < SAMPLE_COUNT
    assert [r["id"] for r in whole["results"]] == [r["id"] for r in plain["results"]][:whole["relevant"]]
    pages, offset = [], 0
    while offset is not None:
        page = client.get("/api/search", params={"q": "a shoe", "k": 2, "offset": offset, "cut": "auto"}).json()
        assert (page["cut"], page["relevant"]) == (whole["cut"], whole["relevant"])
        pages += page["results"]
        offset = page["next_offset"]
    assert [r["id"] for r in pages] == [r["id"] for r in whole["results"]]  # and no empty page at the end
    bad = client.get("/api/search", params={"q": "a shoe", "cut": "sometimes"})
    assert bad.status_code == 422

    service = client.app.state.service
    query = {"text": "a shoe", "image": None, "examples": []}
    _, message, shown, following = run_page(service, query, 50, 0.0, ANY, ANY, "relevance", relevant=True)
    assert [r["id"] for r in shown] == [r["id"] for r in whole["results"]] and following is None
    assert f"{whole['cut']} cut as not relevant" in message
