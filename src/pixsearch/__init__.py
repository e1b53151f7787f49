"""pixsearch: text-to-image search over your own pictures (CLIP-family models, Milvus)."""

__version__ = "0.1.0"
