"""Open the store and the model that belong together, the same way for every entry point.

Which collection and model a command uses:
1. ``--collection`` given: that collection, with the model it records (``--model`` must agree).
2. ``--model`` given: that model's own collection.
3. neither: the database's only pixsearch collection; with none yet, the default model.

Commands that only read (search, stats, remove) never create a database: a Milvus Lite file
that does not exist yet means nothing is indexed. Indexing into a new file loads the model
first, so a model that fails to load leaves no empty database behind either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_MODEL, ConfigError, Settings
from .indexer import Indexer
from .models import Embedder, ModelError, ModelSpec, load_embedder, load_spec
from .models.ref import parse_model_ref
from .store import CollectionInfo, Store, StoreError, collection_name_for, is_local_uri

StageCallback = Callable[[str], None]
"""Told, before it starts, about a slow first-use step (converting, downloading) in one line."""


@dataclass
class Workspace:
    store: Store
    embedder: Embedder
    model: str
    """The --model value that reproduces this embedder (recorded in the collection)."""
    spec: ModelSpec | None = None
    """The model's spec as loaded (variants included), for ``auto_precision``."""

    def close(self) -> None:
        self.store.close()


def new_indexer(workspace: Workspace, settings: Settings) -> Indexer:
    """The Indexer every entry point uses (CLI, server, eval), configured from *settings* alike."""
    return Indexer(workspace.store, workspace.embedder, batch_size=settings.batch_size, workers=settings.workers,
                   max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)


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
    collections = store.collections(count=False) if collections is None else collections
    if len(collections) == 1:
        return collections[0].model, collections[0]
    if len(collections) > 1:
        names = ", ".join(f"{c.name} (--model {c.model})" for c in collections)
        raise StoreError(f"{store.uri} holds several collections: {names}; say which with --model or --collection")
    return DEFAULT_MODEL, None


def database_exists(uri: str) -> bool:
    """False only for a Milvus Lite file that is not there yet (a server always "exists")."""
    return not is_local_uri(uri) or Path(uri).expanduser().exists()


def _nothing_indexed(settings: Settings) -> StoreError:
    return StoreError(f"nothing indexed yet in {settings.db}: run `pixsearch index PATH` first")


def first_use_step(model: str, cache_dir: Path) -> str | None:
    """What loading *model* must do first that takes a while, in words; None when it is ready.

    A transformers checkpoint is converted to ONNX once (tens of seconds for ViT-B), a hub model
    downloaded once; both are cached, so this says so only the first time.
    """
    from .models.convert import converted_dir
    from .models.spec import detect_layout

    try:
        ref = parse_model_ref(model)
        if ref.kind == "folder" and ref.path is not None:
            layout = detect_layout(ref.path)
            if layout == "transformers" and not (converted_dir(ref.path, cache_dir) / "pixsearch.json").is_file():
                return f"converting the transformers checkpoint {ref.path} to ONNX (first use only, then cached)"
            return None
    except ModelError:
        return None  # load_spec says what is wrong with the value or the folder
    if ref.repo and not (cache_dir / "hub" / f"models--{ref.repo.replace('/', '--')}").is_dir():
        return f"downloading {ref.repo} from the Hugging Face hub (first use only, then cached)"
    return None


def _load_spec(model: str, cache_dir: Path, on_stage: StageCallback | None) -> ModelSpec:
    step = first_use_step(model, cache_dir) if on_stage else None
    if step and on_stage:
        on_stage(step)
    return load_spec(model, cache_dir)


def open_collection(settings: Settings) -> Store:
    """The store on an existing collection, for commands that need no model (remove).

    The model is resolved only when the database cannot say which collection is meant.
    """
    if not database_exists(settings.db):
        raise _nothing_indexed(settings)
    store = Store(settings.db, token=settings.token)
    try:
        model, info = choose_model(settings, store)
        if info is None and not settings.collection:
            spec = load_spec(model, Path(settings.cache_dir).expanduser())
            info = store.info(collection_name_for(spec.model_id))
        name = settings.collection or (info.name if info else "")
        if not name or store.info(name) is None:
            raise StoreError(f"nothing indexed yet in {settings.db} for that model or collection")
        return store.bind(name)
    except BaseException:
        store.close()
        raise


def open_workspace(settings: Settings, create: bool = False, on_stage: StageCallback | None = None) -> Workspace:
    """Store + embedder for a command. *create*: make the collection if missing (indexing).

    *on_stage* hears about slow first-use steps (see ``first_use_step``) before they start.
    """
    cache_dir = Path(settings.cache_dir).expanduser()
    if not database_exists(settings.db):
        if not create:
            raise _nothing_indexed(settings)
        return _open_new(settings, cache_dir, on_stage)
    store = Store(settings.db, token=settings.token)
    try:
        collections = None if create else store.collections(count=False)
        if collections == []:
            raise _nothing_indexed(settings)
        model, info = choose_model(settings, store, collections)
        spec = _load_spec(model, cache_dir, on_stage)
        store = store.bind(settings.collection or (info.name if info else collection_name_for(spec.model_id)))
        reference = parse_model_ref(model).recorded
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
        embedder = load_embedder(model, cache_dir, threads=settings.threads, precision=settings.precision, spec=spec,
                                 backend=settings.backend)
        return Workspace(store=store, embedder=embedder, model=reference, spec=spec)
    except BaseException:
        store.close()
        raise


def _open_new(settings: Settings, cache_dir: Path, on_stage: StageCallback | None) -> Workspace:
    """Index into a database file that does not exist yet: the model loads before the file is made."""
    model = settings.model or DEFAULT_MODEL
    spec = _load_spec(model, cache_dir, on_stage)
    embedder = load_embedder(model, cache_dir, threads=settings.threads, precision=settings.precision, spec=spec,
                             backend=settings.backend)
    store = Store(settings.db, token=settings.token)
    try:
        store = store.bind(settings.collection or collection_name_for(spec.model_id))
        reference = parse_model_ref(model).recorded
        store.ensure_collection(spec.model_id, reference, spec.dim)
        return Workspace(store=store, embedder=embedder, model=reference, spec=spec)
    except BaseException:
        store.close()
        raise


MEASURING = "measuring the fastest verified precision (first index of this model on this machine, then cached)"


def auto_precision(ws: Workspace, settings: Settings, new_images: int, samples: Callable[[], Sequence[Path]],
                   on_stage: StageCallback | None = None) -> str | None:
    """With ``--precision auto``, settle which variant this indexing run uses, before its first batch.

    Returns the one line that says what was chosen and why (None: nothing to say). A decision
    measured on this machine before is reused; a run with at least ``precision_min_images`` new
    images and none yet builds, verifies and times the candidates on ``samples()`` (the user's
    images, asked for only then; ``models.autotune``), records the decision and replaces ``ws.embedder``; smaller
    runs stay fp32. Callers hand the new ``ws.embedder`` to their Indexer.
    """
    from .models.autotune import SAMPLE_IMAGES, measure
    from .models.loader import machine_decision
    from .models.variants import with_overlay

    if settings.precision != "auto" or ws.spec is None or new_images <= 0:
        return None
    cache_dir = Path(settings.cache_dir).expanduser()
    decision = machine_decision(ws.spec, cache_dir, settings.threads)
    if decision is not None:
        when = time.strftime("%Y-%m-%d", time.localtime(decision.measured_at))
        return f"{decision.reason} (measured on this machine {when})"
    if new_images < settings.precision_min_images:
        if ws.embedder.variant != "fp32":  # made by `pixsearch quantize` (or measured on another machine)
            return (f"{ws.embedder.variant}: the verified variant in the cache (timed on this machine once a run "
                    f"has ~{settings.precision_min_images} new images)")
        return (f"fp32: {new_images} images is below the ~{settings.precision_min_images} where building an "
                "INT8 variant pays off (--precision int8 after `pixsearch quantize` forces it)")
    from .models.quantize import MIN_COSINE

    if settings.precision_min_cosine < MIN_COSINE:
        raise ConfigError(f"precision_min_cosine {settings.precision_min_cosine} is below {MIN_COSINE}: automatic "
                          "precision never accepts less agreement with fp32")
    if on_stage:
        on_stage(MEASURING)
    try:
        decision = measure(ws.spec, cache_dir, list(samples())[:SAMPLE_IMAGES], threads=settings.threads,
                           backend=settings.backend, min_cosine=settings.precision_min_cosine)
    except ModelError as exc:  # too few readable samples: nothing recorded, a later run measures
        return f"fp32: could not measure the INT8 variant ({exc})"
    ws.spec = with_overlay(ws.spec, cache_dir)
    ws.embedder = load_embedder(ws.model, cache_dir, threads=settings.threads, precision="auto", spec=ws.spec,
                                backend=settings.backend)
    return decision.reason
