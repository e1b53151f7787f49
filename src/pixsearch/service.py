"""What the REST API and the web page share: one model, one store, thumbnails, facts.

A ``SearchService`` is built once per server process and shared by every request
thread. ONNX Runtime sessions and the Milvus client are safe to share, and the
Searcher caches text embeddings, so a repeated query only costs the vector search.

Images are only ever reached through an id: the id names a row, the row names
the file, and the file is served only while its bytes still hash to the content
hash recorded at indexing. A file swapped for a symlink to something else (or
edited) since indexing is therefore refused instead of leaked.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import Settings
from .images import ImageError, decode_image, encode_jpeg, read_file, sniff_format
from .indexer import content_hash
from .search import MAX_QUERY_CHARS, Filters, QueryError, Searcher
from .store import Hit
from .workspace import Workspace, open_workspace

ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
"""Row ids are 8-byte blake2b hex digests of the path (indexer.image_id)."""
THUMBNAIL_SIDE = 320
PREVIEW_SIDE = 1280
STATS_TTL_SECONDS = 30.0
MAX_LISTED = 1000
_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp",
                "TIFF": "image/tiff", "WEBP": "image/webp"}


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for, so one client cannot stall the server."""

    max_k: int = 200
    max_query_chars: int = MAX_QUERY_CHARS
    max_upload_bytes: int = 20 * 1024 * 1024


class NotFound(LookupError):
    """An id that names no indexed image, or whose file can no longer be served."""


@dataclass(frozen=True)
class ServedImage:
    data: bytes
    media_type: str
    etag: str


@dataclass(frozen=True)
class Stats:
    model: str
    model_id: str
    collection: str
    count: int
    dim: int
    backend: str
    last_indexed_at: float | None
    folders: tuple[str, ...] = ()
    """Folders holding indexed images (at most MAX_LISTED), for the folder filter."""
    labels: tuple[str, ...] = ()

    @property
    def last_indexed(self) -> str | None:
        """ISO-8601 UTC time of the newest indexed row, or None for an empty index."""
        if self.last_indexed_at is None:
            return None
        return datetime.fromtimestamp(self.last_indexed_at, tz=timezone.utc).isoformat(timespec="seconds")


def make_filters(folder: str = "", label: str = "", min_score: float | None = None) -> Filters:
    """Filters from user input. A folder must be absolute: the server's working folder means nothing
    to a client, and the indexed folders are listed in the stats."""
    folder = (folder or "").strip()
    if folder and not os.path.isabs(folder):
        raise QueryError(f"folder {folder[:80]!r} is not an absolute path; pick one of the indexed folders "
                         "(listed by GET /api/stats), e.g. /photos/2023")
    return Filters(folder=os.path.normpath(folder) if folder else "", label=(label or "").strip(),
                   min_score=min_score)


def check_id(image_id: str) -> str:
    """*image_id* if it is well formed; anything else can never name a row."""
    if not ID_PATTERN.fullmatch(image_id or ""):
        raise NotFound(f"{image_id[:40]!r} is not an image id (ids are 16 hex characters, as returned by search)")
    return image_id


class SearchService:
    """The model, the store and the thumbnail cache of one collection, shared by all requests."""

    def __init__(self, workspace: Workspace, settings: Settings, limits: Limits = Limits()):
        self.workspace = workspace
        self.settings = settings
        self.limits = limits
        self.searcher = Searcher(workspace.store, workspace.embedder)
        self.thumbnail_dir = Path(settings.cache_dir).expanduser() / "thumbnails" / workspace.store.collection
        self.thumbnail_dir.mkdir(parents=True, exist_ok=True)
        self._stats: tuple[float, Stats] | None = None
        self._stats_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, limits: Limits = Limits(), create: bool = False) -> "SearchService":
        """*create*: make the collection if missing (a server that indexes folders itself)."""
        return cls(open_workspace(settings, create=create), settings, limits)

    def close(self) -> None:
        self.workspace.close()

    def warm_up(self) -> None:
        """Load the text tower now, so the first visitor does not wait for it.

        The image tower stays lazy: only uploads need it, and it is the larger one.
        """
        self.workspace.embedder.embed_texts(["a photo"])

    # ------------------------------------------------------------------ searching

    def check_k(self, k: int) -> int:
        if not 1 <= k <= self.limits.max_k:
            raise QueryError(f"k must be between 1 and {self.limits.max_k} (got {k})")
        return k

    def by_text(self, query: str, k: int, filters: Filters) -> list[Hit]:
        if len(query) > self.limits.max_query_chars:
            raise QueryError(f"query too long ({len(query)} characters; at most {self.limits.max_query_chars}): "
                             "describe the picture in fewer words")
        return self.searcher.by_text(query, self.check_k(k), filters)

    def by_image(self, data: bytes, k: int, filters: Filters) -> list[Hit]:
        if len(data) > self.limits.max_upload_bytes:
            raise QueryError(f"upload too large ({len(data) / 2**20:.1f} MiB; at most "
                             f"{self.limits.max_upload_bytes / 2**20:.0f} MiB)")
        return self.searcher.by_image(data, self.check_k(k), filters)

    def by_id(self, image_id: str, k: int, filters: Filters) -> list[Hit]:
        self.row(image_id)
        return self.searcher.by_id(image_id, self.check_k(k), filters)

    # ------------------------------------------------------------------ rows and files

    def row(self, image_id: str) -> dict[str, Any]:
        """The indexed row of *image_id* (NotFound when there is none)."""
        rows = self.workspace.store.get([check_id(image_id)])
        if not rows:
            raise NotFound(f"no indexed image has id {image_id!r}")
        return rows[0]

    def image(self, image_id: str) -> ServedImage:
        """The original file's bytes, only while they are exactly what was indexed."""
        row = self.row(image_id)
        data = self._indexed_bytes(row)
        return ServedImage(data=data, media_type=_MEDIA_TYPES.get(sniff_format(data) or "", "application/octet-stream"),
                           etag=row["content_hash"])

    def _indexed_bytes(self, row: dict[str, Any]) -> bytes:
        try:
            data = read_file(Path(row["path"]), self.settings.max_file_bytes)
        except ImageError as exc:
            raise NotFound(f"the file of image {row['id']} cannot be read ({exc.reason}); "
                           "run `pixsearch index` again to refresh the index") from exc
        if content_hash(data) != row["content_hash"] or sniff_format(data) is None:
            raise NotFound(f"the file of image {row['id']} changed since it was indexed; "
                           "run `pixsearch index` again to refresh the index")
        return data

    def thumbnail_path(self, image_id: str) -> Path:
        """A small JPEG of an indexed image, made once and kept under the cache folder.

        A cached thumbnail older than its row (the file was re-indexed) is made again.
        """
        row = self.row(image_id)
        path = self.thumbnail_dir / f"{row['id']}.jpg"
        try:
            if path.stat().st_mtime >= float(row.get("indexed_at") or 0.0):
                return path
        except FileNotFoundError:
            pass
        self._write_atomically(path, encode_jpeg(self._decode(row), max_side=THUMBNAIL_SIDE, quality=82))
        return path

    def preview(self, image_id: str):
        """The image as an RGB array at most PREVIEW_SIDE pixels long, for the page's large view."""
        import cv2

        rgb = self._decode(self.row(image_id))
        h, w = rgb.shape[:2]
        if max(h, w) > PREVIEW_SIDE:
            scale = PREVIEW_SIDE / max(h, w)
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return rgb

    def _decode(self, row: dict[str, Any]):
        try:
            return decode_image(self._indexed_bytes(row), max_pixels=self.settings.max_pixels).rgb
        except ImageError as exc:
            raise NotFound(f"image {row['id']} cannot be decoded any more: {exc.reason}") from exc

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        """Write via a temporary file, so concurrent requests never see half a thumbnail."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".thumb-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ facts

    def stats(self) -> Stats:
        """Collection facts. They need one scan of the rows, so they are cached briefly."""
        with self._stats_lock:
            if self._stats is not None and time.monotonic() - self._stats[0] < STATS_TTL_SECONDS:
                return self._stats[1]
            store = self.workspace.store
            newest: float | None = None
            folders: set[str] = set()
            labels: set[str] = set()
            count = 0
            for row in store.iter_rows(("path", "label", "indexed_at")):
                count += 1
                newest = max(newest or 0.0, float(row["indexed_at"] or 0.0))
                if len(folders) < MAX_LISTED:
                    folders.add(os.path.dirname(row["path"]))
                if row["label"] and len(labels) < MAX_LISTED:
                    labels.add(row["label"])
            stats = Stats(model=self.workspace.model, model_id=self.workspace.embedder.model_id,
                          collection=store.collection, count=count, dim=self.workspace.embedder.dim,
                          backend=store.policy.backend, last_indexed_at=newest,
                          folders=tuple(sorted(folders)), labels=tuple(sorted(labels)))
            self._stats = (time.monotonic(), stats)
            return stats


def hit_json(hit: Hit, prefix: str = "") -> dict[str, Any]:
    """One search result as the API returns it."""
    fields = {k: v for k, v in hit.fields.items() if k not in ("id", "path")}
    return {"id": hit.id, "path": hit.path, "score": round(hit.score, 6), "fields": fields,
            "thumbnail_url": f"{prefix}/api/thumbnails/{hit.id}", "image_url": f"{prefix}/api/images/{hit.id}"}
