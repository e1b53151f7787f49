"""Readers for ONNX exports published by other projects (no conversion, no torch).

Both layouts are mapped onto the same ModelSpec as pixsearch's own. Input names
the files do not state are resolved when the ONNX session opens (onnx.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .preprocess import PreprocessConfig, channel_values
from .spec import ModelError, ModelSpec, TextSpec, TowerSpec, read_hf_preprocess


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"model file missing: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"cannot parse {path}: expected a JSON object, found {type(data).__name__}")
    return data


def _pad_id(tokenizer_json: Path, pad_token: str | None) -> int:
    """Id of *pad_token* in a tokenizers file (0 when the model has no pad token)."""
    if not pad_token:
        return 0
    data = _json(tokenizer_json)
    for added in data.get("added_tokens", []):
        if added.get("content") == pad_token:
            return int(added["id"])
    vocab = data.get("model", {}).get("vocab", {})
    if isinstance(vocab, dict) and pad_token in vocab:
        return int(vocab[pad_token])
    if isinstance(vocab, list):  # unigram: [[piece, score], ...]
        for index, (piece, _score) in enumerate(vocab):
            if piece == pad_token:
                return index
    return 0


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as a string or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return None if value is None else str(value)


def read_immich_dir(directory: Path, model_id: str) -> ModelSpec:
    """An Immich CLIP export: open_clip ``config.json``, ``visual/``, ``textual/``."""
    config = _json(directory / "config.json")
    pre = _json(directory / "visual" / "preprocess_cfg.json")
    tokenizer_config = _json(directory / "textual" / "tokenizer_config.json")
    size = pre.get("size", config.get("vision_cfg", {}).get("image_size", 224))
    size_hw = (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))
    resize_mode = pre.get("resize_mode", "shortest")
    preprocess = PreprocessConfig(
        size=size_hw,
        resize="squash" if resize_mode == "squash" else "shortest",
        interpolation="bilinear" if pre.get("interpolation") == "bilinear" else "bicubic",
        mean=channel_values(pre["mean"], f"{directory}/visual/preprocess_cfg.json mean"),
        std=channel_values(pre["std"], f"{directory}/visual/preprocess_cfg.json std"),
    )
    text_cfg = config.get("text_cfg", {})
    tokenizer_file = directory / "textual" / "tokenizer.json"
    pad_token = _token_text(tokenizer_config.get("pad_token"))
    clean = text_cfg.get("tokenizer_kwargs", {}).get("clean", "whitespace")
    text = TextSpec(
        file="textual/model.onnx",
        output="",
        tokenizer="textual/tokenizer.json",
        input_ids="text",
        context_length=int(text_cfg.get("context_length", 77)),
        pad_to_context=True,
        pad_id=_pad_id(tokenizer_file, pad_token),
        clean="canonicalize" if clean == "canonicalize" else "whitespace",
    )
    return ModelSpec(model_id=model_id, dim=int(config["embed_dim"]),
                     image=TowerSpec(file="visual/model.onnx", output=""), text=text,
                     preprocess=preprocess, directory=directory)


def read_transformersjs_dir(directory: Path, model_id: str) -> ModelSpec:
    """A transformers.js export: ``onnx/{vision,text}_model.onnx`` beside transformers configs."""
    config = _json(directory / "config.json")
    preprocess = read_hf_preprocess(directory)
    model_type = config.get("model_type", "clip")
    text_config = config.get("text_config", {})
    tokenizer_config = (_json(directory / "tokenizer_config.json")
                        if (directory / "tokenizer_config.json").is_file() else {})
    siglip = model_type.startswith("siglip")
    dim = int(config.get("projection_dim") or text_config.get("projection_size") or text_config.get("hidden_size", 512))
    text = TextSpec(
        file="onnx/text_model.onnx",
        output="pooler_output" if siglip else "text_embeds",  # SigLIP: the head's embedding is pooler_output
        tokenizer="tokenizer.json",
        context_length=int(text_config.get("max_position_embeddings", 64 if siglip else 77)),
        pad_to_context=siglip,
        pad_id=_pad_id(directory / "tokenizer.json", _token_text(tokenizer_config.get("pad_token"))),
        clean="canonicalize" if siglip else "whitespace",
    )
    return ModelSpec(model_id=model_id, dim=dim,
                     image=TowerSpec(file="onnx/vision_model.onnx",
                                     output="pooler_output" if siglip else "image_embeds"), text=text,
                     preprocess=preprocess, directory=directory)
