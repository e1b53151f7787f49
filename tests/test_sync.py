"""Incremental sync: random file operations, crashes, awkward inputs, concurrent search, watching."""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixsearch.images import ImageError, decode_image, load_image
from pixsearch.indexer import Indexer, content_hash
from pixsearch.models import load_embedder
from pixsearch.search import Searcher
from pixsearch.store import FIELDS, SkipLog, Store, StoreError, collection_name_for, image_id
from pixsearch.watch import watch

from .conftest import SAMPLES, run_cli, sample_images
from .observe import COMMITTED, WATCHING, Lines, start_logged, wait_for
from .privileges import unreadable, without_dac_bypass


@pytest.fixture
def embedder(tiny_model, cache_dir):
    model = load_embedder(str(tiny_model), cache_dir)
    model.calls = []  # rows per embed call, to prove nothing unchanged is embedded twice
    original = model.embed_prepared

    def counting(crops):
        model.calls.append(len(crops))
        return original(crops)

    model.embed_prepared = counting
    return model


@pytest.fixture
def store(backend, embedder):
    """The model's collection on Milvus Lite and on a real Milvus server (see conftest.backend)."""
    s = backend.store(collection_name_for(embedder.model_id))
    s.ensure_collection(embedder.model_id, embedder.model_id, embedder.dim)
    yield s
    s.close()


lite_only = pytest.mark.parametrize("backend", ["lite"], indirect=True)
"""For tests about files and decoding, where the backend adds nothing but time."""


def variant(source: Path, target: Path, shift: int) -> None:
    """Write a new, distinct JPEG derived from *source* (different content, different hash)."""
    img = np.roll(cv2.imread(str(source)), shift, axis=1)
    target.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(target), img)


def readable_images(root: Path) -> dict[str, str]:
    """path -> content hash of every file under *root* that decodes as an image."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            try:
                decode_image(data)
            except ImageError:
                continue
            found[str(path)] = content_hash(data)
    return found


def indexed(store: Store) -> dict[str, str]:
    rows = list(store.iter_rows(("path", "content_hash")))
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a path is indexed twice"
    assert all(r["id"] == image_id(r["path"]) for r in rows)
    return {r["path"]: r["content_hash"] for r in rows}


def assert_vectors_are_the_files(store: Store, embedder) -> None:
    """Every row's vector is the embedding of the file at its path (not of some other content)."""
    ids = [r["id"] for r in store.iter_rows(("path",))]
    rows = store.get(ids, with_vectors=True)
    if not rows:
        return
    crops = [embedder.prepare(load_image(Path(r["path"]), min_side=embedder.min_decode_side).rgb) for r in rows]
    expected = embedder.embed_prepared(crops)
    cosines = (expected * np.stack([r["vector"] for r in rows])).sum(axis=1)
    assert cosines.min() > 0.999, [r["path"] for r, c in zip(rows, cosines, strict=True) if c <= 0.999]


def random_operation(rng: random.Random, root: Path, counter: list[int]) -> None:
    files = sorted(p for p in root.rglob("*.jpg"))
    op = rng.choice(["add", "add", "modify", "rename", "copy", "delete", "corrupt"]) if files else "add"
    counter[0] += 1
    name = f"f{counter[0]}.jpg"
    if op == "add":
        variant(rng.choice(sample_images()), root / rng.choice(["", "sub", "sub/deeper"]) / name, counter[0])
    elif op == "modify":
        target = rng.choice(files)
        variant(rng.choice(sample_images()), target, counter[0] + 1000)
        stat = target.stat()
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    elif op == "rename":
        source = rng.choice(files)
        (root / "moved").mkdir(exist_ok=True)
        source.rename(root / "moved" / name)
    elif op == "copy":
        shutil.copy2(rng.choice(files), root / name)
    elif op == "delete":
        rng.choice(files).unlink()
    else:
        rng.choice(files).write_bytes(b"garbage, not a picture")


@pytest.mark.parametrize(("backend", "seed"), [("lite", 1), ("lite", 2), ("lite", 3),
                                               pytest.param("server", 1, marks=pytest.mark.server)],
                         indirect=["backend"])
def test_random_file_operations_keep_index_exact(seed, tmp_path, store, embedder):
    rng = random.Random(seed)
    root = tmp_path / "library"
    for i, path in enumerate(sample_images()[:6]):
        variant(path, root / f"start{i}.jpg", i)
    indexer = Indexer(store, embedder, batch_size=4)
    counter = [0]
    for _round in range(5):
        before = indexed(store)
        rows_before = {r["path"]: (r["size"], r["mtime"]) for r in store.iter_rows(("path", "size", "mtime"))}
        embedder.calls.clear()
        report = indexer.run([root])
        truth = readable_images(root)
        assert indexed(store) == truth
        changed = {h for p, h in truth.items()
                   if rows_before.get(p) != (os.stat(p).st_size, os.stat(p).st_mtime)}
        assert sum(embedder.calls) == len(changed - set(before.values())), report.summary()
        assert_vectors_are_the_files(store, embedder)
        for _ in range(rng.randint(1, 4)):
            random_operation(rng, root, counter)
    indexer.run([root])
    embedder.calls.clear()
    report = indexer.run([root])  # nothing changed since: nothing read, nothing embedded
    assert report.added == report.updated == report.moved == report.removed == 0
    assert embedder.calls == []


def test_rename_and_duplicate_reuse_vectors(tmp_path, store, embedder):
    root = tmp_path / "lib"
    shutil.copytree(SAMPLES, root)
    indexer = Indexer(store, embedder)
    indexer.run([root])
    embedder.calls.clear()
    hat = next(root.glob("hat/*.jpg"))
    hat.rename(root / "renamed hat.jpg")
    shutil.copy(root / "renamed hat.jpg", root / "copy of hat.jpg")
    report = indexer.run([root])
    assert (report.moved, report.added, report.removed, report.embedded) == (1, 1, 1, 0)
    assert sum(embedder.calls) == 0
    assert len(indexed(store)) == 21


@lite_only
def test_copies_reuse_vectors_from_a_batch_still_being_written(tmp_path, store, embedder, monkeypatch):
    """Writes run behind the model: batch 2 is embedded while batch 1's upsert is still in flight, and
    its copy of a batch-1 file takes its vector from the writer's queue instead of re-embedding."""
    root = tmp_path / "lib"
    root.mkdir()
    for name, source in (("a.jpg", 0), ("b.jpg", 5), ("d.jpg", 9)):
        variant(sample_images()[source], root / name, 3)
    shutil.copy(root / "a.jpg", root / "c.jpg")  # batches: (a, b), (c = copy of a, d)
    second_batch_embedded = threading.Event()
    overlapped = []
    real_embed, real_upsert = embedder.embed_prepared, store.upsert

    def embed(crops):
        if len(embedder.calls) == 1:
            second_batch_embedded.set()
        return real_embed(crops)

    def upsert(rows):
        if not overlapped:  # hold batch 1's write until batch 2 has been embedded (or give up)
            overlapped.append(second_batch_embedded.wait(timeout=20))
        return real_upsert(rows)

    monkeypatch.setattr(embedder, "embed_prepared", embed)
    monkeypatch.setattr(store, "upsert", upsert)
    report = Indexer(store, embedder, batch_size=2).run([root])
    assert overlapped == [True], "batch 2 was only embedded after batch 1's write returned"
    assert (report.added, report.embedded) == (4, 3), report.summary()
    assert embedder.calls == [2, 1]
    assert_vectors_are_the_files(store, embedder)


@lite_only
def test_a_failed_write_stops_the_run_with_its_error(tmp_path, store, embedder, monkeypatch):
    """An error on the writer thread reaches the caller (the CLI prints it), it does not hang the run."""
    root = tmp_path / "lib"
    shutil.copytree(SAMPLES, root)  # 21 photos: 11 batches
    writes = []
    real_upsert = store.upsert

    def upsert(rows):
        writes.append(len(rows))
        if len(writes) == 2:
            raise StoreError("Milvus at test failed during upsert: disk full")
        return real_upsert(rows)

    monkeypatch.setattr(store, "upsert", upsert)
    with pytest.raises(StoreError, match="disk full"):
        Indexer(store, embedder, batch_size=2).run([root])
    assert len(writes) == 2  # no batch is written after the failed one
    assert len(indexed(store)) == 2


def test_an_edited_file_never_lends_its_new_vector_to_copies_of_its_old_content(tmp_path, store, embedder):
    root = tmp_path / "lib"
    root.mkdir()
    variant(sample_images()[0], root / "a.jpg", 1)
    indexer = Indexer(store, embedder, batch_size=1)
    indexer.run([root])
    shutil.copy(root / "a.jpg", root / "b.jpg")  # b holds a's old content...
    variant(sample_images()[9], root / "a.jpg", 2)  # ...and a changes
    os.utime(root / "a.jpg", (1, 1))
    report = indexer.run([root])
    assert (report.updated, report.added) == (1, 1), report.summary()
    assert_vectors_are_the_files(store, embedder)


def test_csv_labels_survive_a_folder_run_that_re_embeds(tmp_path, store, embedder):
    root = tmp_path / "lib"
    shutil.copytree(SAMPLES / "hat", root)
    photo = sorted(root.iterdir())[0]
    listing = tmp_path / "list.csv"
    listing.write_text(f"id,path,label\n1,{photo},hat\n")
    indexer = Indexer(store, embedder)
    indexer.run([listing])
    variant(sample_images()[3], photo, 5)
    os.utime(photo, (2, 2))
    indexer.run([root])
    labels = {r["path"]: r["label"] for r in store.iter_rows(("path", "label"))}
    assert labels[str(photo)] == "hat"


def test_a_file_that_turns_corrupt_leaves_the_index_and_is_counted(tmp_path, store, embedder):
    root = tmp_path / "lib"
    shutil.copytree(SAMPLES / "hat", root)
    shutil.copytree(SAMPLES / "shoes", root / "shoes")
    indexer = Indexer(store, embedder)
    indexer.run([root])
    files = sorted(root.rglob("*.jpg"))
    files[0].write_bytes(b"garbage")
    files[1].unlink()
    report = indexer.run([root])
    assert report.removed == 2 and store.count() == 2, report.summary()


def test_skipped_files_are_remembered_and_retried_only_when_changed(tmp_path, store, embedder):
    root = tmp_path / "lib"
    root.mkdir()
    shutil.copy(sample_images()[0], root / "good.jpg")
    (root / "bad.jpg").write_bytes(b"nope")
    indexer = Indexer(store, embedder)
    first = indexer.run([root])
    assert [p for p, _ in first.skipped] == [str(root / "bad.jpg")]
    assert SkipLog(store).rows()[str(root / "bad.jpg")]["reason"].startswith("not an image")
    again = indexer.run([root])
    assert again.skipped == [] and again.still_skipped == 1
    shutil.copy(sample_images()[1], root / "bad.jpg")  # fixed: now it changes, so it is retried
    fixed = indexer.run([root])
    assert fixed.added == 1 and SkipLog(store).rows() == {}


def test_several_roots_and_remove(tmp_path, store, embedder):
    a, b = tmp_path / "a", tmp_path / "b_"
    shutil.copytree(SAMPLES / "hat", a)
    shutil.copytree(SAMPLES / "shoes", b)
    indexer = Indexer(store, embedder)
    indexer.run([a])
    indexer.run([b])  # indexing one root never removes the other's images
    assert len(indexed(store)) == 4
    assert indexer.remove(str(a)) == 2
    assert set(indexed(store)) == {str(p) for p in b.iterdir()}


@lite_only
def test_awkward_inputs(tmp_path, store, embedder):
    root = tmp_path / "awkward"
    shutil.copytree(SAMPLES / "dress", root / "robes d'été 写真")
    (root / "with space.jpg").write_bytes(sample_images()[5].read_bytes())
    (root / "loop").symlink_to(root)  # a symlink loop must not hang or crash the walk
    big = np.zeros((10_000, 10_000, 3), np.uint8)
    big[::50] = 255
    cv2.imwrite(str(root / "100mp.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 50])
    (root / "zero.jpg").write_bytes(b"")
    report = Indexer(store, embedder).run([root])
    assert report.added == 4, report.summary()
    reasons = dict(report.skipped)
    assert "empty file" in reasons[str(root / "zero.jpg")]
    assert any("symlink loop" in r for r in reasons.values())
    sizes = {r["path"]: (r["width"], r["height"]) for r in store.iter_rows(("path", "width", "height"))}
    assert sizes[str(root / "100mp.jpg")] == (10_000, 10_000)


def test_permission_denied_files_and_folders_are_skipped_and_keep_their_rows(tmp_path, tiny_model):
    """Index, then make a file and a folder unreadable: both are reported, neither is forgotten.

    As root, the re-index runs without the capabilities that bypass permission bits (tests/privileges.py).
    """
    root = tmp_path / "lib"
    shutil.copytree(SAMPLES / "hat", root)
    secret, locked = root / "secret.jpg", root / "locked"
    shutil.copy(sample_images()[0], secret)
    shutil.copytree(SAMPLES / "shoes", locked)
    db = str(tmp_path / "perm.db")
    first = json.loads(run_cli("index", str(root), "--model", str(tiny_model), "--db", db, "--json").stdout)
    assert first["added"] == 5
    os.utime(secret, (3, 3))  # changed, so it is read again
    with unreadable(secret, locked):
        result = subprocess.run(without_dac_bypass([sys.executable, "-m", "pixsearch", "index", str(root), "--model",
                                                    str(tiny_model), "--db", db, "--json"]),
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert "permission denied" in reasons[str(secret)]
    assert "cannot list folder" in reasons[str(locked)]
    assert report["removed"] == 0 and report["unchanged"] == 2
    stats = json.loads(run_cli("stats", "--db", db, "--json").stdout)
    assert [s["count"] for s in stats] == [5]


def test_search_sees_committed_batches_while_indexing(tmp_path, store, embedder):
    root = tmp_path / "lib"
    shutil.copytree(SAMPLES, root)
    original = embedder.embed_prepared

    def slow(crops):
        time.sleep(0.3)
        return original(crops)

    embedder.embed_prepared = slow
    indexer = Indexer(store, embedder, batch_size=4)
    thread = threading.Thread(target=indexer.run, args=([root],))
    thread.start()
    searcher = Searcher(store, embedder)
    seen = []
    while thread.is_alive():
        seen.append(len(searcher.by_text("a photo", k=100)))
        time.sleep(0.1)
    thread.join()
    seen.append(len(searcher.by_text("a photo", k=100)))
    assert seen == sorted(seen) and seen[-1] == 20
    assert any(0 < n < 20 for n in seen), f"no partial state observed: {seen}"


def _make_library(root: Path, count: int) -> None:
    images = sample_images()
    for i in range(count):
        variant(images[i % len(images)], root / f"d{i % 7}" / f"img {i:04d}.jpg", i * 3 + 1)


def _rows_with_vectors(db: Path, collection: str) -> dict[str, dict]:
    """Every row of a Milvus Lite file, by id, with its vector (no process may hold the file)."""
    store = Store(str(db), collection=collection)
    try:
        ids = [r["id"] for r in store.iter_rows(("path",))]
        rows = store.get(ids, with_vectors=True)
        count = store.count()
    finally:
        store.close()
    assert len(ids) == len(set(ids)) == len(rows) == count, "a row is stored twice"
    return {r["id"]: r for r in rows}


def _assert_rows_match(rows: dict[str, dict], clean: dict[str, dict]) -> None:
    """Each row is whole and is exactly what a clean, uninterrupted run stores for that id."""
    for row_id, row in rows.items():
        assert row_id == image_id(row["path"]) and row_id in clean, row["path"]
        expected = clean[row_id]
        assert {k: row[k] for k in FIELDS if k != "indexed_at"} == \
            {k: expected[k] for k in FIELDS if k != "indexed_at"}, row["path"]
        assert np.allclose(row["vector"], expected["vector"], atol=1e-5), row["path"]


KILL_LIBRARY = 60
KILL_BATCH = 2
"""30 batches: the kill lands after the batches the test waited for and long before the last."""


@pytest.mark.slow
@pytest.mark.parametrize("batches_before_kill", [1, 5])
def test_kill_9_mid_run_leaves_whole_rows_and_a_rerun_finishes_exactly(batches_before_kill, tmp_path, tiny_model,
                                                                       embedder):
    """SIGKILL once the run has reported *batches_before_kill* committed batches (see tests/observe.py)."""
    root = tmp_path / "lib"
    _make_library(root, KILL_LIBRARY)
    collection = collection_name_for(embedder.model_id)
    index = ["index", str(root), "--model", str(tiny_model), "--batch-size", str(KILL_BATCH)]
    run_cli(*index, "--db", str(tmp_path / "clean.db"))
    clean = _rows_with_vectors(tmp_path / "clean.db", collection)
    assert len(clean) == KILL_LIBRARY

    db = tmp_path / "crash.db"
    process = start_logged(*index, "--db", str(db))
    try:
        log = Lines(process.stderr)
        for _ in range(batches_before_kill):
            log.expect(lambda line: line.startswith(COMMITTED), timeout=120)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before the kill: " + "".join(log.seen)

    after_kill = _rows_with_vectors(db, collection)
    assert batches_before_kill * KILL_BATCH <= len(after_kill) < KILL_LIBRARY, len(after_kill)
    _assert_rows_match(after_kill, clean)

    report = json.loads(run_cli(*index, "--db", str(db), "--json").stdout)
    assert (report["unchanged"], report["added"]) == (len(after_kill), KILL_LIBRARY - len(after_kill)), report
    assert report["removed"] == report["updated"] == report["moved"] == 0 and report["skipped"] == [], report
    final = _rows_with_vectors(db, collection)
    assert final.keys() == clean.keys()
    _assert_rows_match(final, clean)


@pytest.mark.slow
def test_ctrl_c_stops_after_the_batch_and_next_run_finishes(tmp_path, tiny_model):
    root = tmp_path / "lib"
    _make_library(root, 150)
    db = str(tmp_path / "int.db")
    args = ["index", str(root), "--model", str(tiny_model), "--db", db, "--batch-size", "8", "--json"]
    process = start_logged(*args, stdout=subprocess.PIPE)
    log = Lines(process.stderr)
    log.expect(lambda line: line.startswith(COMMITTED), timeout=120)  # mid-run: a batch is written, more to come
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    out = process.stdout.read()
    errors = log.all(timeout=30)
    assert "stopping after the current batch" in errors, errors
    assert process.returncode == 130, errors
    partial = json.loads(out)
    assert partial["interrupted"] and "Traceback" not in errors
    final = json.loads(run_cli(*args).stdout)
    assert final["unchanged"] == partial["added"] and final["added"] == 150 - partial["added"]


@pytest.mark.slow
def test_watch_mode_follows_changes(tmp_path, tiny_model):
    root = tmp_path / "lib"
    shutil.copytree(SAMPLES / "hat", root)
    db = str(tmp_path / "watch.db")
    process = start_logged("index", str(root), "--model", str(tiny_model), "--db", db, "--watch", "--json",
                           stdout=subprocess.PIPE)
    reports: list[dict] = []

    def read_reports():
        buffer = ""
        for line in process.stdout:
            buffer += line
            if line.startswith("}"):
                reports.append(json.loads(buffer))
                buffer = ""

    threading.Thread(target=read_reports, daemon=True).start()

    def report_where(predicate) -> None:
        wait_for(lambda: any(predicate(r) for r in reports), 60, f"a matching report in {reports}")

    try:
        Lines(process.stderr).expect(lambda line: line.startswith(WATCHING), timeout=120)
        report_where(lambda r: r["added"] == 2)  # printed before the watcher starts
        (root / "notes.txt").write_text("not a picture, and no reason to list it as skipped")
        (root / "other.csv").write_text(f"id,path,label\n1,{sample_images()[1]},elsewhere\n")
        shutil.copy(sample_images()[0], root / "new.jpg")
        report_where(lambda r: r["added"] == 1)
        next(p for p in root.iterdir() if p.name != "new.jpg" and p.suffix == ".jpg").unlink()
        report_where(lambda r: r["removed"] == 1)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    stats = json.loads(run_cli("stats", "--db", db, "--json").stdout)
    assert [s["count"] for s in stats] == [2]  # the CSV's image outside the folder was not indexed
    skipped = json.loads(run_cli("stats", "--db", db, "--skipped", "--json").stdout)
    assert all(rows == [] for rows in skipped.values()), skipped


@lite_only
def test_watch_sees_a_change_made_right_after_it_reports_ready(tmp_path, store, embedder):
    """No grace period: the first file written once *ready* is set is indexed."""
    root = tmp_path / "lib"
    root.mkdir()
    indexer = Indexer(store, embedder)
    reports: queue.Queue = queue.Queue()
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=watch, args=(indexer, [str(root)], reports.put),
                              kwargs={"quiet": 0.2, "stop": stop, "ready": ready}, daemon=True)
    thread.start()
    try:
        assert ready.wait(30), "the watcher never reported ready"
        shutil.copy(sample_images()[0], root / "first.jpg")
        report = reports.get(timeout=30)
        assert report.added == 1 and indexed(store).keys() == {str(root / "first.jpg")}, report.summary()
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_changing_the_model_of_a_collection_is_refused(tmp_path, tiny_model, sample_dir):
    run_cli("index", str(sample_dir), "--model", str(tiny_model), "--collection", "photos")
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model, other)
    manifest = json.loads((other / "pixsearch.json").read_text())
    manifest["model_id"] = "another-model"
    (other / "pixsearch.json").write_text(json.dumps(manifest))
    result = run_cli("index", str(sample_dir), "--model", str(other), "--collection", "photos", check=False)
    assert result.returncode == 2 and "never mixes models" in result.stderr
    assert "Traceback" not in result.stderr
