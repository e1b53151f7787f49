"""Open the store and the model that belong together, the same way for every entry point.

Which collection and model a command uses:
1. ``--collection`` given: that collection, with the model it records (``--model`` must agree).
2. ``--model`` given: that model's own collection.
3. neither: the database's only pixsearch collection; with none yet, the default model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_MODEL, Settings
from .indexer import Indexer
from .models import Embedder, load_embedder, load_spec
from .store import CollectionInfo, Store, StoreError, collection_name_for


@dataclass
class Workspace:
    store: Store
    embedder: Embedder
    model: str
    """The --model value that reproduces this embedder (recorded in the collection)."""

    def close(self) -> None:
        self.store.close()


def new_indexer(workspace: Workspace, settings: Settings) -> Indexer:
    """The Indexer every entry point uses (CLI, server, eval), configured from *settings* alike."""
    return Indexer(workspace.store, workspace.embedder, batch_size=settings.batch_size, workers=settings.workers,
                   max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)


def _model_reference(name: str) -> str:
    """Local model directories are recorded as absolute paths so any working directory finds them."""
    return os.path.abspath(os.path.expanduser(name)) if Path(name).expanduser().is_dir() else name


def choose_model(settings: Settings, store: Store,
                 collections: list[CollectionInfo] | None = None) -> tuple[str, CollectionInfo | None]:
    """The model to use and, when already known, its collection (see the module doc).

    *collections*: the database's pixsearch collections, when the caller has listed them already.
    """
    if settings.collection:
        info = store.info(settings.collection)
        if info is not None:
            return settings.model or info.model, info
        return settings.model or DEFAULT_MODEL, None
    if settings.model:
        return settings.model, None
    collections = store.collections() if collections is None else collections
    if len(collections) == 1:
        return collections[0].model, collections[0]
    if len(collections) > 1:
        names = ", ".join(f"{c.name} (--model {c.model})" for c in collections)
        raise StoreError(f"{store.uri} holds several collections: {names}; say which with --model or --collection")
    return DEFAULT_MODEL, None


def open_collection(settings: Settings) -> Store:
    """The store on an existing collection, for commands that need no model (remove).

    The model is resolved only when the database cannot say which collection is meant.
    """
    store = Store(settings.db, token=settings.token)
    try:
        model, info = choose_model(settings, store)
        if info is None and not settings.collection:
            spec = load_spec(model, Path(settings.cache_dir).expanduser())
            info = store.info(collection_name_for(spec.model_id))
        store.collection = settings.collection or (info.name if info else "")
        if not store.collection or store.info() is None:
            raise StoreError(f"nothing indexed yet in {settings.db} for that model or collection")
        return store
    except BaseException:
        store.close()
        raise


def open_workspace(settings: Settings, create: bool = False) -> Workspace:
    """Store + embedder for a command. *create*: make the collection if missing (indexing)."""
    store = Store(settings.db, token=settings.token)
    try:
        collections = None if create else store.collections()
        if collections == []:
            raise StoreError(f"nothing indexed yet in {settings.db}: run `pixsearch index PATH` first")
        model, info = choose_model(settings, store, collections)
        cache_dir = Path(settings.cache_dir).expanduser()
        spec = load_spec(model, cache_dir)
        store.collection = settings.collection or (info.name if info else collection_name_for(spec.model_id))
        reference = _model_reference(model)
        if create:
            store.ensure_collection(spec.model_id, reference, spec.dim)
        else:
            existing = store.info()
            if existing is None:
                raise StoreError(f"nothing indexed yet in {settings.db} (collection {store.collection!r}); "
                                 "run `pixsearch index PATH` first")
            if existing.model_id != spec.model_id:
                raise StoreError(f"collection {store.collection!r} was indexed with model {existing.model_id!r}, "
                                 f"not {spec.model_id!r}: use --model {existing.model}")
        embedder = load_embedder(model, cache_dir, threads=settings.threads, precision=settings.precision, spec=spec)
        return Workspace(store=store, embedder=embedder, model=reference)
    except BaseException:
        store.close()
        raise
