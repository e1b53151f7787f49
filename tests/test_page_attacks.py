"""Hostile requests to every event of the web page, against a real `pixsearch serve`.

The events are read from the page's own /config, so a new button is attacked too. Each one is
sent file objects naming a secret outside the index, /dev/zero, a FIFO, a folder, a missing
file, traversals out of the upload folder, a symlink planted in it, and URLs. Nothing may be
read, copied or served, the answers must not tell an existing path from a missing one, nobody
may open the FIFO, and /health must answer within a second throughout.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import SAMPLES
from .serving import build_index, running_server

pytestmark = pytest.mark.slow
SECRET = b"pixsearch-attack-suite-secret-" + uuid.uuid4().hex.encode()
HEALTH_LIMIT_S = 1.0


@dataclass
class Target:
    url: str
    cache: Path
    outside: Path
    log: Path

    @property
    def upload_dir(self) -> Path:
        return self.cache / "page-uploads"


@dataclass
class HealthWatch:
    """Polls /health from a thread while the attacks run; records every answer's latency."""

    url: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=HEALTH_LIMIT_S * 3) as response:
                    response.read()
                self.latencies.append(time.monotonic() - started)
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.stop.wait(0.05)


@pytest.fixture(scope="module")
def target(tmp_path_factory, tiny_model) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("attack")
    settings = build_index(root / "lib", tiny_model, in_process=False)
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(SECRET)
    os.mkfifo(outside / "pipe.jpg")
    (outside / "folder.jpg").mkdir()
    with running_server(settings, root / "serve.log") as url:
        yield Target(url, Path(settings.cache_dir), outside, root / "serve.log")


def _request(url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _file_data(path: str) -> dict[str, Any]:
    return {"path": path, "orig_name": "photo.jpg", "meta": {"_type": "gradio.FileData"}}


def _hostile_paths(target: Target) -> dict[str, str]:
    secret = target.outside / "secret.jpg"
    planted = target.upload_dir / "planted"
    planted.mkdir(parents=True, exist_ok=True)
    link = planted / "link.jpg"
    if not link.is_symlink():
        link.symlink_to(secret)
    return {
        "secret": str(secret),
        "missing": str(target.outside / "missing.jpg"),
        "dev_zero": "/dev/zero",
        "fifo": str(target.outside / "pipe.jpg"),
        "folder": str(target.outside / "folder.jpg"),
        "traversal": f"{target.upload_dir}/{os.path.relpath(secret, target.upload_dir)}",
        "relative": os.path.relpath(secret, target.upload_dir),
        "planted_symlink": str(link),
        "loopback_url": f"{target.url}/health",
        "file_url": f"file://{secret}",
    }


def _events(target: Target) -> list[dict[str, Any]]:
    status, body = _request(target.url + "/config")
    assert status == 200
    events = [dep for dep in json.loads(body)["dependencies"] if dep.get("backend_fn")]
    assert len(events) >= 10, "the page's events were not found in /config"
    return events


def _join(target: Target, event: dict[str, Any], value: dict[str, Any], session: str) -> tuple[int, bytes]:
    trigger = next((t[0] for t in event["targets"] if t[0] is not None), None)
    body = {"data": [value] * max(1, len(event["inputs"])), "event_data": {"index": 0, "value": value},
            "fn_index": event["id"], "trigger_id": trigger, "session_hash": session}
    return _request(target.url + "/gradio_api/queue/join", body)


def _outcome(target: Target, session: str, timeout: float = 30) -> dict[str, Any]:
    """The process_completed message of a joined event, read from the queue's event stream."""
    with urllib.request.urlopen(f"{target.url}/gradio_api/queue/data?session_hash={session}",
                                timeout=timeout) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event stream ended without a result")


def _files_holding_secret(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if path.is_file() and not path.is_symlink() and SECRET in path.read_bytes():
                    found.append(path)
    return found


def test_no_page_event_reads_a_file_the_client_did_not_upload(target):
    paths = _hostile_paths(target)
    watch = HealthWatch(target.url)
    watcher = threading.Thread(target=watch.run, daemon=True)
    watcher.start()
    try:
        answers: dict[tuple[int, str], tuple[int, bytes]] = {}
        events = _events(target)
        for event in events:
            for name, path in paths.items():
                answers[event["id"], name] = _join(target, event, _file_data(path), uuid.uuid4().hex[:12])
                if event.get("api_name"):
                    for route in ("run", "call"):
                        status, body = _request(f"{target.url}/gradio_api/{route}/{event['api_name']}",
                                                {"data": [_file_data(path)] * max(1, len(event["inputs"]))})
                        assert status == 400 and SECRET not in body, (route, event["api_name"], name, status)
        for path in paths.values():
            for route in ("file=", "file/"):
                status, body = _request(f"{target.url}/gradio_api/{route}{path}")
                assert status in (403, 404) and SECRET not in body, (route, path, status)
    finally:
        watch.stop.set()
        watcher.join(timeout=10)

    for (event_id, name), (status, body) in answers.items():
        assert status == 400, f"event {event_id} accepted the {name} path: {status} {body[:200]!r}"
        assert SECRET not in body
    assert len({body for _, body in answers.values()}) == 1, "refusals differ: they would tell paths apart"

    leaked = _files_holding_secret(target.cache, Path(tempfile.gettempdir()) / "gradio")
    assert not leaked, f"the secret was copied to {leaked}"
    with pytest.raises(OSError) as opened:
        os.close(os.open(target.outside / "pipe.jpg", os.O_WRONLY | os.O_NONBLOCK))
    assert opened.value.errno == errno.ENXIO, "someone holds the FIFO open for reading"

    assert not watch.failures, watch.failures[:3]
    assert watch.latencies and max(watch.latencies) < HEALTH_LIMIT_S, max(watch.latencies or [0.0])


def test_a_real_upload_still_searches(target):
    """The walls refuse paths, not uploads: the page's own upload flow finds the image itself."""
    sample = sorted(SAMPLES.rglob("*.jpg"))[0]
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{sample.name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + sample.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(target.url + "/gradio_api/upload", body,
                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        (uploaded,) = json.loads(response.read())
    assert Path(uploaded).resolve().is_relative_to(target.upload_dir.resolve())

    events = {event["api_name"]: event for event in _events(target)}
    session = uuid.uuid4().hex[:12]
    status, _ = _join(target, events["image_query"], _file_data(uploaded), session)
    assert status == 200
    assert _outcome(target, session)["success"]
    search = events["search_2"]  # the search that follows an upload
    status, _ = _request(target.url + "/gradio_api/queue/join", {
        "data": [None, 5, 0.0, "(any)", "(any)", "relevance", "", "", False], "event_data": None,
        "fn_index": search["id"],
        "trigger_id": None, "session_hash": session})
    assert status == 200
    result = _outcome(target, session)
    assert result["success"], result
    message = result["output"]["data"][1]
    assert "results for the uploaded image" in message, message


def test_read_upload_refuses_everything_but_a_regular_file_in_the_folder(tmp_path):
    from pixsearch.uploads import NOT_ALLOWED, UploadError, read_upload

    folder = (tmp_path / "uploads").resolve()
    folder.mkdir()
    (folder / "ok.jpg").write_bytes(b"\xff\xd8 bytes")
    (tmp_path / "secret.jpg").write_bytes(SECRET)
    (folder / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    (folder / "inner-link.jpg").symlink_to(folder / "ok.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "dir.jpg").mkdir()
    (folder / "big.jpg").write_bytes(b"x" * 2048)

    assert read_upload(str(folder / "ok.jpg"), folder, 1024) == b"\xff\xd8 bytes"
    for path in [tmp_path / "secret.jpg", folder / "link.jpg", folder / "inner-link.jpg", folder / "pipe.jpg",
                 folder / "dir.jpg", folder / "missing.jpg", Path("/dev/zero"), folder / ".." / "secret.jpg", folder]:
        started = time.monotonic()
        with pytest.raises(UploadError) as refused:
            read_upload(str(path), folder, 1024)
        assert str(refused.value) == NOT_ALLOWED, path
        assert time.monotonic() - started < 1.0, f"{path} blocked"
    assert read_upload(str(folder / "big.jpg"), folder, 1025) == b"x" * 1025  # the Searcher refuses it


# ----------------------------------------------------------------------------- each wall alone


def _page_in_process(tmp_path: Path, tiny_model: Path, guard: bool) -> Iterator[tuple[Any, Path, Path]]:
    from fastapi.testclient import TestClient

    from pixsearch.api import create_app
    from pixsearch.uploads import FileDataGuard

    settings = build_index(tmp_path / "lib", tiny_model)
    app = create_app(settings)
    assert any(m.cls is FileDataGuard for m in app.user_middleware)
    if not guard:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not FileDataGuard]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(SECRET)
    with TestClient(app) as client:
        yield client, outside / "secret.jpg", Path(settings.cache_dir)


@pytest.fixture
def unguarded_page(tmp_path, tiny_model):
    """The page in process, with wall 1 (FileDataGuard) taken out of the middleware stack."""
    yield from _page_in_process(tmp_path, tiny_model, guard=False)


@pytest.fixture
def guarded_page(tmp_path, tiny_model):
    """The page in process, walls as served."""
    yield from _page_in_process(tmp_path, tiny_model, guard=True)


def _join_in_process(client, event: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """Join *event* with *value* as each input; the process_completed message of the queue's stream."""
    session = uuid.uuid4().hex[:12]
    body = {"data": [value] * max(1, len(event["inputs"])), "event_data": None, "fn_index": event["id"],
            "trigger_id": None, "session_hash": session}
    joined = client.post("/gradio_api/queue/join", json=body)
    assert joined.status_code == 200, joined.text  # no FileDataGuard: Gradio takes the event
    with client.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event stream ended without a result")


def test_gradios_own_check_refuses_server_paths_without_the_guard(unguarded_page):
    client, secret, cache = unguarded_page
    events = {dep["api_name"]: dep for dep in client.get("/config").json()["dependencies"] if dep.get("backend_fn")}
    for path in (str(secret), "/etc/passwd"):
        outcome = _join_in_process(client, events["image_query"], _file_data(path))
        assert outcome["success"] is False, outcome
        assert SECRET not in json.dumps(outcome).encode()
    assert not _files_holding_secret(cache), "Gradio copied the secret although its check is on"


def _page_blocks(client) -> Any:
    mount = next(route for route in client.app.routes if getattr(route, "path", None) == "")
    return mount.app.get_blocks()


def test_the_handler_refuses_server_paths_alone(unguarded_page, tmp_path):
    """Wall 3: whatever path reaches the page's search, only a regular file in the upload folder is read."""
    from pixsearch.ui import ANY, run_query
    from pixsearch.uploads import NOT_ALLOWED

    client, secret, cache = unguarded_page
    _page_blocks(client).has_launched = False  # wall 2 off too
    upload_dir = (cache / "page-uploads").resolve()
    planted = upload_dir / "planted"
    planted.mkdir()
    (planted / "link.jpg").symlink_to(secret)
    os.mkfifo(tmp_path / "pipe.jpg")
    service = client.app.state.service
    for path in (secret, Path("/dev/zero"), tmp_path / "pipe.jpg", planted / "link.jpg",
                 upload_dir / ".." / ".." / "outside" / "secret.jpg", Path("/etc/passwd")):
        started = time.monotonic()
        items, message, _ = run_query(service, {"kind": "image", "value": str(path)}, 5, 0.0, ANY, ANY,
                                      "relevance", upload_dir)
        assert items == [] and message == f"⚠️ {NOT_ALLOWED}", (path, message)
        assert time.monotonic() - started < 1.0, f"{path} blocked the handler"
    assert not _files_holding_secret(cache)


def test_without_walls_1_and_2_gradio_copies_a_named_file_before_any_handler(unguarded_page):
    """Why walls 1 and 2 both exist: wall 3 cannot replace them. Gradio copies a file an event names
    into its upload folder before the handler runs, so the handler then sees an "upload". If this
    test fails, Gradio stopped copying unchecked paths and uploads.py should say so."""
    client, secret, cache = unguarded_page
    _page_blocks(client).has_launched = False
    events = {dep["api_name"]: dep for dep in client.get("/config").json()["dependencies"] if dep.get("backend_fn")}
    assert _join_in_process(client, events["image_query"], _file_data(str(secret)))["success"]
    copies = _files_holding_secret(cache)
    assert copies and all(copy.resolve().is_relative_to((cache / "page-uploads").resolve()) for copy in copies)


def test_the_guard_refuses_server_paths_alone(guarded_page):
    """Wall 1 with wall 2 off: the event never reaches Gradio."""
    from pixsearch.uploads import NOT_ALLOWED

    client, secret, cache = guarded_page
    _page_blocks(client).has_launched = False
    events = {dep["api_name"]: dep for dep in client.get("/config").json()["dependencies"] if dep.get("backend_fn")}
    body = {"data": [_file_data(str(secret))], "event_data": None, "fn_index": events["image_query"]["id"],
            "trigger_id": None, "session_hash": uuid.uuid4().hex[:12]}
    refused = client.post("/gradio_api/queue/join", json=body)
    assert refused.status_code == 400 and refused.json() == {"detail": NOT_ALLOWED}
    assert not _files_holding_secret(cache)
