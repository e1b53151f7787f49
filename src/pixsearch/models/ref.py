"""What a ``--model`` value names: a local folder, a Hugging Face Hub repository, or a registry entry.

One parser for every caller (loading a model, ``pixsearch train``, recording the model of a
collection), in the spirit of open_clip's ``factory.parse_model_name``. The forms, tried in
this order:

* an existing directory (``~`` expanded): a model folder of any layout pixsearch reads;
* ``hf-hub:owner/repo``: that Hugging Face Hub repository;
* a name in the registry (``pixsearch models`` lists them).

A folder wins over the other two, so a local copy named like a registry entry is used as is.
Anything else is an error that says which of the three forms was probably meant.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .registry import REGISTRY, KnownModel
from .spec import ModelError

HUB_PREFIX = "hf-hub:"

RefKind = Literal["folder", "hub", "registry"]


class UnknownModel(ModelError):
    """A ``--model`` value that is none of the three forms; the message lists them."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``--model`` value."""

    text: str
    """The value as given."""
    kind: RefKind
    path: Path | None = None
    """The folder (``~`` expanded, not resolved) when *kind* is ``folder``."""
    repo: str | None = None
    """``owner/repo`` on the Hugging Face Hub, for ``hub`` and ``registry`` references."""
    known: KnownModel | None = None
    """The registry entry, for ``registry`` references."""

    @property
    def recorded(self) -> str:
        """How a collection records this model: a folder as its absolute path (so any working directory
        finds it again), a name as given."""
        return os.path.abspath(self.path) if self.path is not None else self.text

    @property
    def model_id(self) -> str | None:
        """The id to record for this model, or None when only its files can tell (a folder)."""
        if self.known is not None:
            return self.known.name
        if self.kind == "hub" and self.repo is not None:
            return self.repo.replace("/", "__")
        return None


def _hub_repo(text: str) -> str:
    """``owner/repo`` of an ``hf-hub:`` reference, refusing shapes the Hub never has."""
    repo = text[len(HUB_PREFIX):].strip()
    owner, slash, name = repo.partition("/")
    if not slash or not owner or not name or "/" in name or any(c.isspace() for c in repo):
        raise UnknownModel(f"--model {text!r}: expected {HUB_PREFIX}owner/repo (one owner, one repository "
                           f"name, e.g. {HUB_PREFIX}openai/clip-vit-base-patch32)")
    return repo


def _looks_like_path(text: str, local: Path) -> bool:
    return local.exists() or "/" in text or "\\" in text or text.startswith((".", "~"))


def parse_model_ref(text: str) -> ModelRef:
    """Classify a ``--model`` value; raises UnknownModel (a ModelError) when it is none of the forms."""
    if not text.strip():
        raise UnknownModel("--model is empty: give a registry name (`pixsearch models` lists them), "
                           f"{HUB_PREFIX}owner/repo, or a local model directory")
    local = Path(text).expanduser()
    if local.is_dir():
        return ModelRef(text=text, kind="folder", path=local)
    if text.startswith(HUB_PREFIX):
        return ModelRef(text=text, kind="hub", repo=_hub_repo(text))
    known = REGISTRY.get(text)
    if known is not None:
        return ModelRef(text=text, kind="registry", repo=known.repo, known=known)
    if _looks_like_path(text, local):
        reason = "not a directory" if local.exists() else "no such directory"
        raise UnknownModel(f"--model {text!r}: {reason} (a model folder holds pixsearch.json, an Immich or "
                           "transformers.js export, or a transformers checkpoint)")
    raise UnknownModel(f"unknown model {text!r}: run `pixsearch models` for the names pixsearch knows, "
                       f"use {HUB_PREFIX}owner/repo, or pass a local model directory")
