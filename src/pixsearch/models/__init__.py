"""Embedding models: one interface (``Embedder``), an ONNX Runtime backend, and loaders."""

from .base import Embedder, l2_normalize
from .loader import ModelUnavailable, load_embedder, load_spec
from .registry import REGISTRY, KnownModel
from .spec import ModelError, ModelSpec

__all__ = [
           "REGISTRY",
           "Embedder",
           "KnownModel",
           "ModelError",
           "ModelSpec",
           "ModelUnavailable",
           "l2_normalize",
           "load_embedder",
           "load_spec",
]
