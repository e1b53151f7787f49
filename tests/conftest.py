"""Shared fixtures. Everything runs offline on models built here; nothing touches the user's files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "clothing"
SAMPLE_CSV = ROOT / "samples" / "clothing.csv"
SHARED = ROOT.parent / "shared" / "data"
CAPTIONS = ["a red dress", "a blue hat", "black leather shoes", "white t-shirt", "jeans", "a long sleeve shirt",
            "a short skirt", "a winter coat", "shorts for summer", "a photo of clothing"]


def sample_images() -> list[Path]:
    return sorted(SAMPLES.rglob("*.jpg"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pixsearch-cache")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, cache_dir):
    """Each test runs in its own folder with its own config; the hub is never contacted."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIXSEARCH_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("PIXSEARCH_") and name != "PIXSEARCH_CACHE_DIR":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight CLIP in transformers format (tiny towers, tokenizer trained offline)."""
    pytest.importorskip("torch", reason="the torch extra builds the test model: pip install '.[torch]'")
    from pixsearch.models.scratch import new_clip_checkpoint

    return new_clip_checkpoint(tmp_path_factory.mktemp("models") / "tiny-clip", "tiny", texts=CAPTIONS * 5)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint, cache_dir) -> Path:
    """The tiny checkpoint converted to pixsearch's ONNX layout (through the same code as --model PATH)."""
    from pixsearch.models.convert import convert_cached

    return convert_cached(tiny_checkpoint, cache_dir)


@pytest.fixture
def sample_dir(tmp_path) -> Path:
    """A private copy of the sample images (tests may add, break or delete files in it)."""
    target = tmp_path / "photos"
    shutil.copytree(SAMPLES, target)
    return target


def run_cli(*args: str, check: bool = True, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `pixsearch` command in a subprocess."""
    result = subprocess.run([sys.executable, "-m", "pixsearch", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"pixsearch {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result
