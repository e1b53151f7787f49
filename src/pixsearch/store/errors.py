"""The store's one error type, in a module of its own so every part of the package can raise it."""

from __future__ import annotations

from ..errors import PixsearchError


class StoreError(PixsearchError):
    """The store cannot do what was asked; the message says why and what to do."""
