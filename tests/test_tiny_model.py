"""The torch-free test model (tests/tiny_model.py) stands in for a converted checkpoint: same layout,
same tokens, embeddings that depend on the inputs, the same bytes from the same seed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
from tokenizers import Tokenizer

from pixsearch.images import load_image
from pixsearch.models import load_embedder, load_spec
from pixsearch.models.onnx import OnnxEmbedder

from .conftest import CAPTIONS, sample_images
from .tiny_model import build_tiny_model

QUERIES = [*CAPTIONS, "Une photo de LONG sleeve!", "a dog's  toy   2024", "ünïcode 東京 😀", "clothes " * 40]


def _signature(path) -> list[tuple[str, int, list[str | int]]]:
    graph = onnx.load(str(path)).graph
    return [(v.name, v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in [*graph.input, *graph.output]]


def test_tiny_model_has_the_layout_conversion_writes(tiny_model, tiny_checkpoint, cache_dir):
    """Against `pixsearch convert` of the torch-built tiny checkpoint (needs torch): same manifest
    fields but the id, same tower inputs and outputs, the same tokens for the texts it learned from."""
    ours, converted = load_spec(str(tiny_model), cache_dir), load_spec(str(tiny_checkpoint), cache_dir)
    assert ours.model_id.startswith("tiny-clip-") and ours.model_id != converted.model_id
    assert dataclasses.replace(ours, model_id=converted.model_id) == converted
    for tower in ("image", "text"):
        file = getattr(ours, tower).file
        assert _signature(ours.path(file)) == _signature(converted.path(file))
    mine = Tokenizer.from_file(str(ours.path(ours.text.tokenizer)))
    theirs = Tokenizer.from_file(str(converted.path(converted.text.tokenizer)))
    assert mine.get_vocab_size() == theirs.get_vocab_size()
    assert [e.tokens for e in mine.encode_batch(CAPTIONS)] == [e.tokens for e in theirs.encode_batch(CAPTIONS)]
    # Words the texts never had split where merges tie, and the checkpoint's tokenizer (tokenizers'
    # BpeTrainer) breaks ties in hash order; but both must see the same bytes between BOS and EOS.
    for a, b in zip(mine.encode_batch(QUERIES), theirs.encode_batch(QUERIES), strict=True):
        assert a.tokens[0] == b.tokens[0] == "<|startoftext|>" and a.tokens[-1] == b.tokens[-1] == "<|endoftext|>"
        assert "".join(a.tokens[1:-1]) == "".join(b.tokens[1:-1])


def test_same_texts_and_seed_give_the_same_model(tmp_path):
    """Byte for byte, so the model id (and any failure) is the same in every run."""
    first = build_tiny_model(tmp_path / "a", CAPTIONS)
    again = build_tiny_model(tmp_path / "b", CAPTIONS)
    other = build_tiny_model(tmp_path / "c", CAPTIONS, seed=1)
    files = sorted(p.name for p in first.iterdir())
    assert files == ["pixsearch.json", "textual.onnx", "tokenizer.json", "visual.onnx"]
    assert all((first / name).read_bytes() == (again / name).read_bytes() for name in files)
    model_id = json.loads((first / "pixsearch.json").read_text())["model_id"]
    assert model_id != json.loads((other / "pixsearch.json").read_text())["model_id"]


def test_text_embeddings_depend_on_the_words_not_on_padding(tiny_model, cache_dir):
    """Like CLIP's causal tower, nothing after the end-of-text token counts: alone, batched with a
    longer query, or padded to the context under an all-ones mask (what Immich's exports are fed),
    a query embeds the same."""
    import onnxruntime as ort

    embedder = load_embedder(str(tiny_model), cache_dir, precision="fp32")
    spec = embedder.spec
    alone = np.concatenate([embedder.embed_texts([q]) for q in QUERIES])
    assert np.allclose(embedder.embed_texts(QUERIES), alone, atol=1e-5)
    padded = OnnxEmbedder(dataclasses.replace(spec, text=dataclasses.replace(spec.text, pad_to_context=True)))
    ids, _mask = padded.tokenize(QUERIES)
    assert ids.shape == (len(QUERIES), spec.text.context_length)
    session = ort.InferenceSession(str(spec.path(spec.text.file)), providers=["CPUExecutionProvider"])
    (raw,) = session.run([spec.text.output], {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), alone, atol=1e-5)
    similarity = alone @ alone.T
    assert similarity[~np.eye(len(QUERIES), dtype=bool)].max() < 0.99  # different words, different vectors


def test_image_embeddings_depend_on_the_pixels(tiny_model, cache_dir):
    embedder = load_embedder(str(tiny_model), cache_dir, precision="fp32")
    images = [load_image(p).rgb for p in sample_images()]
    vectors = embedder.embed_images(images)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    similarity = vectors @ vectors.T
    assert np.allclose(np.diag(similarity), 1, atol=1e-5)
    assert similarity[~np.eye(len(images), dtype=bool)].max() < 0.999  # every sample finds itself first
    flipped = embedder.embed_images([np.ascontiguousarray(img[:, ::-1]) for img in images[:4]])
    assert (flipped * vectors[:4]).sum(axis=1).max() < 0.999  # layout matters, not only colours
