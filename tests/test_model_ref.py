"""The one ``--model`` parser: a folder, hf-hub:owner/repo or a registry name, and clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixsearch.models import REGISTRY, ModelError, load_spec
from pixsearch.models.ref import HUB_PREFIX, UnknownModel, parse_model_ref
from pixsearch.quality.checkpoint import resolve_base
from pixsearch.quality.trainkit import TrainError


def test_an_existing_folder(tmp_path):
    ref = parse_model_ref(str(tmp_path))
    assert (ref.kind, ref.path, ref.repo, ref.model_id) == ("folder", tmp_path, None, None)


def test_a_folder_under_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models" / "mine").mkdir(parents=True)
    ref = parse_model_ref("~/models/mine")
    assert ref.kind == "folder" and ref.path == tmp_path / "models" / "mine" and ref.text == "~/models/mine"


def test_a_hub_repository():
    ref = parse_model_ref("hf-hub:openai/clip-vit-base-patch32")
    assert (ref.kind, ref.repo, ref.path, ref.known) == ("hub", "openai/clip-vit-base-patch32", None, None)
    assert ref.model_id == "openai__clip-vit-base-patch32"


def test_a_registry_name():
    ref = parse_model_ref("ViT-B-32__openai")
    assert ref.kind == "registry" and ref.known is REGISTRY["ViT-B-32__openai"]
    assert ref.repo == "immich-app/ViT-B-32__openai" and ref.model_id == "ViT-B-32__openai"


def test_a_folder_wins_over_a_registry_name(tmp_path, monkeypatch):
    (tmp_path / "ViT-B-32__openai").mkdir()
    monkeypatch.chdir(tmp_path)
    ref = parse_model_ref("ViT-B-32__openai")
    assert ref.kind == "folder" and ref.path == Path("ViT-B-32__openai")


@pytest.mark.parametrize("text", ["hf-hub:", "hf-hub:clip", "hf-hub:/clip", "hf-hub:openai/", "hf-hub:a/b/c",
                                  "hf-hub:openai/clip vit"])
def test_malformed_hub_names_say_the_shape(text):
    with pytest.raises(UnknownModel, match=f"expected {HUB_PREFIX}owner/repo"):
        parse_model_ref(text)


def test_unknown_names_missing_folders_and_files(tmp_path):
    with pytest.raises(UnknownModel, match="pixsearch models"):
        parse_model_ref("no-such-model")
    with pytest.raises(UnknownModel, match="no such directory"):
        parse_model_ref(str(tmp_path / "missing"))
    (tmp_path / "weights.onnx").write_bytes(b"x")
    with pytest.raises(UnknownModel, match="not a directory"):
        parse_model_ref(str(tmp_path / "weights.onnx"))
    with pytest.raises(UnknownModel, match="empty"):
        parse_model_ref("  ")


def test_loading_a_malformed_hub_name_fails_before_any_download(cache_dir):
    with pytest.raises(ModelError, match="owner/repo"):
        load_spec("hf-hub:clip-vit-base-patch32", cache_dir)
    assert not (cache_dir / "hub").exists()


def test_train_refuses_an_onnx_registry_model_before_downloading(tmp_path, cache_dir):
    with pytest.raises(TrainError, match=r"not a transformers checkpoint.*chinese-clip-vit-base-patch16"):
        resolve_base("ViT-B-32__openai", None, None, 0, tmp_path / "state", cache_dir, [])
    with pytest.raises(TrainError, match="owner/repo"):
        resolve_base("hf-hub:nothing", None, None, 0, tmp_path / "state", cache_dir, [])
    assert not (cache_dir / "hub").exists()
