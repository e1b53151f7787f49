"""The one interface every embedding backend implements.

Indexing, search, eval and the server only see an ``Embedder``: a model id, a
dimension, how images must be prepared, and two batch calls that return
L2-normalised float32 rows (so inner product == cosine similarity).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from .preprocess import PreprocessConfig, resize_and_crop


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return unit


class Embedder(ABC):
    model_id: str
    dim: int
    preprocess: PreprocessConfig
    variant: str = "fp32"
    """The precision variant running (fp32, int8...)."""
    available_variants: tuple[str, ...] = ()
    """Every variant this model has besides fp32 (an INT8 one made by ``pixsearch quantize``, or one
    its manifest declares), verified or not, running now or not."""

    @property
    def min_decode_side(self) -> int:
        """Smallest short side worth decoding: anything larger is thrown away by resizing."""
        return self.preprocess.shortest_edge or min(self.preprocess.size)

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Model-sized uint8 crop of an RGB image. Thread-safe; run it in decode workers."""
        return resize_and_crop(rgb, self.preprocess)

    @abstractmethod
    def embed_prepared(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings (N x dim, unit length) of crops made by ``prepare``."""

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings (N x dim, unit length) of text queries."""

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of full RGB images (prepare + embed_prepared)."""
        return self.embed_prepared([self.prepare(img) for img in images])
