"""A tiny CLIP-like model in pixsearch's ONNX layout, written with ``onnx.helper``: no torch needed.

The index, search, API, CLI and quantizer tests only need *a* model pixsearch can load whose
embeddings are real functions of its inputs; converting a transformers checkpoint needs the torch
extra, so building the test model that way made a default install skip most of the suite. This
module writes the same files ``pixsearch convert`` writes for the tiny preset (``visual.onnx``,
``textual.onnx``, ``tokenizer.json``, ``pixsearch.json``) with the same input and output names,
shapes and dtypes, the same tokenizer rules and the same preprocessing:

* image tower: 8x8 patch embedding (Conv), position embedding, two residual MLP blocks applied
  per patch, mean over patches, final LayerNorm, projection to 16 dimensions;
* text tower: token + position embedding, mean over the tokens up to the first end-of-text token
  (so padding, whatever the mask says, never changes a query, as in CLIP's causal tower), two
  residual MLP blocks, final LayerNorm, projection;
* tokenizer: CLIP-style byte-level BPE learned from the given texts (every byte encodable).

Node names follow the transformers export (``/text_model/encoder/layers.0/mlp/fc1/MatMul``...)
so the quantizer's recipes find the layers they keep in fp32. Weights are seeded random numbers:
the same seed gives the same bytes, hence the same model id, in every run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

OPSET = 17
IR_VERSION = 8
"""What the torch exporter writes for opset 17: readable by every onnxruntime pixsearch supports."""
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
BOS_ID, EOS_ID = 0, 1
"""Special tokens come first in the vocabulary; EOS also pads, as in OpenAI's CLIP tokenizer."""
CLIP_SPLIT = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"
              r"[^\s\p{L}\p{N}]+")
"""The word split of transformers' CLIPTokenizerFast."""
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class TinyShape:
    image_size: int = 32
    patch_size: int = 8
    vision_width: int = 32
    text_width: int = 32
    layers: int = 2
    embed_dim: int = 16
    context_length: int = 32


# ----------------------------------------------------------------------------- tokenizer


def learn_merges(words: Counter[tuple[str, ...]], max_merges: int) -> list[tuple[str, str]]:
    """Byte-pair merges learned from *words* (symbol tuples with their counts), most frequent pair first.

    Written out rather than taken from ``tokenizers.trainers.BpeTrainer``: that trainer numbers
    tokens and breaks ties in hash order, so each run would write a different tokenizer (hence
    model id). Here ties go to the alphabetically first pair: the same texts, the same merges.
    """
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for symbols, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if symbols[i:i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> Tokenizer:
    """A CLIP-style tokenizer (lower-cased, byte-level BPE with ``</w>`` word ends) learned from *texts*.

    Every byte, word-final or not, is in the vocabulary, so any query encodes.
    """
    normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                       normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    words: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        for word, _span in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            words[(*word[:-1], word[-1] + "</w>")] += 1
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {BOS: BOS_ID, EOS: EOS_ID}
    for token in alphabet + [char + "</w>" for char in alphabet]:
        vocab[token] = len(vocab)
    merges = learn_merges(words, max_merges=vocab_size - len(vocab))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", unk_token=EOS))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.BPEDecoder(suffix="</w>")
    tokenizer.add_special_tokens([BOS, EOS])
    tokenizer.post_processor = processors.RobertaProcessing((EOS, EOS_ID), (BOS, BOS_ID),
                                                            trim_offsets=False, add_prefix_space=False)
    return tokenizer


# ----------------------------------------------------------------------------- graphs


class _Graph:
    """Nodes and seeded random weights of one tower, named like a transformers export."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []

    def weight(self, name: str, array: np.ndarray) -> str:
        self.weights.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def const(self, name: str, array: np.ndarray) -> str:
        self.weights.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Add a node; its single output is named after the node, as the torch exporter does."""
        output = f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name, None, None, **attrs))
        return output

    def random(self, path: str, shape: tuple[int, ...], scale: float) -> str:
        """A weight initialiser for module *path* (``a/b.0/c``), named ``a.b.0.c.weight`` as in torch."""
        return self.weight(path.replace("/", "."), self.rng.standard_normal(shape) * scale)

    def linear(self, x: str, path: str, fan_in: int, fan_out: int, bias: bool = True) -> str:
        weight = self.random(f"{path}/weight", (fan_in, fan_out), fan_in ** -0.5)
        out = self.op("MatMul", [x, weight], f"/{path}/MatMul")
        if not bias:
            return out
        return self.op("Add", [out, self.random(f"{path}/bias", (fan_out,), 0.02)], f"/{path}/Add")

    def layer_norm(self, x: str, path: str, width: int) -> str:
        scale = self.weight(f"{path.replace('/', '.')}.weight", 1 + self.rng.standard_normal(width) * 0.1)
        shift = self.weight(f"{path.replace('/', '.')}.bias", self.rng.standard_normal(width) * 0.02)
        return self.op("LayerNormalization", [x, scale, shift], f"/{path}/LayerNorm", axis=-1, epsilon=1e-5)

    def mlp_block(self, x: str, path: str, width: int) -> str:
        """x + fc2(relu(fc1(layer_norm(x)))), for a block *path* such as ``text_model/encoder/layers.0``."""
        h = self.layer_norm(x, f"{path}/layer_norm", width)
        h = self.linear(h, f"{path}/mlp/fc1", width, 4 * width)
        h = self.op("Relu", [h], f"/{path}/mlp/act/Relu")
        h = self.linear(h, f"{path}/mlp/fc2", 4 * width, width)
        return self.op("Add", [x, h], f"/{path}/residual/Add")

    def model(self, name: str, inputs: list[onnx.ValueInfoProto],
              outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="pixsearch-tests")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def image_tower(shape: TinyShape, rng: np.random.Generator) -> onnx.ModelProto:
    """pixel_values (batch, 3, H, W) float32 -> image_embeds (batch, embed_dim), not normalised."""
    g, width = _Graph(rng), shape.vision_width
    patches = (shape.image_size // shape.patch_size) ** 2
    kernel = g.random("vision_model/embeddings/patch_embedding/weight", (width, 3, shape.patch_size, shape.patch_size),
                      (3 * shape.patch_size ** 2) ** -0.5)
    x = g.op("Conv", ["pixel_values", kernel], "/vision_model/embeddings/patch_embedding/Conv",
             kernel_shape=[shape.patch_size] * 2, strides=[shape.patch_size] * 2)
    x = g.op("Reshape", [x, g.const("patch_grid_shape", np.array([0, width, -1], dtype=np.int64))],
             "/vision_model/embeddings/Reshape")
    x = g.op("Transpose", [x], "/vision_model/embeddings/Transpose", perm=[0, 2, 1])  # (batch, patches, width)
    x = g.op("Add", [x, g.random("vision_model/embeddings/position_embedding/weight", (patches, width), 0.5)],
             "/vision_model/embeddings/Add")
    for layer in range(shape.layers):
        x = g.mlp_block(x, f"vision_model/encoder/layers.{layer}", width)
    x = g.op("ReduceMean", [x], "/vision_model/pool/ReduceMean", axes=[1], keepdims=0)
    x = g.layer_norm(x, "vision_model/post_layernorm", width)
    x = g.linear(x, "visual_projection", width, shape.embed_dim, bias=False)
    g.nodes.append(helper.make_node("Identity", [x], ["image_embeds"], name="/visual_projection/Identity"))
    size = shape.image_size
    return g.model("tiny_image_tower",
                   [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, size, size])],
                   [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", shape.embed_dim])])


def _pool_to_first_eos(g: _Graph, x: str) -> str:
    """Mean of the token vectors *x* up to and including each row's first EOS.

    EOS also pads, so a token is kept when no EOS comes before it; the attention mask, which only
    ever removes padding beyond that EOS, is applied as well. Padding to any length (Immich pads to
    the context with an all-ones mask) therefore leaves a query's embedding unchanged.
    """
    def axes(name: str, *values: int) -> str:
        return g.const(name, np.array(values, dtype=np.int64))

    eos = g.op("Equal", ["input_ids", g.const("eos_id", np.array(EOS_ID, dtype=np.int64))], "/text_model/pool/Equal")
    is_eos = g.op("Cast", [eos], "/text_model/pool/Cast", to=TensorProto.FLOAT)
    seen = g.op("CumSum", [is_eos, g.const("token_axis", np.array(1, dtype=np.int64))], "/text_model/pool/CumSum")
    before = g.op("Sub", [seen, is_eos], "/text_model/pool/Sub")
    first = g.op("Equal", [before, g.weight("no_eos_yet", np.array(0.0))], "/text_model/pool/Equal_1")
    keep = g.op("Cast", [first], "/text_model/pool/Cast_1", to=TensorProto.FLOAT)
    mask = g.op("Cast", ["attention_mask"], "/text_model/pool/Cast_2", to=TensorProto.FLOAT)
    weights = g.op("Mul", [keep, mask], "/text_model/pool/Mul")
    column = g.op("Unsqueeze", [weights, axes("last_axis", -1)], "/text_model/pool/Unsqueeze")
    weighted = g.op("Mul", [x, column], "/text_model/pool/Mul_1")
    summed = g.op("ReduceSum", [weighted, axes("token_axes", 1)], "/text_model/pool/ReduceSum", keepdims=0)
    count = g.op("ReduceSum", [weights, axes("token_axes_1", 1)], "/text_model/pool/ReduceSum_1", keepdims=1)
    count = g.op("Max", [count, g.weight("one", np.array(1.0))], "/text_model/pool/Max")
    return g.op("Div", [summed, count], "/text_model/pool/Div")


def text_tower(shape: TinyShape, vocab_size: int, rng: np.random.Generator) -> onnx.ModelProto:
    """input_ids, attention_mask (batch, tokens) int64 -> text_embeds (batch, embed_dim), not normalised."""
    g, width = _Graph(rng), shape.text_width
    table = g.random("text_model/embeddings/token_embedding/weight", (vocab_size, width), 1.0)
    x = g.op("Gather", [table, "input_ids"], "/text_model/embeddings/token_embedding/Gather")
    tokens = g.op("Shape", ["input_ids"], "/text_model/embeddings/Shape", start=1, end=2)
    positions = g.op("Slice", [g.random("text_model/embeddings/position_embedding/weight",
                                        (shape.context_length, width), 0.5),
                               g.const("zero", np.array([0], dtype=np.int64)), tokens,
                               g.const("axis0", np.array([0], dtype=np.int64))],
                     "/text_model/embeddings/position_embedding/Slice")
    x = g.op("Add", [x, positions], "/text_model/embeddings/Add")
    x = _pool_to_first_eos(g, x)
    for layer in range(shape.layers):
        x = g.mlp_block(x, f"text_model/encoder/layers.{layer}", width)
    x = g.layer_norm(x, "text_model/final_layer_norm", width)
    x = g.linear(x, "text_projection", width, shape.embed_dim, bias=False)
    g.nodes.append(helper.make_node("Identity", [x], ["text_embeds"], name="/text_projection/Identity"))
    ids = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])
           for name in ("input_ids", "attention_mask")]
    return g.model("tiny_text_tower", ids,
                   [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", shape.embed_dim])])


# ----------------------------------------------------------------------------- model folder


def _content_id(directory: Path, names: Iterable[str]) -> str:
    digest = hashlib.blake2b(digest_size=5)
    for name in names:
        digest.update(name.encode())
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()


def build_tiny_model(out_dir: Path, texts: Iterable[str], seed: int = 0, shape: TinyShape = TinyShape()) -> Path:
    """Write a tiny pixsearch-layout model into *out_dir* (created) and return it.

    The model id is ``tiny-clip-<hash of the files>``, like a converted ``tiny-clip`` checkpoint's.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokenizer = train_tokenizer(texts)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    onnx.save(image_tower(shape, rng), str(out_dir / "visual.onnx"))
    onnx.save(text_tower(shape, tokenizer.get_vocab_size(), rng), str(out_dir / "textual.onnx"))
    manifest = {
        "format": "pixsearch-onnx", "version": 1,
        "model_id": f"tiny-clip-{_content_id(out_dir, ('visual.onnx', 'textual.onnx', 'tokenizer.json'))}",
        "dim": shape.embed_dim,
        "image": {"file": "visual.onnx", "output": "image_embeds"},
        "text": {"file": "textual.onnx", "output": "text_embeds", "tokenizer": "tokenizer.json",
                 "input_ids": "input_ids", "context_length": shape.context_length, "pad_to_context": False,
                 "pad_id": EOS_ID, "clean": "whitespace"},
        "preprocess": {"size": [shape.image_size, shape.image_size], "resize": "shortest", "interpolation": "bicubic",
                       "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD), "shortest_edge": shape.image_size},
        "variants": {},
    }
    (out_dir / "pixsearch.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir
