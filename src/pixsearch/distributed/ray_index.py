"""``pixsearch index SOURCE --ray``: the driver decides, a Ray Data actor pool does the work.

The driver runs ``Indexer.plan`` exactly as a single-process run does (size/mtime against the
rows in Milvus, skip log), then hands the files that need work to ``map_batches`` with a callable
class: each actor opens the same collection and model once and runs ``Indexer.process_batch``
(read, hash, reuse a vector or decode + preprocess + embed with pixsearch's own code, upsert,
skip log). Rows are keyed by a hash of the path, so a batch that Ray retries after an actor died
writes the same ids again: no duplicates. The driver removes vanished rows only after every batch
returned (a moved file's donor row is still there while workers read its vector).

Ray is imported only here; ``pixsearch`` without the extra never imports this module.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import PixsearchError
from ..indexer import IndexReport, ProgressCallback, RunState
from ..sources import SourceFile
from ..store.policy import is_local_uri
from ..workspace import Workspace, new_indexer, open_workspace

COUNTED = ("added", "updated", "moved", "removed", "embedded")
BUSY_DIR_ENV = "PIXSEARCH_RAY_BUSY_DIR"
"""When set, a worker writes ``<pid>.busy`` there while it holds a batch (how a test, or an operator,
sees which worker process is mid-work)."""


class RayUnavailable(PixsearchError):
    """``--ray`` was asked for but cannot be used (extra not installed, Milvus Lite, no cluster)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable("--ray needs Ray: pip install 'pixsearch[ray]'") from exc
    return ray


def connect(address: str, num_cpus: int | None = None) -> None:
    """``auto``: join the local cluster if one runs (``ray start``), else start one in this process."""
    ray = _import_ray()
    if ray.is_initialized():
        return
    if address != "auto":
        ray.init(address=address)
        return
    try:
        ray.init(address="auto")
    except ConnectionError:
        ray.init(num_cpus=num_cpus)


class IndexWorker:
    """One Ray actor: holds the model and a store connection, indexes batches of files."""

    def __init__(self, settings: Settings, existing: dict[str, Any], known_hashes: dict[str, str],
                 skipped_before: dict[str, Any]) -> None:
        self.ws = open_workspace(settings)
        self.indexer = new_indexer(self.ws, settings)
        self.existing, self.known_hashes = _resolve(existing), _resolve(known_hashes)
        self.skipped_before = _resolve(skipped_before)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        files = [SourceFile(path=str(p), size=int(s), mtime=float(m), label=str(lab))
                 for p, s, m, lab in zip(batch["path"], batch["size"], batch["mtime"], batch["label"], strict=True)]
        state = RunState(report=IndexReport(), existing=self.existing, known_hashes=dict(self.known_hashes),
                         skipped_before=self.skipped_before)
        busy = _busy_marker()
        try:
            self.indexer.process_batch(files, state)
        finally:
            if busy is not None:
                busy.unlink(missing_ok=True)
        out: dict[str, np.ndarray] = {name: np.array([getattr(state.report, name)]) for name in COUNTED}
        out["files"] = np.array([len(files)])
        out["skipped"] = np.array([json.dumps(state.report.skipped)])
        return out


def _resolve(value: Any) -> Any:
    """Constructor arguments come as object-store references (shared once per node, not per actor)."""
    ray = _import_ray()
    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def _busy_marker() -> Path | None:
    folder = os.environ.get(BUSY_DIR_ENV)
    if not folder:
        return None
    marker = Path(folder) / f"{os.getpid()}.busy"
    marker.write_text(str(os.getpid()))
    return marker


def run_on_ray(ws: Workspace, settings: Settings, sources: Iterable[str | Path], *, address: str = "auto",
               workers: int = 1, cpus_per_worker: float = 1.0, delete: bool = True,
               progress: ProgressCallback | None = None) -> IndexReport:
    """Index *sources* into *ws*'s collection with the work spread over a Ray actor pool."""
    if is_local_uri(settings.db):
        raise RayUnavailable(f"--ray needs a Milvus server that every worker can reach (--db http://host:19530), "
                             f"not the local Milvus Lite file {settings.db}")
    ray = _import_ray()
    started = time.perf_counter()
    indexer = new_indexer(ws, settings)
    scan, todo, state = indexer.plan(sources)
    if progress:
        progress(0, len(todo))
    if todo:
        connect(address)
        worker_settings = replace(settings, collection=ws.store.collection, model=ws.model,
                                  precision=ws.embedder.variant)
        items = [{"path": f.path, "size": f.size, "mtime": f.mtime, "label": f.label} for f in todo]
        results = ray.data.from_items(items).map_batches(
            IndexWorker, batch_size=max(1, settings.batch_size), concurrency=max(1, workers),
            num_cpus=cpus_per_worker,
            fn_constructor_kwargs={"settings": worker_settings, "existing": ray.put(state.existing),
                                   "known_hashes": ray.put(state.known_hashes),
                                   "skipped_before": ray.put(state.skipped_before)},
            max_restarts=-1, max_task_retries=-1)
        done = 0
        for row in results.iter_rows():
            for name in COUNTED:
                setattr(state.report, name, getattr(state.report, name) + int(row[name]))
            state.report.skipped.extend(tuple(item) for item in json.loads(row["skipped"]))
            done += int(row["files"])
            if progress:
                progress(done, len(todo))
    return indexer.finish(scan, state, delete, started)
