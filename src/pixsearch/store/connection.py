"""``Store``: a connection to one Milvus deployment, bound to one image collection for life.

The same code serves the embedded Milvus Lite file (``./pixsearch.db``), a Milvus
standalone server and a cluster (``http://host:19530`` plus a token); what differs
between them is in ``policy.policy_for``. A Store's collection never changes: ``bind``
gives another Store, on the same connection, for another name.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .client import MilvusCalls, open_failure
from .collection import Collection, CollectionInfo
from .errors import StoreError
from .lite import GRPC_OPTIONS, check_name, lite_path, refuse_if_in_use, release_lite, retain_lite, start_engine
from .migrations import MIGRATING_SUFFIX, ensure_version
from .policy import IndexPolicy, is_local_uri, policy_for


class _Link:
    """The MilvusClient (and the Milvus Lite engine it holds) that a Store and its bound copies share."""

    def __init__(self, calls: MilvusCalls, lite_file: str):
        self.calls, self.lite_file = calls, lite_file

    def close(self) -> None:
        """Close the client and let go of the Lite engine; closing twice does nothing more."""
        self.calls.close()
        if self.lite_file:
            release_lite(self.lite_file)
            self.lite_file = ""


class Store(Collection):
    """A connection to one Milvus deployment; the collection methods act on ``collection``.

    Binding to a collection checks its schema version: an older one is migrated (``migrations``),
    a newer one refused.
    """

    def __init__(self, uri: str, token: str = "", collection: str = "", timeout: float = 30.0):
        lite_file = str(lite_path(uri)) if is_local_uri(uri) else ""
        link = _Link(MilvusCalls(_connect(uri, token, timeout), uri, timeout), lite_file)
        try:
            policy = None
            if not is_local_uri(uri):
                link.calls.list_collections()  # fail now, in one line, on a missing database or a denied user
                policy = policy_for(uri, link.calls.server_version())
            self._bind(link, collection, policy)
        except BaseException:
            link.close()
            raise

    def _bind(self, link: _Link, name: str, policy: IndexPolicy | None = None) -> None:
        Collection.__init__(self, link.calls, policy or policy_for(link.calls.uri), name)
        self._link = link
        if name:
            ensure_version(self)

    def bind(self, name: str) -> Store:
        """A Store on this same connection, bound to collection *name*. Close one of the two, not both:
        they share the connection (closing twice is harmless)."""
        bound = Store.__new__(Store)
        bound._bind(self._link, name, self.policy)
        return bound

    @property
    def collection(self) -> str:
        """The name of the collection the row methods act on (fixed for this Store's life)."""
        return self.name

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ collections

    def collections(self, count: bool = True) -> list[CollectionInfo]:
        """Every pixsearch collection in this database (not the companions: skip logs, migration copies).

        *count*: with their row counts, for showing; choosing a collection needs none.
        """
        infos = []
        for name in self._calls.list_collections():
            info = None if name.endswith(MIGRATING_SUFFIX) else self.info(name, count=count)
            if info is not None:
                infos.append(info)
        return infos

    def info(self, name: str | None = None, *, count: bool = False) -> CollectionInfo | None:
        """Facts about a pixsearch collection (this Store's, or *name*), or None if it does not exist or is
        not ours; *count*: with its row count."""
        if not name or name == self.name:
            return Collection.info(self, count=count)
        return self.other(name).info(count=count)

    def other(self, name: str) -> Collection:
        """Collection *name* on this connection, unchecked (listing, dropping)."""
        return Collection(self._calls, self.policy, name)

    def drop_collection(self, name: str) -> None:
        """Drop collection *name* and its skip log."""
        self.other(name).drop()


def _connect(uri: str, token: str, timeout: float) -> Any:
    from pymilvus import MilvusClient

    # pymilvus logs a traceback for every failed call; the Store raises a StoreError saying it instead.
    logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
    if is_local_uri(uri):
        return _connect_lite(uri, timeout)
    try:
        return MilvusClient(uri=uri, token=token or "", timeout=timeout)
    except Exception as exc:  # pymilvus raises many kinds for a bad address; each becomes one line
        raise open_failure(uri, exc, local=False) from exc


def _connect_lite(uri: str, timeout: float) -> Any:
    """A dedicated gRPC connection to the Milvus Lite engine of file *uri*, started and waited for here."""
    from pymilvus import MilvusClient

    path = Path(uri).expanduser()
    if path.parent and not path.parent.exists():
        raise StoreError(f"cannot create database {uri}: folder {path.parent} does not exist")
    db_file = lite_path(uri)
    if db_file.exists() and not db_file.is_file():
        raise StoreError(f"cannot use {db_file} as a Milvus Lite database: it is not a file (a folder?); "
                         "pass the path of a .db file")
    check_name(db_file)
    refuse_if_in_use(db_file)
    started = time.monotonic()
    address = start_engine(db_file, timeout)
    retain_lite(str(db_file))  # released by Store.close
    try:
        return MilvusClient(uri=address, timeout=max(1.0, timeout - (time.monotonic() - started)),
                            dedicated=True, grpc_options=GRPC_OPTIONS)
    except Exception as exc:
        release_lite(str(db_file))
        raise open_failure(str(path), exc, local=True) from exc
