"""The only files a client can hand to the web page: its own uploads, read without trusting them.

Gradio copies every file that an event's data names (a ``{"path": ...}`` dict) into its cache
*before* the handler runs, and it checks that such a path lies in its upload folder only once
``Blocks.has_launched`` is set, which ``gr.mount_gradio_app`` never does. A client could thus
make the server copy and serve ``/etc/passwd``, or hang it on ``/dev/zero`` or a FIFO. The page
is therefore walled three times. Walls 1 and 2 each stop that copy on their own; wall 3 keeps the
handler's own reads to uploads, but cannot stop a copy Gradio makes before any handler runs (a
copy lands in the upload folder and looks like an upload), so it backs up walls 1 and 2 and does
not replace them (tests/test_page_attacks.py takes each wall out to show it):

1. ``FileDataGuard``, in front of Gradio: a JSON body naming any path outside this server's
   private upload folder, or a URL, is refused (400, one message whatever the path is) before
   Gradio reads it; ``/file=`` never fetches URLs.
2. Gradio's own check, switched on (``enable_gradio_upload_check``): preprocessing accepts only
   files in the upload folder (``GRADIO_TEMP_DIR``, which ``private_upload_dir`` points at a
   folder of pixsearch's cache, so it holds this server's uploads and nothing else).
3. ``read_upload`` at the handler: the path must resolve into the upload folder, is opened
   without following symlinks or blocking, must be a regular file, and is read bounded in bytes
   and time (one byte past the upload limit, which the Searcher then refuses).
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PixsearchError

MAX_EVENT_BODY_BYTES = 1024 * 1024
"""A page event's JSON (query text, slider values, one FileData) is a few KiB; more is refused."""
READ_SECONDS = 5.0
NOT_ALLOWED = ("file not allowed: the page only searches images uploaded to it; upload the image again")
"""The one answer for every refused path, so that it tells nothing about what exists on the server."""
UPLOAD_DIR_ENV = "GRADIO_TEMP_DIR"


class UploadError(PixsearchError, ValueError):
    """An upload that cannot be searched: refused, unreadable or too large (the message says which)."""


def private_upload_dir(cache_dir: str | Path) -> Path:
    """Make ``<cache_dir>/page-uploads`` (mode 0700) Gradio's upload folder, and return it.

    Gradio reads ``GRADIO_TEMP_DIR`` both when the page is built and on every request, so the
    variable is set for the whole process; ``pixsearch serve`` runs one page per process.
    """
    folder = (Path(cache_dir).expanduser() / "page-uploads").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    os.environ[UPLOAD_DIR_ENV] = str(folder)
    return folder


def enable_gradio_upload_check(blocks: Any) -> None:
    """Switch on Gradio's check that event files come from its upload folder (wall 2).

    ``Blocks.launch()`` and Gradio's own hot reloader set ``has_launched``; ``mount_gradio_app``
    does not, and ``processing_utils._check_allowed`` skips every check while it is False
    (read from Gradio 6.31).
    """
    blocks.has_launched = True


def is_inside(path: str, folder: Path) -> bool:
    """True when *path*, with every symlink and ``..`` resolved, lies inside *folder*.

    ``realpath`` only lstat()s and readlink()s: it never opens the path, so it cannot block.
    """
    if "://" in path or path.startswith("//") or "\x00" in path:
        return False
    resolved = Path(os.path.realpath(path))
    return resolved != folder and resolved.is_relative_to(folder)


def named_paths(value: Any) -> list[str]:
    """Every ``"path"`` string in a decoded JSON value: what Gradio would treat as a file."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if path is not None:
                found.append(path if isinstance(path, str) else repr(path))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def read_upload(path: str, folder: Path, at_most: int, seconds: float = READ_SECONDS) -> bytes:
    """The first *at_most* bytes of an uploaded file, refused unless it is a regular file inside
    *folder* (wall 3).

    Opened with O_NOFOLLOW and O_NONBLOCK (a FIFO or device never blocks the open), checked on
    the open descriptor (no swap between check and read), read for at most *seconds*. Whether
    the upload is too large is the Searcher's call (``Limits.check_upload``): pass one byte more
    than the limit, so that it can tell.
    """
    if not is_inside(path, folder):
        raise UploadError(NOT_ALLOWED)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UploadError(NOT_ALLOWED) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UploadError(NOT_ALLOWED)
        return _read_bounded(fd, at_most, time.monotonic() + seconds)
    finally:
        os.close(fd)


def _read_bounded(fd: int, at_most: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < at_most:
        chunk = os.read(fd, min(1024 * 1024, at_most - total))
        if not chunk:
            break
        total += len(chunk)
        if time.monotonic() > deadline:
            raise UploadError("the upload could not be read in time; upload it again")
        chunks.append(chunk)
    return b"".join(chunks)


class FileDataGuard:
    """ASGI middleware before the page (wall 1): no request names a file it did not upload.

    Checks every request outside the REST API (``/api/``, whose uploads are streamed bodies and
    never paths). A JSON body is buffered (at most MAX_EVENT_BODY_BYTES) and every ``"path"`` in
    it must lie in the upload folder; the file routes must name a path, not a URL (which paths
    they serve, Gradio decides: its upload folder and the thumbnails). Multipart uploads and
    forms (the upload and login routes) pass: they carry bytes, not server paths.
    """

    def __init__(self, app: ASGIApp, upload_dir: Path, allowed_dirs: tuple[Path, ...] = ()):
        self.app = app
        self.upload_dir = upload_dir
        self.allowed = (upload_dir, *allowed_dirs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        target = _file_route_target(scope["path"])
        if target is not None and not _names_a_path(target):
            await _refuse(send, 403, NOT_ALLOWED)
            return
        if scope["method"] != "POST" or _is_form(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive, MAX_EVENT_BODY_BYTES)
        if body is None:
            await _refuse(send, 413, f"request too large: page events are limited to "
                                     f"{MAX_EVENT_BODY_BYTES // 1024} KiB")
            return
        if not self._paths_allowed(body):
            await _refuse(send, 400, NOT_ALLOWED)
            return
        await self.app(scope, _replay(body, receive), send)

    def _paths_allowed(self, body: bytes) -> bool:
        try:
            value = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return True  # not JSON: Gradio cannot read a path from it either (it answers 422)
        return all(any(is_inside(p, folder) for folder in self.allowed) for p in named_paths(value))


def _file_route_target(path: str) -> str | None:
    """What Gradio's file routes (``/gradio_api/file=X`` and the older ``/gradio_api/file/X``) would
    fetch, or None for any other route."""
    for marker in ("/file=", "/gradio_api/file/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return None


def _names_a_path(target: str) -> bool:
    """A server path, not a URL: Gradio's file route proxies http(s) URLs, and the server fetches
    nothing for a client."""
    return not ("://" in target or target.startswith("//") or ":" in target.split("/", 1)[0])


def _is_form(scope: Scope) -> bool:
    content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
    return content_type in (b"multipart/form-data", b"application/x-www-form-urlencoded")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes *limit* bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the buffered body over once, then defers to the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(send: Send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
