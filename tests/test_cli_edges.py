"""The CLI at its edges: exit codes, what it reports, what it must not create, piped output.

Everything runs the real `pixsearch` command in a subprocess. Tests about permissions really deny
them: tests run as root, so the command runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, and
each such test first checks that a plain read is refused too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_cli

SETPRIV = shutil.which("setpriv")
WITHOUT_DAC = [SETPRIV or "setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
"""Prefix that runs a command as this user minus the capabilities that let root ignore file modes."""


def run_denied(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`pixsearch ARGS` with file permissions enforced even for root."""
    result = subprocess.run([*WITHOUT_DAC, sys.executable, "-m", "pixsearch", *args], capture_output=True,
                            text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"pixsearch {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def can_read_without_dac(path: Path) -> bool:
    """Whether *path* is readable to a process without the DAC capabilities (the control read)."""
    command = ["ls", str(path)] if path.is_dir() else ["cat", str(path)]
    return subprocess.run([*WITHOUT_DAC, *command], capture_output=True).returncode == 0


needs_setpriv = pytest.mark.skipif(
    SETPRIV is None or os.geteuid() != 0, reason="needs root and setpriv (util-linux) to really deny permissions")


def index_json(*args: str, check: bool = True) -> tuple[int, dict]:
    result = run_cli("index", *args, "--json", check=check)
    return result.returncode, json.loads(result.stdout)


# ----------------------------------------------------------------------------- exit codes


def test_indexing_a_missing_folder_fails_and_creates_no_database(tiny_model, tmp_path):
    result = run_cli("index", str(tmp_path / "no" / "such" / "folder"), "--model", str(tiny_model), check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no such file or folder" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "pixsearch.db").exists()


def test_a_run_where_every_file_fails_exits_1(tmp_path, tiny_model):
    photos = tmp_path / "broken"
    photos.mkdir()
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.png").write_text("not a picture")
    code, report = index_json(str(photos), "--model", str(tiny_model), check=False)
    assert code == 1 and len(report["skipped"]) == 2 and report["added"] == 0
    # the next run retries nothing (the files did not change) and still indexes nothing
    code, report = index_json(str(photos), check=False)
    assert code == 1 and report["still_skipped"] == 2


def test_exit_codes_are_documented_in_help():
    text = run_cli("index", "--help", env={"COLUMNS": "200"}).stdout
    for code in ("0", "1", "2", "130"):
        assert f" {code} " in text or f" {code}:" in text, text


@needs_setpriv
def test_an_unreadable_folder_fails(sample_dir, tiny_model):
    sample_dir.chmod(0)
    try:
        assert not can_read_without_dac(sample_dir)
        result = run_denied("index", str(sample_dir), "--model", str(tiny_model), check=False)
    finally:
        sample_dir.chmod(0o755)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not readable" in result.stderr and "Traceback" not in result.stderr


@needs_setpriv
def test_a_folder_listed_but_not_entered_fails_with_reasons(sample_dir, tiny_model):
    """r-- without x: names can be read, but no file can be opened or even stat'ed."""
    hats = sample_dir / "hat"
    inside = sorted(hats.iterdir())[0]
    hats.chmod(0o444)
    try:
        assert not can_read_without_dac(inside)
        result = run_denied("index", str(hats), "--model", str(tiny_model), "--json", check=False)
    finally:
        hats.chmod(0o755)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["added"] == 0 and len(report["skipped"]) == 2
    assert all("Permission denied" in s["reason"] for s in report["skipped"])


# ----------------------------------------------------------------------------- retrying skips


@needs_setpriv
def test_a_file_skipped_for_permission_is_retried_after_chmod(sample_dir, tiny_model):
    locked = sorted(sample_dir.rglob("*.jpg"))[0]
    locked.chmod(0)
    assert not can_read_without_dac(locked)
    first = json.loads(run_denied("index", str(sample_dir), "--model", str(tiny_model), "--json").stdout)
    assert first["added"] == 19 and [s["path"] for s in first["skipped"]] == [str(locked)]
    assert "permission denied" in first["skipped"][0]["reason"]
    locked.chmod(0o644)  # size and mtime are unchanged: only the permission changed
    assert can_read_without_dac(locked)
    second = json.loads(run_denied("index", str(sample_dir), "--json").stdout)
    assert second["added"] == 1 and second["skipped"] == [] and second["still_skipped"] == 0


def test_a_corrupt_file_is_retried_only_once_it_changes(sample_dir, tiny_model):
    good = sorted(sample_dir.rglob("*.jpg"))[0]
    bad = sample_dir / "bad.jpg"
    bad.write_text("not a picture")
    first = index_json(str(sample_dir), "--model", str(tiny_model))[1]
    assert [s["path"] for s in first["skipped"]] == [str(bad)]
    again = index_json(str(sample_dir))[1]
    assert again["skipped"] == [] and again["still_skipped"] == 1
    shutil.copy(good, bad)
    fixed = index_json(str(sample_dir))[1]
    assert fixed["still_skipped"] == 0 and fixed["added"] + fixed["moved"] == 1


# ----------------------------------------------------------------------------- what is reported


def test_broken_symlinks_and_special_files_named_like_images_are_reported(sample_dir, tiny_model):
    photo = sorted(sample_dir.rglob("*.jpg"))[0]
    album = sample_dir / "album.jpg"  # a folder named like an image is a folder: its photos are indexed
    album.mkdir()
    shutil.copy(photo, album / "inside.jpg")
    (sample_dir / "gone.jpg").symlink_to(sample_dir / "never-there.jpg")
    os.mkfifo(sample_dir / "pipe.png")
    report = index_json(str(sample_dir), "--model", str(tiny_model))[1]
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"gone.jpg", "pipe.png"}, reasons
    assert "broken symlink" in reasons["gone.jpg"] and "not a regular file" in reasons["pipe.png"]
    assert report["added"] + report["moved"] == 21


def test_the_summary_line_is_never_wrapped_when_piped(sample_dir, tiny_model):
    deep = sample_dir.parent / ("a-rather-long-folder-name-" * 3) / "photos"
    shutil.move(sample_dir, deep)
    result = run_cli("index", str(deep), "--model", str(tiny_model), env={"COLUMNS": "40"})
    summary = [line for line in result.stdout.splitlines() if line.startswith("added ")]
    assert len(summary) == 1 and summary[0].endswith("images/s embedded)"), result.stdout


# ----------------------------------------------------------------------------- search --folder


def test_search_folder_is_resolved_from_the_working_directory(sample_dir, tiny_model, tmp_path):
    run_cli("index", str(sample_dir), "--model", str(tiny_model))
    relative = os.path.relpath(sample_dir / "hat", tmp_path)  # tests run in tmp_path
    hits = json.loads(run_cli("search", "a hat", "--folder", relative, "--json").stdout)
    assert len(hits) == 2 and all("/hat/" in h["path"] for h in hits)
    result = run_cli("search", "a hat", "--folder", "no-such-folder", check=False)
    assert result.returncode == 2 and "no indexed images under" in result.stderr


# ----------------------------------------------------------------------------- no database by accident


def test_read_only_commands_create_no_database(tmp_path, tiny_model):
    assert "no pixsearch collections yet" in run_cli("stats").stdout
    assert json.loads(run_cli("stats", "--json").stdout) == []
    assert run_cli("search", "a hat", check=False).returncode == 2
    assert run_cli("remove", str(tmp_path), check=False).returncode == 2
    assert run_cli("index", str(tmp_path), "--model", str(tmp_path / "no-model"), check=False).returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir() if "pixsearch" in p.name) == []


# ----------------------------------------------------------------------------- progress


def test_first_use_of_a_checkpoint_says_it_is_converting(tiny_checkpoint, sample_dir, tmp_path):
    fresh_cache = {"PIXSEARCH_CACHE_DIR": str(tmp_path / "fresh-cache")}
    first = run_cli("index", str(sample_dir), "--model", str(tiny_checkpoint), env=fresh_cache)
    said = first.stderr.replace("\n", " ")
    assert f"converting the transformers checkpoint {tiny_checkpoint} to ONNX" in said
    assert said.index("converting") < said.index("reading 20 new or changed images")
    again = run_cli("index", str(sample_dir), "--model", str(tiny_checkpoint), env=fresh_cache)
    assert "converting" not in again.stderr  # cached: nothing to say


def test_progress_counts_files_once_embedded_and_written(sample_dir, tiny_model, cache_dir, tmp_path):
    """The speed shown is done / time: counting files as they are decoded, before the model has
    seen them, made the first rate shown many times the real one."""
    from pixsearch.indexer import Indexer
    from pixsearch.models import load_embedder
    from pixsearch.store import Store, collection_name_for

    embedder = load_embedder(str(tiny_model), cache_dir)
    with Store(str(tmp_path / "progress.db"), collection=collection_name_for(embedder.model_id)) as store:
        store.ensure_collection(embedder.model_id, embedder.model_id, embedder.dim)
        calls: list[tuple[int, int]] = []
        indexer = Indexer(store, embedder, batch_size=8)
        indexer.run([sample_dir], progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 20), (8, 20), (16, 20), (20, 20)]
