"""``pixsearch index --ray``: a local Ray indexing into the real Milvus server gives the collection a
single-process run gives, incrementally, and survives a worker process killed mid-batch."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import sample_images

ray = pytest.importorskip("ray", reason="the ray extra: pip install '.[ray]'")

pytestmark = [pytest.mark.slow, pytest.mark.server]

FIELDS = ("path", "label", "size", "mtime", "width", "height", "content_hash", "taken_at", "taken_from")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A bounded local Ray for this module (2 CPUs, a small object store), stopped after; its workers
    mark the batch they hold in the folder it yields."""
    from pixsearch.distributed.ray_index import BUSY_DIR_ENV

    busy = tmp_path_factory.mktemp("busy")
    ray.init(num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), BUSY_DIR_ENV: str(busy)}})
    yield busy
    ray.shutdown()


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in sample_images()[:12]:
        shutil.copy2(image, folder / image.name)
    return folder


def _settings(backend, name, tiny_model):
    from pixsearch.config import Settings

    return Settings(db=backend.uri(name), token=backend.token, model=str(tiny_model),
                    cache_dir=os.environ["PIXSEARCH_CACHE_DIR"], threads=1, precision="fp32", batch_size=4)


def _index(settings, folder, ray_workers=0):
    from pixsearch.distributed.ray_index import run_on_ray
    from pixsearch.workspace import new_indexer, open_workspace

    ws = open_workspace(settings, create=True)
    try:
        if ray_workers:
            report = run_on_ray(ws, settings, [folder], workers=ray_workers)
        else:
            report = new_indexer(ws, settings).run([folder])
        rows = {r["path"]: r for r in ws.store.iter_rows((*FIELDS, "vector"))}
        ids = sorted(r["id"] for r in rows.values())
    finally:
        ws.close()
    return report, rows, ids


def _same(a, b):
    assert a.keys() == b.keys()
    for path, row in a.items():
        other = b[path]
        assert {f: row[f] for f in FIELDS} == {f: other[f] for f in FIELDS}
        va, vb = np.asarray(row["vector"]), np.asarray(other["vector"])
        assert float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb))) >= 0.9999


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_ray_equals_single_process_and_is_incremental(backend, local_ray, photos, tiny_model):
    single_report, single, single_ids = _index(_settings(backend, "single", tiny_model), photos)
    settings = _settings(backend, "ray", tiny_model)
    report, rows, ids = _index(settings, photos, ray_workers=2)
    assert (report.added, report.embedded) == (single_report.added, single_report.embedded) == (12, 12)
    assert ids == single_ids and len(ids) == len(set(ids))
    _same(rows, single)

    names = sorted(p.name for p in photos.iterdir())
    shutil.copy2(sample_images()[12], photos / "new.jpg")                  # add
    (photos / names[0]).rename(photos / "renamed.jpg")                      # rename
    (photos / names[1]).unlink()                                            # delete
    modified = photos / names[2]
    shutil.copy2(sample_images()[13], modified)                             # modify
    os.utime(modified, (time.time() + 5, time.time() + 5))
    report, rows, _ = _index(settings, photos, ray_workers=2)
    assert (report.added, report.updated, report.moved, report.removed, report.unchanged) == (1, 1, 1, 2, 9)
    assert report.embedded == 2                                             # the rename reused its vector
    _, single, _ = _index(_settings(backend, "single", tiny_model), photos)
    _same(rows, single)


@pytest.mark.parametrize("backend", ["server"], indirect=True)
def test_killed_worker_is_retried_without_duplicates(backend, local_ray, photos, tiny_model):
    busy = local_ray
    killed: list[int] = []

    def kill_first_busy_worker() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for marker in busy.glob("*.busy"):
                pid = int(marker.stem)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.01)  # polling a real signal (the marker file), not hoping

    killer = threading.Thread(target=kill_first_busy_worker, daemon=True)
    killer.start()
    _report, rows, ids = _index(_settings(backend, "killed", tiny_model), photos, ray_workers=2)
    killer.join(5)
    assert killed, "no worker was seen mid-batch"
    assert len(ids) == len(set(ids)) == 12
    assert sorted(Path(p).name for p in rows) == sorted(p.name for p in photos.iterdir())
