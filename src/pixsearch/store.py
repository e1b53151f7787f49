"""The vector store: one Milvus collection per model, through pymilvus' MilvusClient.

The same code serves the embedded Milvus Lite file (``./pixsearch.db``), a Milvus
standalone server and a cluster (``http://host:19530`` plus a token). Everything
that differs between those backends (index type, batch sizes, consistency) is in
``IndexPolicy``, chosen in ``policy_for``: one place to change.

Milvus is the only source of truth: each row holds an image's vector and the
file facts (path, size, mtime, content hash) that incremental indexing compares.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PixsearchError

# milvus-lite 2.5 imports pkg_resources, which warns on every start; the pin is deliberate (README).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

FIELDS = ("id", "path", "label", "size", "mtime", "width", "height", "content_hash", "indexed_at")
"""Scalar fields of an image row (the vector is separate)."""
MAX_PATH = 4096
MAX_LABEL = 512


class StoreError(PixsearchError):
    """The store cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class IndexPolicy:
    """How pixsearch uses one kind of Milvus backend; measured choices, see the README."""

    backend: str
    index_type: str
    index_params: dict[str, Any]
    search_params: dict[str, Any]
    insert_batch: int
    """Rows per insert call. Milvus Lite 2.5 slows sharply above ~1k rows per call."""
    consistency: str = "Strong"
    """The collection's level, used for the reads that decide what to write (existing rows, counts)."""
    search_consistency: str = "Strong"
    """Level of searches and id lookups: these must be fast, and see this process's own writes."""
    page: int = 2000
    """Rows per query page when listing a collection (at most 16384)."""
    flush: bool = True
    """Whether to flush at the end of an index run."""

    def search_params_for(self, k: int) -> dict[str, Any]:
        """Search parameters for a top-*k* search (HNSW wants ef >= k)."""
        params = dict(self.search_params)
        if self.index_type == "HNSW":
            params["ef"] = max(int(params.get("ef", 0)), k)
        return params


def image_id(path: str) -> str:
    """Stable row id of an image path (the primary key): writing a path twice replaces its row."""
    return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def is_local_uri(uri: str) -> bool:
    """True when *uri* names an embedded Milvus Lite file rather than a server."""
    return not re.match(r"^(https?|tcp|grpc|unix)://", uri)


def policy_for(uri: str) -> IndexPolicy:
    """The measured index/search configuration for the backend behind *uri*."""
    if is_local_uri(uri):
        # Milvus Lite 2.5 (C++ engine) offers FLAT, IVF_FLAT and AUTOINDEX. Measured at 100k CLIP-like
        # vectors: IVF_FLAT and AUTOINDEX answer in ~2 ms but find only 61% of the true top-10, whatever
        # nprobe/ef or limit is asked (Lite keeps rows in growing segments, searched through an interim
        # index with fixed parameters). FLAT is exact (recall 1.0) at ~16 ms: correctness wins.
        return IndexPolicy(backend="milvus-lite", index_type="FLAT", index_params={},
                           search_params={}, insert_batch=1000)
    # A Milvus server (measured on standalone 2.3.5). A Strong read waits for the next time tick
    # (~200 ms per call); Session reads this client's own writes at once (~3 ms), and others'
    # within a time tick: right for searches and id lookups, while the listing that decides what
    # an index run writes stays Strong, in big pages. A flush costs 0.5-3.5 s per call and is not
    # needed: acknowledged writes are already durable and searchable; the server seals segments.
    return IndexPolicy(backend="milvus-server", index_type="HNSW", index_params={"M": 16, "efConstruction": 200},
                       search_params={"ef": 128}, insert_batch=5000, search_consistency="Session",
                       page=10000, flush=False)


def collection_name_for(model_id: str) -> str:
    """Default collection of a model: Milvus names allow letters, digits and underscores."""
    return "pixsearch_" + re.sub(r"[^0-9A-Za-z_]", "_", model_id)[:200]


def quote(value: str) -> str:
    """A Milvus filter-expression string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def path_prefix_filter(prefix: str) -> str:
    """Filter for exactly the rows whose path is *prefix* or lies under it.

    A string range, not ``like``: ``like`` has no reliable escape on either backend
    (Milvus Lite 2.5 treats ``_`` and ``%`` as wildcards and crashes on ``\\_``;
    Milvus 2.3 refuses an inner ``%``). Every path under ``P/`` sorts at or after
    ``"P/"`` and before ``"P0"``, since ``0`` follows ``/`` in byte order.
    """
    folder = prefix.rstrip("/")
    return f"path == {quote(folder or '/')} or (path >= {quote(folder + '/')} and path < {quote(folder + '0')})"


def is_under(path: str, prefix: str) -> bool:
    """path_prefix_filter for one path, in Python."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


@dataclass
class Hit:
    id: str
    score: float
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.fields.get("path", "")


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model_id: str
    model: str
    """What to pass as --model to query this collection."""
    dim: int
    count: int
    backend: str


def _parse_description(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or "pixsearch" not in data or not {"model_id", "dim"} <= data.keys():
        return None
    return data


class _Client:
    """MilvusClient with a deadline on every call, and its failures as one-line StoreErrors.

    Without a per-call timeout pymilvus retries an unreachable server for minutes.
    """

    UNTIMED = frozenset({"prepare_index_params", "close"})

    def __init__(self, client: Any, uri: str, timeout: float):
        self._client, self._uri, self._timeout = client, uri, timeout

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method) or name in self.UNTIMED:
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", self._timeout)
            try:
                return method(*args, **kwargs)
            except StoreError:
                raise
            except Exception as exc:
                if not _is_milvus_error(exc):
                    raise
                raise StoreError(_describe_failure(self._uri, name, exc)) from exc

        return call


def _is_milvus_error(exc: BaseException) -> bool:
    from pymilvus.exceptions import MilvusException

    try:
        import grpc
    except ImportError:  # pragma: no cover - pymilvus depends on grpc
        return isinstance(exc, MilvusException)
    return isinstance(exc, (MilvusException, grpc.RpcError))


def _grpc_code(exc: BaseException) -> str:
    """The gRPC status name behind a pymilvus error (UNAVAILABLE, UNAUTHENTICATED...), if any."""
    visited: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in visited:  # pymilvus does `raise e from e`
        visited.add(id(current))
        code = getattr(current, "code", None)
        if callable(code):
            try:
                return str(getattr(code(), "name", code()))
            except Exception:
                return ""
        current = current.__cause__ or current.__context__
    return ""


def _describe_failure(uri: str, operation: str, exc: BaseException) -> str:
    message = _short(exc)
    grpc_code = _grpc_code(exc)
    if grpc_code == "UNAUTHENTICATED" or ("auth" in message.lower() and "fail" in message.lower()):
        return f"Milvus at {uri} refused the credentials ({message}); pass the right --token (user:password or API key)"
    if grpc_code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") or "unavailable" in message or "Retry timeout" in message:
        return f"lost the connection to Milvus at {uri} during {operation} ({message}); is the server still running?"
    if "database not found" in message:
        return f"{uri}: {message}; create that database on the server or fix --db"
    return f"Milvus at {uri} failed during {operation}: {message}"


class Store:
    """A connection to one Milvus deployment; methods act on one collection."""

    def __init__(self, uri: str, token: str = "", collection: str = "", timeout: float = 30.0):
        self.uri = uri
        self.collection = collection
        self.policy = policy_for(uri)
        self._lite_file = str(Path(uri).expanduser().absolute().resolve()) if is_local_uri(uri) else ""
        self._client = _Client(self._connect(uri, token, timeout), uri, timeout)
        if not is_local_uri(uri):
            self._client.list_collections()  # fail now, in one line, on a missing database or a denied user

    @staticmethod
    def _connect(uri: str, token: str, timeout: float):
        import logging

        from pymilvus import MilvusClient

        # pymilvus logs a traceback for every failed call; the Store raises a StoreError saying it instead.
        logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)

        if is_local_uri(uri):
            path = Path(uri).expanduser()
            if path.parent and not path.parent.exists():
                raise StoreError(f"cannot create database {uri}: folder {path.parent} does not exist")
            uri = str(path)
        if is_local_uri(uri):
            _refuse_if_in_use(Path(uri))
        try:
            client = MilvusClient(uri=uri, token=token or "", timeout=timeout)
            if is_local_uri(uri):
                _retain_lite(str(Path(uri).absolute().resolve()))  # released by Store.close
            return client
        except Exception as exc:
            code = _grpc_code(exc)
            if is_local_uri(uri):
                hint = "check that the file's folder is writable"
            elif code == "UNAUTHENTICATED":
                hint = "the server refused the credentials: pass the right --token (user:password or API key)"
            elif code == "UNAVAILABLE":
                hint = "nothing answers as Milvus there: check the address and that the server is running"
            else:
                hint = "check that Milvus is running there and that --token is right"
            cause = exc.__cause__
            detail = _short(exc) + (f" ({_short_grpc(cause)})" if code and cause is not None else "")
            raise StoreError(f"cannot open Milvus at {uri}: {detail}; {hint}") from exc

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass
        if self._lite_file:
            _release_lite(self._lite_file)
            self._lite_file = ""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ collections

    def collections(self) -> list[CollectionInfo]:
        """Every pixsearch collection in this database."""
        infos = []
        for name in self._client.list_collections():
            info = self.info(name)
            if info is not None:
                infos.append(info)
        return infos

    def info(self, name: str | None = None) -> CollectionInfo | None:
        """Facts about a pixsearch collection, or None if it does not exist or is not ours."""
        name = name or self.collection
        if not self._client.has_collection(name):
            return None
        meta = _parse_description(self._client.describe_collection(name).get("description", ""))
        if meta is None:
            return None
        return CollectionInfo(name=name, model_id=meta["model_id"], model=meta.get("model", meta["model_id"]),
                              dim=int(meta["dim"]), count=self._count(name), backend=self.policy.backend)

    def _count(self, name: str) -> int:
        rows = self._client.query(name, filter="", output_fields=["count(*)"],
                                  consistency_level=self.policy.consistency)
        return int(rows[0]["count(*)"]) if rows else 0

    def count(self) -> int:
        return self._count(self.collection)

    def ensure_collection(self, model_id: str, model: str, dim: int) -> None:
        """Create the collection for *model_id*, or check that the existing one belongs to it."""
        info = self.info()
        if info is not None:
            if info.model_id != model_id or info.dim != dim:
                raise StoreError(
                    f"collection {self.collection!r} in {self.uri} holds embeddings of model {info.model_id!r} "
                    f"(dim {info.dim}), not {model_id!r} (dim {dim}); pixsearch never mixes models. Use "
                    f"--model {info.model} to work with it, or --collection NEW to index this model separately."
                )
            return
        if self._client.has_collection(self.collection):
            raise StoreError(f"collection {self.collection!r} in {self.uri} was not made by pixsearch; "
                             "pass another --collection")
        self._create(model_id, model, dim)

    def _create(self, model_id: str, model: str, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description=json.dumps({"pixsearch": 1, "model_id": model_id,
                                                                    "model": model, "dim": dim}))
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=32)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH)
        schema.add_field("label", DataType.VARCHAR, max_length=MAX_LABEL)
        schema.add_field("size", DataType.INT64)
        schema.add_field("mtime", DataType.DOUBLE)
        schema.add_field("width", DataType.INT64)
        schema.add_field("height", DataType.INT64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("indexed_at", DataType.DOUBLE)
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.policy.index_type, metric_type="IP",
                        params=self.policy.index_params)
        self._client.create_collection(self.collection, schema=schema, index_params=index,
                                       consistency_level=self.policy.consistency)

    def drop(self) -> None:
        """Drop the collection and its skip log."""
        SkipLog(self).drop()
        self._client.drop_collection(self.collection)

    # ------------------------------------------------------------------ writes

    def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace rows (each with every field and ``vector``), in backend-sized batches."""
        step = self.policy.insert_batch
        for start in range(0, len(rows), step):
            chunk = [_clean_row(r) for r in rows[start:start + step]]
            self._client.upsert(self.collection, chunk)

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        for start in range(0, len(ids), 1000):
            self._client.delete(self.collection, ids=ids[start:start + 1000])
        return len(ids)

    def flush(self) -> None:
        """Seal what was written so searches use the index instead of scanning growing rows.

        Only where the policy says it pays (a server seals segments itself; flushing costs seconds).
        """
        if not self.policy.flush:
            return
        try:
            self._client.flush(self.collection)
        except Exception:
            pass

    # ------------------------------------------------------------------ reads

    def get(self, ids: Sequence[str], with_vectors: bool = False) -> list[dict[str, Any]]:
        if not ids:
            return []
        fields = list(FIELDS) + (["vector"] if with_vectors else [])
        return [_plain(r) for r in self._client.get(self.collection, ids=list(ids), output_fields=fields,
                                                     consistency_level=self.policy.search_consistency)]

    def iter_rows(self, fields: Sequence[str] = FIELDS, filter: str = "", page: int = 0,
                  collection: str = "") -> Iterator[dict]:
        """Every row matching *filter*, page by page in primary-key order (memory stays flat)."""
        page = page or self.policy.page
        last = ""
        while True:
            condition = f"id > {quote(last)}" + (f" and ({filter})" if filter else "")
            rows = self._client.query(collection or self.collection, filter=condition,
                                      output_fields=list(dict.fromkeys(["id", *fields])),
                                      limit=page, consistency_level=self.policy.consistency)
            if not rows:
                return
            rows.sort(key=lambda r: r["id"])
            yield from (_plain(r) for r in rows)
            if len(rows) < page:
                return
            last = rows[-1]["id"]

    def iter_under(self, prefix: str, fields: Sequence[str] = FIELDS) -> Iterator[dict]:
        """Every row whose path is *prefix* or lies under it."""
        yield from self.iter_rows(tuple(dict.fromkeys(["path", *fields])), filter=path_prefix_filter(prefix))

    def search(self, vectors: np.ndarray, k: int, filter: str = "", min_score: float | None = None,
               output_fields: Sequence[str] = FIELDS) -> list[list[Hit]]:
        """Top-*k* rows by inner product (= cosine for unit vectors) for each query vector."""
        vectors = np.asarray(vectors, dtype=np.float32)
        results = self._client.search(
            self.collection, data=vectors.tolist(), limit=k, filter=filter,
            output_fields=list(output_fields),
            search_params={"metric_type": "IP", "params": self.policy.search_params_for(k)},
            consistency_level=self.policy.search_consistency,
        )
        out = []
        for hits in results:
            row = []
            for hit in hits:
                entity = dict(hit.get("entity", {}) or {})
                hit_id = hit.get("id", entity.get("id"))
                score = float(hit.get("distance", hit.get("score", 0.0)))
                if min_score is not None and score < min_score:
                    continue
                entity.setdefault("id", hit_id)
                row.append(Hit(id=str(hit_id), score=score, fields=_plain(entity)))
            out.append(row)
        return out


class SkipLog:
    """Files that could not be indexed, with the reason, kept in a companion collection.

    A skipped file is retried only when its size or mtime changes, and
    ``pixsearch stats --skipped`` lists them. (Milvus wants a vector in every
    collection; this one carries a constant 2-d placeholder.)
    """

    FIELDS = ("path", "size", "mtime", "reason", "seen_at")

    def __init__(self, store: Store, collection: str = ""):
        self.store = store
        self.name = f"{collection or store.collection}__skipped"

    def _ensure(self) -> None:
        from pymilvus import DataType, MilvusClient

        client = self.store._client
        if client.has_collection(self.name):
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description=json.dumps({"pixsearch_skipped": 1}))
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=32)
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH)
        schema.add_field("size", DataType.INT64)
        schema.add_field("mtime", DataType.DOUBLE)
        schema.add_field("reason", DataType.VARCHAR, max_length=1024)
        schema.add_field("seen_at", DataType.DOUBLE)
        index = client.prepare_index_params()
        index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
        client.create_collection(self.name, schema=schema, index_params=index,
                                 consistency_level=self.store.policy.consistency)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every skipped file, by path."""
        if not self.store._client.has_collection(self.name):
            return {}
        return {row["path"]: row for row in self.store.iter_rows(self.FIELDS, collection=self.name)}

    def record(self, entries: Sequence[tuple[str, int, float, str]]) -> None:
        """Remember (path, size, mtime, reason) of files that failed."""
        if not entries:
            return
        self._ensure()
        now = time.time()
        rows = [{"id": image_id(path), "placeholder": [0.0, 0.0], "path": path[:MAX_PATH], "size": int(size),
                 "mtime": float(mtime), "reason": reason[:1024], "seen_at": now} for path, size, mtime, reason in entries]
        step = self.store.policy.insert_batch
        for start in range(0, len(rows), step):
            self.store._client.upsert(self.name, rows[start:start + step])

    def forget(self, paths: Iterable[str]) -> None:
        ids = [image_id(p) for p in paths]
        if ids and self.store._client.has_collection(self.name):
            for start in range(0, len(ids), 1000):
                self.store._client.delete(self.name, ids=ids[start:start + 1000])

    def drop(self) -> None:
        if self.store._client.has_collection(self.name):
            self.store._client.drop_collection(self.name)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A query row as plain Python values (vectors as float32 arrays)."""
    out = dict(row)
    if "vector" in out and out["vector"] is not None:
        out["vector"] = np.asarray(out["vector"], dtype=np.float32)
    return out


def _clean_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row[name] for name in FIELDS}
    out["path"] = str(out["path"])[:MAX_PATH]
    out["label"] = str(out.get("label") or "")[:MAX_LABEL]
    out["indexed_at"] = float(out.get("indexed_at") or time.time())
    vector = row["vector"]
    out["vector"] = vector.tolist() if isinstance(vector, np.ndarray) else list(vector)
    return out


_LITE_USERS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()


def _retain_lite(path: str) -> None:
    with _LITE_LOCK:
        _LITE_USERS[path] = _LITE_USERS.get(path, 0) + 1


def _release_lite(path: str) -> None:
    """Stop the Milvus Lite engine of *path* when the last Store on it closes.

    Closing a MilvusClient leaves Lite's engine process (~100 MB) running until
    the Python process exits; a server or a test suite opens many files.
    """
    with _LITE_LOCK:
        _LITE_USERS[path] -= 1
        if _LITE_USERS[path] > 0:
            return
        del _LITE_USERS[path]
    try:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)
    except Exception:
        pass


def _refuse_if_in_use(db_file: Path) -> None:
    """Fail clearly when another process has this Milvus Lite file open.

    Milvus Lite serves a file from one process at a time. Letting it find that out
    itself is worse than an unclear error: its failed attempt deletes the other
    process's lock file on clean-up. So pixsearch tries the same lock first, unless
    this process already serves the file (closing a probe fd would drop our own lock).
    """
    import fcntl

    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    resolved = db_file.absolute().resolve()
    servers = getattr(server_manager_instance, "_servers", None)
    if servers is None or str(resolved) in servers:
        return
    lock = resolved.parent / f".{resolved.name}.lock"
    if not lock.exists():
        return
    with lock.open("a") as fh:
        try:
            fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StoreError(
                f"{db_file} is in use by another program (Milvus Lite opens a file in one process at a time). "
                "Wait for it, search through its `pixsearch serve`, or use a Milvus server "
                "(--db http://host:19530) for concurrent access."
            ) from None
        fcntl.lockf(fh, fcntl.LOCK_UN)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _short_grpc(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = details() if callable(details) else str(exc)
    return (str(text).strip().splitlines() or [type(exc).__name__])[0][:200]
