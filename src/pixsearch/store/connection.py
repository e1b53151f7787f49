"""``Store``: a connection to one Milvus deployment, bound to one image collection.

The same code serves the embedded Milvus Lite file (``./pixsearch.db``), a Milvus
standalone server and a cluster (``http://host:19530`` plus a token); what differs
between them is in ``policy.policy_for``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .client import MilvusCalls, open_failure
from .collection import Collection, CollectionInfo
from .errors import StoreError
from .lite import lite_path, refuse_if_in_use, release_lite, retain_lite
from .policy import is_local_uri, policy_for


class Store(Collection):
    """A connection to one Milvus deployment; the collection methods act on ``collection``."""

    def __init__(self, uri: str, token: str = "", collection: str = "", timeout: float = 30.0):
        self._lite_file = str(lite_path(uri)) if is_local_uri(uri) else ""
        super().__init__(MilvusCalls(self._connect(uri, token, timeout), uri, timeout), policy_for(uri), collection)
        if not is_local_uri(uri):
            self._calls.list_collections()  # fail now, in one line, on a missing database or a denied user

    @property
    def collection(self) -> str:
        """The name of the collection the row methods act on."""
        return self.name

    @collection.setter
    def collection(self, name: str) -> None:
        self.name = name

    @staticmethod
    def _connect(uri: str, token: str, timeout: float) -> Any:
        from pymilvus import MilvusClient

        # pymilvus logs a traceback for every failed call; the Store raises a StoreError saying it instead.
        logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)

        local = is_local_uri(uri)
        if local:
            path = Path(uri).expanduser()
            if path.parent and not path.parent.exists():
                raise StoreError(f"cannot create database {uri}: folder {path.parent} does not exist")
            uri = str(path)
            refuse_if_in_use(Path(uri))
        try:
            client = MilvusClient(uri=uri, token=token or "", timeout=timeout)
            if local:
                retain_lite(str(lite_path(uri)))  # released by Store.close
            return client
        except Exception as exc:
            raise open_failure(uri, exc, local) from exc

    def close(self) -> None:
        self._calls.close()
        if self._lite_file:
            release_lite(self._lite_file)
            self._lite_file = ""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ collections

    def collections(self) -> list[CollectionInfo]:
        """Every pixsearch collection in this database."""
        infos = []
        for name in self._calls.list_collections():
            info = self.info(name)
            if info is not None:
                infos.append(info)
        return infos

    def info(self, name: str | None = None) -> CollectionInfo | None:
        """Facts about a pixsearch collection, or None if it does not exist or is not ours."""
        return Collection.info(self) if not name or name == self.name else Collection(
            self._calls, self.policy, name).info()
