"""The root of pixsearch's own errors.

Every error pixsearch raises on purpose, with a message a user can act on, derives from
``PixsearchError``. The CLI, the API and the page turn these (and only these) into one-line answers;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PixsearchError(Exception):
    """An expected failure whose message says what failed and what to do about it."""
