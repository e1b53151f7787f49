"""ONNX Runtime backend: the default, torch-free way pixsearch runs a model."""

from __future__ import annotations

import os
import string
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .base import Embedder, l2_normalize
from .preprocess import to_model_input
from .spec import CleanMode, ModelError, ModelSpec, Tower

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

Array = npt.NDArray[Any]

_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def default_threads() -> int:
    return os.cpu_count() or 1


def _open_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"model file missing: {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle ORT workers spin for a while by default, taking both cores from the Milvus Lite process
    # that searches right after a text embedding: measured at 100k vectors, a text query took 47 ms
    # p50 with spinning and 32 ms without (embedding alone and indexing rates unchanged).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


Runner = Callable[[dict[str, Array]], Array]


@dataclass
class _Tower:
    """An open tower (ONNX Runtime session or OpenVINO compiled model) and how to call it."""

    inputs: dict[str, str]
    """Input names, in order, and their ONNX type strings ("tensor(int64)", ...)."""
    call: Runner
    """One run of the tower on a feed: its embedding output."""
    fixed_batch: int | None
    """Some exports (Immich's) are traced for batch 1 only; then items run one by one."""

    @property
    def first_input(self) -> str:
        return next(iter(self.inputs))

    def run(self, feed: dict[str, Array]) -> Array:
        count = len(next(iter(feed.values())))
        if self.fixed_batch is None or self.fixed_batch == count:
            return self.call(feed)
        step = self.fixed_batch
        return np.concatenate([self.call({k: v[i:i + step] for k, v in feed.items()}) for i in range(0, count, step)])


def _tower(path: Path, threads: int, output: str) -> _Tower:
    session = _open_session(path, threads)
    outputs = [o.name for o in session.get_outputs()]
    name = output if output in outputs else outputs[0]
    batch = session.get_inputs()[0].shape[0]

    def call(feed: dict[str, Array]) -> Array:
        return np.asarray(session.run([name], feed)[0])

    return _Tower(inputs={i.name: i.type for i in session.get_inputs()}, call=call,
                  fixed_batch=batch if isinstance(batch, int) and batch > 0 else None)


def clean_text(text: str, mode: CleanMode) -> str:
    """Normalise a query the way the model's text tower was trained."""
    text = " ".join(text.split())
    if mode == "canonicalize":
        text = text.translate(_PUNCTUATION).lower()
    return text


class OnnxEmbedder(Embedder):
    """Runs the image and text towers of a ModelSpec with ONNX Runtime.

    Each tower opens on first use, so a text-only search never pays for loading the
    image tower. ONNX Runtime sessions are safe to share between threads.
    """

    def __init__(self, spec: ModelSpec, threads: int = 0, variant: str = "fp32"):
        self.spec = spec
        self.model_id = spec.model_id
        self.dim = spec.dim
        self.preprocess = spec.preprocess
        self.threads = threads
        self.variant = variant if variant in spec.variants else "fp32"
        self.available_variants = tuple(spec.variants)
        self._lock = threading.Lock()
        self._image: _Tower | None = None
        self._text: _Tower | None = None
        self._tokenizer: Tokenizer | None = None

    def _file(self, tower: Tower) -> Path:
        return self.spec.path(self.spec.tower_file(tower, self.variant))

    def _open_tower(self, tower: Tower) -> _Tower:
        """Open one tower's file; another backend (``openvino.py``) overrides only this."""
        return _tower(self._file(tower), self.threads, self.spec.image.output if tower == "image" else
                      self.spec.text.output)

    def image_tower(self) -> _Tower:
        with self._lock:
            if self._image is None:
                self._image = self._open_tower("image")
            return self._image

    def text_tower(self) -> _Tower:
        with self._lock:
            if self._text is None:
                self._tokenizer = self._make_tokenizer()
                self._text = self._open_tower("text")
            return self._text

    def _make_tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        text = self.spec.text
        path = self.spec.path(text.tokenizer)
        if not path.is_file():
            raise ModelError(f"tokenizer missing: {path}")
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.enable_truncation(max_length=text.context_length)
        if text.pad_to_context:
            tokenizer.enable_padding(pad_id=text.pad_id, length=text.context_length)
        else:
            tokenizer.enable_padding(pad_id=text.pad_id)
        return tokenizer

    def embed_prepared(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if not len(crops):
            return np.zeros((0, self.dim), dtype=np.float32)
        tower = self.image_tower()
        batch = to_model_input(crops, self.preprocess)
        return l2_normalize(tower.run({tower.first_input: batch}))

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, cleaned, truncated and padded as the model was trained."""
        self.text_tower()
        if self._tokenizer is None:  # pragma: no cover - text_tower() made it
            raise ModelError(f"{self.model_id}: the tokenizer did not load")
        cleaned = [clean_text(t, self.spec.text.clean) for t in texts]
        encodings = self._tokenizer.encode_batch(cleaned)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tower = self.text_tower()
        ids, mask = self.tokenize(texts)
        inputs = tower.inputs
        id_name = next((n for n in (self.spec.text.input_ids, "input_ids", "text") if n in inputs), None)
        if id_name is None:
            raise ModelError(f"{self._file('text')}: no token-id input among {sorted(inputs)}")
        feed = {id_name: ids.astype(_INT_TYPES.get(inputs[id_name], np.int64))}
        if "attention_mask" in inputs:
            feed["attention_mask"] = mask.astype(_INT_TYPES.get(inputs["attention_mask"], np.int64))
        return l2_normalize(tower.run(feed))
