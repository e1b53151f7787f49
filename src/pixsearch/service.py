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
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .config import Settings
from .images import ImageError, decode_image, encode_jpeg, read_file, sniff_format
from .indexer import content_hash
from .search import Limits, NotFound, QueryError, Searcher
from .store import Filters, ImageRow
from .workspace import Workspace, open_workspace

THUMBNAIL_SIDE = 320
PREVIEW_SIDE = 1280
STATS_TTL_SECONDS = 30.0
MAX_LISTED = 1000
_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp",
                "TIFF": "image/tiff", "WEBP": "image/webp"}


@dataclass(frozen=True)
class ServedImage:
    data: bytes
    media_type: str
    etag: str


@dataclass(frozen=True)
class _RowFacts:
    """What only a scan of every row tells (cached: see SearchService.stats)."""

    rows: int
    newest: float | None
    folders: tuple[str, ...]
    labels: tuple[str, ...]


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
        return datetime.fromtimestamp(self.last_indexed_at, tz=UTC).isoformat(timespec="seconds")


def make_filters(folder: str = "", label: str = "", min_score: float | None = None) -> Filters:
    """Filters from user input. A folder must be absolute: the server's working folder means nothing
    to a client, and the indexed folders are listed in the stats."""
    folder = (folder or "").strip()
    if folder and not os.path.isabs(folder):
        raise QueryError(f"folder {folder[:80]!r} is not an absolute path; pick one of the indexed folders "
                         "(listed by GET /api/stats), e.g. /photos/2023")
    return Filters(folder=os.path.normpath(folder) if folder else "", label=(label or "").strip(),
                   min_score=min_score)


class SearchService:
    """The model, the store and the thumbnail cache of one collection, shared by all requests."""

    def __init__(self, workspace: Workspace, settings: Settings, limits: Limits = Limits()):
        self.workspace = workspace
        self.settings = settings
        self.searcher = Searcher(workspace.store, workspace.embedder, limits)
        self.thumbnail_dir = Path(settings.cache_dir).expanduser() / "thumbnails" / workspace.store.collection
        self.thumbnail_dir.mkdir(parents=True, exist_ok=True)
        self._facts: tuple[float, _RowFacts] | None = None
        self._facts_lock = threading.Lock()
        self._scanning = False

    @classmethod
    def open(cls, settings: Settings, limits: Limits = Limits(), create: bool = False) -> SearchService:
        """*create*: make the collection if missing (a server that indexes folders itself)."""
        return cls(open_workspace(settings, create=create), settings, limits)

    def close(self) -> None:
        self.workspace.close()

    def warm_up(self) -> None:
        """Load the text tower now, so the first visitor does not wait for it.

        The image tower stays lazy: only uploads need it, and it is the larger one.
        """
        self.workspace.embedder.embed_texts(["a photo"])

    @property
    def limits(self) -> Limits:
        return self.searcher.limits

    # ------------------------------------------------------------------ rows and files

    def row(self, image_id: str, with_vector: bool = False) -> ImageRow:
        """The indexed row of *image_id* (NotFound when there is none)."""
        return self.searcher.row(image_id, with_vector)

    def image(self, image_id: str) -> ServedImage:
        """The original file's bytes, only while they are exactly what was indexed."""
        row = self.row(image_id)
        data = self._indexed_bytes(row)
        return ServedImage(data=data, media_type=_MEDIA_TYPES.get(sniff_format(data) or "", "application/octet-stream"),
                           etag=row["content_hash"])

    def _indexed_bytes(self, row: ImageRow) -> bytes:
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

        A cached thumbnail older than its row (the file was re-indexed) is made again. A cached
        one is served only while the file is unchanged: a regular file with the recorded size
        and mtime passes on a stat; anything else (a symlink, a touched or edited file) must
        still hash to the recorded content, as for the full image.
        """
        row = self.row(image_id)
        path = self.thumbnail_dir / f"{row['id']}.jpg"
        try:
            cached = path.stat().st_mtime >= float(row.get("indexed_at") or 0.0)
        except FileNotFoundError:
            cached = False
        if cached:
            if not _same_file(row):
                self._indexed_bytes(row)
            return path
        self._write_atomically(path, encode_jpeg(self._decode(row), max_side=THUMBNAIL_SIDE, quality=82))
        return path

    def preview(self, image_id: str) -> np.ndarray:
        """The image as an RGB array at most PREVIEW_SIDE pixels long, for the page's large view."""
        import cv2

        rgb = self._decode(self.row(image_id))
        h, w = rgb.shape[:2]
        if max(h, w) > PREVIEW_SIDE:
            scale = PREVIEW_SIDE / max(h, w)
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return rgb

    def _decode(self, row: ImageRow) -> np.ndarray:
        try:
            rgb: np.ndarray = decode_image(self._indexed_bytes(row), max_pixels=self.settings.max_pixels).rgb
            return rgb
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

    def count(self) -> int:
        """Number of indexed images: a count(*), cheap enough for every query."""
        return self.workspace.store.count()

    def stats(self) -> Stats:
        """Collection facts. The count is always current; the folders, labels and newest indexing
        time need a scan of every row, so they are cached for STATS_TTL_SECONDS."""
        store = self.workspace.store
        count = store.count()
        facts = self._row_facts() if count else _RowFacts(0, None, (), ())
        return Stats(model=self.workspace.model, model_id=self.workspace.embedder.model_id,
                     collection=store.collection, count=count, dim=self.workspace.embedder.dim,
                     backend=store.policy.backend, last_indexed_at=facts.newest, folders=facts.folders,
                     labels=facts.labels)

    def _row_facts(self) -> _RowFacts:
        """The cached scan. The scan runs outside the lock, one at a time: while it runs, other
        callers get the previous facts instead of waiting (only the very first scan is waited for)."""
        with self._facts_lock:
            if self._facts is not None:
                taken, facts = self._facts
                fresh = time.monotonic() - taken < STATS_TTL_SECONDS and facts.rows > 0
                if fresh or self._scanning:
                    return facts
            self._scanning = True
        try:
            facts = self._scan_rows()
            with self._facts_lock:
                self._facts = (time.monotonic(), facts)
            return facts
        finally:
            with self._facts_lock:
                self._scanning = False

    def _scan_rows(self) -> _RowFacts:
        newest: float | None = None
        folders: set[str] = set()
        labels: set[str] = set()
        rows = 0
        for row in self.workspace.store.iter_rows(("path", "label", "indexed_at")):
            rows += 1
            newest = max(newest or 0.0, float(row["indexed_at"] or 0.0))
            if len(folders) < MAX_LISTED:
                folders.add(os.path.dirname(row["path"]))
            if row["label"] and len(labels) < MAX_LISTED:
                labels.add(row["label"])
        return _RowFacts(rows, newest, tuple(sorted(folders)), tuple(sorted(labels)))


def _same_file(row: ImageRow) -> bool:
    """Cheap check that the indexed path is still the file that was indexed: a regular file
    (not a symlink, which may now point elsewhere) with the recorded size and mtime."""
    try:
        st = os.lstat(row["path"])
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == row["size"] and st.st_mtime == row["mtime"]

