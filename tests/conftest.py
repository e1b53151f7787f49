"""Shared fixtures. Everything runs offline on models built here; nothing touches the user's files."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .milvus_server import TOKEN as SERVER_TOKEN
from .milvus_server import MilvusServer, launcher_python
from .tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "clothing"
SAMPLE_CSV = ROOT / "samples" / "clothing.csv"
SHARED = ROOT.parent / "shared" / "data"
CAPTIONS = ["a red dress", "a blue hat", "black leather shoes", "white t-shirt", "jeans", "a long sleeve shirt",
            "a short skirt", "a winter coat", "shorts for summer", "a photo of clothing"]


def sample_images() -> list[Path]:
    return sorted(SAMPLES.rglob("*.jpg"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the selected tests' long idle waits now, so they overlap the run (see ``tests/early.py``)."""
    from tests import early

    early.start_selected({item.name for item in session.items})


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests import early

    early.stop_all()


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
    """A random-weight CLIP in transformers format (tiny towers, tokenizer trained offline), for the
    conversion and training tests: only they need torch."""
    pytest.importorskip("torch", reason="the torch extra builds the checkpoint: pip install '.[torch]'")
    from pixsearch.models.scratch import new_clip_checkpoint

    return new_clip_checkpoint(tmp_path_factory.mktemp("models") / "tiny-clip", "tiny", texts=CAPTIONS * 5)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny CLIP-like model in pixsearch's ONNX layout, written without torch (tests/tiny_model.py), so a
    default install runs every index, search, API, CLI and quantize test."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-clip", texts=CAPTIONS * 5)


def _rename(graph, old: str, new: str) -> None:
    """Rename value *old* everywhere in an ONNX graph (inputs, outputs, node inputs and outputs)."""
    for value in list(graph.input) + list(graph.output):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def make_immich_model(tiny_model: Path, target: Path) -> Path:
    """*tiny_model* laid out as Immich publishes its exports: ``visual/`` and ``textual/`` model.onnx
    traced for batch 1, inputs ``image`` and int32 ``text`` (no attention mask), output ``embedding``."""
    import json

    import onnx
    from onnx import TensorProto, helper

    from pixsearch.models.spec import read_pixsearch_dir

    spec = read_pixsearch_dir(tiny_model)
    (target / "visual").mkdir(parents=True)
    (target / "textual").mkdir()
    visual = onnx.load(str(tiny_model / spec.image.file))
    _rename(visual.graph, visual.graph.input[0].name, "image")
    _rename(visual.graph, spec.image.output, "embedding")
    visual.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(visual, str(target / "visual" / "model.onnx"))

    textual = onnx.load(str(tiny_model / spec.text.file))
    graph = textual.graph
    _rename(graph, spec.text.output, "embedding")
    ids, mask = (next(i for i in graph.input if i.name == n) for n in ("input_ids", "attention_mask"))
    graph.input.remove(mask)  # open_clip text towers take token ids only; causal attention ignores the padding
    graph.input.remove(ids)
    graph.input.insert(0, helper.make_tensor_value_info("text", TensorProto.INT32, [1, spec.text.context_length]))
    graph.node.insert(0, helper.make_node("Cast", ["text"], ["input_ids"], to=TensorProto.INT64))
    graph.node.insert(1, helper.make_node("Shape", ["input_ids"], ["input_ids_shape"]))
    graph.node.insert(2, helper.make_node("ConstantOfShape", ["input_ids_shape"], ["attention_mask"],
                                          value=helper.make_tensor("one", TensorProto.INT64, [1], [1])))
    onnx.checker.check_model(textual)
    onnx.save(textual, str(target / "textual" / "model.onnx"))

    shutil.copy(tiny_model / spec.text.tokenizer, target / "textual" / "tokenizer.json")
    (target / "textual" / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<|endoftext|>"}))
    (target / "config.json").write_text(json.dumps({"embed_dim": spec.dim, "vision_cfg": {"image_size": 32},
                                                    "text_cfg": {"context_length": spec.text.context_length}}))
    pre = spec.preprocess
    (target / "visual" / "preprocess_cfg.json").write_text(json.dumps(
        {"size": list(pre.size), "mode": "RGB", "mean": list(pre.mean), "std": list(pre.std),
         "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}))
    return target


@pytest.fixture(scope="session")
def immich_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model in Immich's layout (shared: tests must not write into it)."""
    return make_immich_model(tiny_model, tmp_path_factory.mktemp("models") / "ViT-tiny__immich")


@pytest.fixture
def sample_dir(tmp_path) -> Path:
    """A private copy of the sample images (tests may add, break or delete files in it)."""
    target = tmp_path / "photos"
    shutil.copytree(SAMPLES, target)
    return target


def run_cli(*args: str, check: bool = True, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `pixsearch` command in a subprocess."""
    result = subprocess.run([sys.executable, "-m", "pixsearch", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"pixsearch {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


# ----------------------------------------------------------------------------- Milvus backends


@pytest.fixture(scope="session")
def milvus_server():
    """A real Milvus 2.3 standalone for the whole session (see tests/milvus_server.py), or a skip."""
    python, why_not = launcher_python()
    if not python:
        pytest.skip(why_not)
    server = MilvusServer(python)
    try:
        server.start()
    except RuntimeError as exc:
        server.remove_data()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        server.remove_data()


@dataclass
class Backend:
    """Where a test's Milvus lives: ``uri(name)`` gives a fresh, private database of this kind."""

    kind: str
    """"lite" (a Milvus Lite file) or "server" (a database of its own on the shared server)."""
    token: str
    make_uri: Callable[[str], str]
    uris: dict[str, str] = field(default_factory=dict)

    def uri(self, name: str = "main") -> str:
        if name not in self.uris:
            self.uris[name] = self.make_uri(name)
        return self.uris[name]

    def store(self, collection: str, name: str = "main", **kwargs):
        from pixsearch.store import Store

        return Store(self.uri(name), token=self.token, collection=collection, **kwargs)

    def cli_args(self, name: str = "main") -> list[str]:
        return ["--db", self.uri(name)] + (["--token", self.token] if self.token else [])


_database_numbers = itertools.count()


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.server)])
def backend(request, tmp_path):
    """Each test runs once on Milvus Lite and once on the real server (skipped without a launcher).

    On the server every ``uri(name)`` is a new Milvus database (``http://host:port/<db>``), so
    collection names never collide between tests; it is dropped, with its collections, afterwards.
    """
    if request.param == "lite":
        yield Backend("lite", "", lambda name: str(tmp_path / f"{name}.db"))
        return
    server = request.getfixturevalue("milvus_server")
    from pymilvus import MilvusClient

    admin = MilvusClient(uri=server.uri, token=SERVER_TOKEN, timeout=30)

    def new_database(name: str) -> str:
        database = f"t{next(_database_numbers)}_{name}"
        admin.create_database(database)
        return f"{server.uri}/{database}"

    backend = Backend("server", SERVER_TOKEN, new_database)
    try:
        yield backend
    finally:
        for uri in backend.uris.values():
            client = MilvusClient(uri=uri, token=SERVER_TOKEN, timeout=30)
            for collection in client.list_collections():
                client.drop_collection(collection)
            client.close()
            admin.drop_database(uri.rsplit("/", 1)[1])
        admin.close()
