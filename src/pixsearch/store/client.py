"""The MilvusClient calls pixsearch makes, typed, each with a deadline and one-line errors.

pymilvus is untyped and, without a per-call timeout, retries an unreachable server for
minutes; its failures are gRPC or Milvus exceptions with multi-line texts. ``MilvusCalls``
offers exactly the calls the store uses, passes every one a timeout, and turns a Milvus
or gRPC failure into a ``StoreError`` that says what failed and what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import StoreError

T = TypeVar("T")


class MilvusCalls:
    """One MilvusClient (one connection) and the uri it was opened on, for messages."""

    def __init__(self, client: Any, uri: str, timeout: float):
        self._client, self.uri, self.timeout = client, uri, timeout

    def _call(self, operation: str, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        kwargs.setdefault("timeout", self.timeout)
        try:
            return method(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            if not is_milvus_error(exc):
                raise
            raise StoreError(describe_failure(self.uri, operation, exc)) from exc

    # ------------------------------------------------------------------ collections

    def list_collections(self) -> list[str]:
        return [str(name) for name in self._call("list_collections", self._client.list_collections)]

    def server_version(self) -> str:
        """The server's version string (e.g. ``v2.3.5``), which decides the features a server gets."""
        return str(self._call("get_server_version", self._client.get_server_version))

    def has_collection(self, name: str) -> bool:
        return bool(self._call("has_collection", self._client.has_collection, name))

    def describe_collection(self, name: str) -> dict[str, Any]:
        return dict(self._call("describe_collection", self._client.describe_collection, name))

    def prepare_index_params(self) -> Any:
        """pymilvus' IndexParams builder (local, no call to the server)."""
        return self._client.prepare_index_params()

    def create_collection(self, name: str, schema: Any, index_params: Any, consistency_level: str) -> None:
        self._call("create_collection", self._client.create_collection, name, schema=schema,
                   index_params=index_params, consistency_level=consistency_level)

    def drop_collection(self, name: str) -> None:
        self._call("drop_collection", self._client.drop_collection, name)

    def describe_index(self, name: str, field: str) -> dict[str, Any]:
        return dict(self._call("describe_index", self._client.describe_index, name, field))

    def load_collection(self, name: str) -> None:
        self._call("load_collection", self._client.load_collection, name)

    def release_collection(self, name: str) -> None:
        self._call("release_collection", self._client.release_collection, name)

    # ------------------------------------------------------------------ rows

    def upsert(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        self._call("upsert", self._client.upsert, name, list(rows))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        self._call("delete", self._client.delete, name, ids=list(ids))

    def flush(self, name: str) -> None:
        self._call("flush", self._client.flush, name)

    def get(self, name: str, ids: Sequence[str], output_fields: Sequence[str],
            consistency_level: str) -> list[dict[str, Any]]:
        rows = self._call("get", self._client.get, name, ids=list(ids), output_fields=list(output_fields),
                          consistency_level=consistency_level)
        return [dict(row) for row in rows]

    def query(self, name: str, filter: str, output_fields: Sequence[str], consistency_level: str,
              limit: int | None = None) -> list[dict[str, Any]]:
        extra: dict[str, Any] = {} if limit is None else {"limit": limit}
        rows = self._call("query", self._client.query, name, filter=filter, output_fields=list(output_fields),
                          consistency_level=consistency_level, **extra)
        return [dict(row) for row in rows]

    def search(self, name: str, data: Sequence[Any], limit: int, filter: str, output_fields: Sequence[str],
               search_params: dict[str, Any], consistency_level: str,
               anns_field: str = "vector") -> list[list[dict[str, Any]]]:
        """*data*: float lists for a float vector field, bytes for a binary one; *anns_field*: which vector
        field (always named: an image collection with OCR text on Lite has a sparse one too)."""
        results = self._call("search", self._client.search, name, data=list(data), limit=limit, filter=filter,
                             output_fields=list(output_fields), search_params=search_params, anns_field=anns_field,
                             consistency_level=consistency_level)
        return [[dict(hit) for hit in hits] for hits in results]

    def hybrid_search(self, name: str, requests: Sequence[Any], ranker: Any, limit: int,
                      output_fields: Sequence[str], consistency_level: str) -> list[list[dict[str, Any]]]:
        """Several searches (pymilvus AnnSearchRequests) fused by *ranker* into one ranking each."""
        results = self._call("hybrid_search", self._client.hybrid_search, name, list(requests), ranker,
                             limit=limit, output_fields=list(output_fields), consistency_level=consistency_level)
        return [[dict(hit) for hit in hits] for hits in results]

    def close(self) -> None:
        """Close the connection; a failure to close one that is gone already is no news."""
        try:
            self._client.close()
        except Exception:
            pass


def is_milvus_error(exc: BaseException) -> bool:
    """True for the failures pymilvus reports (Milvus' own, or the gRPC transport's)."""
    from pymilvus.exceptions import MilvusException

    try:
        import grpc
    except ImportError:  # pragma: no cover - pymilvus depends on grpc
        return isinstance(exc, MilvusException)
    return isinstance(exc, (MilvusException, grpc.RpcError))


def grpc_code(exc: BaseException) -> str:
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


def describe_failure(uri: str, operation: str, exc: BaseException) -> str:
    """One line saying what failed during *operation* and what to do about it."""
    message = short(exc)
    code = grpc_code(exc)
    if code == "UNAUTHENTICATED" or ("auth" in message.lower() and "fail" in message.lower()):
        return f"Milvus at {uri} refused the credentials ({message}); pass the right --token (user:password or API key)"
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED") or "unavailable" in message or "Retry timeout" in message:
        return f"lost the connection to Milvus at {uri} during {operation} ({message}); is the server still running?"
    if "database not found" in message:
        return f"{uri}: {message}; create that database on the server or fix --db"
    return f"Milvus at {uri} failed during {operation}: {message}"


def open_failure(uri: str, exc: BaseException, local: bool) -> StoreError:
    """The error for a connection that could not be opened at all."""
    code = grpc_code(exc)
    if local:
        hint = "check that the file's folder is writable"
    elif code == "UNAUTHENTICATED":
        hint = "the server refused the credentials: pass the right --token (user:password or API key)"
    elif code == "UNAVAILABLE":
        hint = "nothing answers as Milvus there: check the address and that the server is running"
    else:
        hint = "check that Milvus is running there and that --token is right"
    cause = exc.__cause__
    detail = short(exc) + (f" ({short_grpc(cause)})" if code and cause is not None else "")
    return StoreError(f"cannot open Milvus at {uri}: {detail}; {hint}")


def short(exc: BaseException) -> str:
    """The first line of an exception's message, bounded."""
    text = str(getattr(exc, "message", "") or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def short_grpc(exc: BaseException) -> str:
    """The first line of a gRPC error's details, bounded."""
    details = getattr(exc, "details", None)
    text = details() if callable(details) else str(exc)
    return (str(text).strip().splitlines() or [type(exc).__name__])[0][:200]
