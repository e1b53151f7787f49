"""Models: conversion agrees with torch, layouts load, missing weights give one clear message."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pixsearch.images import load_image
from pixsearch.models import REGISTRY, ModelError, ModelUnavailable, load_embedder, load_spec
from pixsearch.models.spec import detect_layout, preprocess_from_hf

from .conftest import CAPTIONS, sample_images


def torch_embeddings(checkpoint, embedder, images, texts):
    """Reference embeddings computed by transformers/torch on exactly the same inputs."""
    import torch
    from transformers import AutoModel

    from pixsearch.models.convert import tower_features

    model = AutoModel.from_pretrained(checkpoint).eval()
    pixels = torch.from_numpy(np.stack([embedder.prepare(img) for img in images]))
    from pixsearch.models.preprocess import to_model_input

    batch = torch.from_numpy(to_model_input(list(pixels.numpy()), embedder.preprocess))
    ids, mask = embedder.tokenize(texts)
    with torch.no_grad():
        image = tower_features(model.get_image_features(pixel_values=batch)).numpy()
        text = tower_features(model.get_text_features(input_ids=torch.from_numpy(ids),
                                                 attention_mask=torch.from_numpy(mask))).numpy()
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return norm(image), norm(text)


def test_onnx_matches_torch_on_real_images(tiny_checkpoint, cache_dir):
    embedder = load_embedder(str(tiny_checkpoint), cache_dir)
    images = [load_image(p).rgb for p in sample_images()[:8]]
    ours_image = embedder.embed_images(images)
    ours_text = embedder.embed_texts(CAPTIONS)
    ref_image, ref_text = torch_embeddings(tiny_checkpoint, embedder, images, CAPTIONS)
    assert (ours_image * ref_image).sum(1).min() >= 0.999
    assert (ours_text * ref_text).sum(1).min() >= 0.999
    assert np.allclose(np.linalg.norm(ours_image, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(ours_text, axis=1), 1, atol=1e-5)


def test_conversion_is_cached_and_model_id_is_stable(tiny_checkpoint, cache_dir, tmp_path):
    first = load_spec(str(tiny_checkpoint), cache_dir)
    again = load_spec(str(tiny_checkpoint), cache_dir)
    assert first.directory == again.directory
    moved = shutil.copytree(tiny_checkpoint, tmp_path / "tiny-clip")
    assert load_spec(str(moved), cache_dir).model_id == first.model_id  # same bytes, same id
    assert first.dim == 16 and first.preprocess.size == (32, 32)


def test_pixsearch_layout_loads_directly(tiny_model, cache_dir):
    assert detect_layout(tiny_model) == "pixsearch"
    spec = load_spec(str(tiny_model), cache_dir)
    assert spec.text.context_length == 32
    embedder = load_embedder(str(tiny_model), cache_dir)
    long_query = "a red dress " * 200  # longer than the context: truncated, not an error
    assert embedder.embed_texts([long_query]).shape == (1, 16)


def test_immich_layout(immich_model, tiny_model, cache_dir):
    """An export laid out like Immich's (input names image/text, int32 ids, fixed batch 1)."""
    assert detect_layout(immich_model) == "immich"
    spec = load_spec(str(tiny_model), cache_dir)
    theirs = load_embedder(str(immich_model), cache_dir, precision="fp32")
    ours = load_embedder(str(tiny_model), cache_dir, precision="fp32")
    images = [load_image(p).rgb for p in sample_images()[:3]]
    assert theirs.image_tower().fixed_batch == 1 and theirs.text_tower().fixed_batch == 1
    assert np.allclose(theirs.embed_images(images), ours.embed_images(images), atol=1e-4)
    assert np.allclose(theirs.embed_texts(CAPTIONS[:3]), ours.embed_texts(CAPTIONS[:3]), atol=1e-4)
    assert theirs.spec.text.pad_to_context and theirs.spec.text.pad_id == spec.text.pad_id


def test_preprocess_read_from_hf_configs():
    clip = preprocess_from_hf({"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224},
                               "do_center_crop": True, "resample": 3, "image_mean": [0.1] * 3, "image_std": [0.2] * 3})
    assert clip.resize == "shortest" and clip.size == (224, 224) and clip.mean == (0.1,) * 3
    siglip2 = preprocess_from_hf({"size": {"height": 256, "width": 256}, "resample": 2,
                                  "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    assert siglip2.resize == "squash" and siglip2.interpolation == "bilinear" and siglip2.size == (256, 256)
    legacy = preprocess_from_hf({"size": 224, "crop_size": 224, "do_center_crop": True})
    assert legacy.size == (224, 224) and legacy.shortest_edge == 224


def test_registry_model_offline_gives_one_clear_message(cache_dir):
    with pytest.raises(ModelUnavailable) as info:
        load_spec("ViT-B-32__openai", cache_dir)
    message = str(info.value)
    assert "immich-app/ViT-B-32__openai" in message and "--model DIR" in message


def test_unknown_names_and_missing_dirs(cache_dir, tmp_path):
    with pytest.raises(ModelError, match="pixsearch models"):
        load_spec("no-such-model", cache_dir)
    with pytest.raises(ModelError, match="no such directory"):
        load_spec(str(tmp_path / "missing"), cache_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model directory"):
        load_spec(str(tmp_path / "empty"), cache_dir)


def test_registry_entries_are_complete():
    layouts = {"immich", "transformers.js", "transformers"}
    assert "ViT-B-32__openai" in REGISTRY
    assert any("zh" in m.languages or "Chinese" in m.languages for m in REGISTRY.values())
    assert any("French" in m.languages for m in REGISTRY.values())
    for model in REGISTRY.values():
        assert model.layout in layouts and "/" in model.repo and model.dim > 0
