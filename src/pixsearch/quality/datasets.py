"""Evaluation and training data: captions JSONL, labelled CSV, or a folder per label.

* **captions** (a JSONL file, one ``{"image": path, "captions": [...]}`` per line,
  COCO / Flickr30k style): every caption is a query and its own image the target.
* **labels** (a folder per label, or a CSV with ``path`` and ``label`` columns):
  prompts made from label names ("a photo of a {label}") are the queries, and
  every image of that label is relevant.

``eval`` measures retrieval on these and ``train`` learns from them; neither needs
the other to read them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import PixsearchError
from ..images import IMAGE_SUFFIXES

DEFAULT_TEMPLATES = ("a photo of a {label}",)


class EvalError(PixsearchError, ValueError):
    """Evaluation data or options pixsearch cannot use; the message says how to fix them."""


@dataclass
class Dataset:
    """Images to index and what to ask about them. Paths are absolute, as the indexer stores them."""

    kind: Literal["captions", "labels"]
    source: Path
    images: list[str]
    captions: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def label_names(self) -> list[str]:
        return sorted(set(self.labels.values()))

    def key(self) -> str:
        """Short id of this data, so eval collections of different data never mix."""
        return hashlib.blake2b(f"{self.source.resolve()}|{len(self.images)}".encode(), digest_size=4).hexdigest()


def read_captions(path: Path) -> Dataset:
    """A captions JSONL: ``{"image": path relative to the file, "captions": [..]}`` per line."""
    base = path.parent
    images: list[str] = []
    captions: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                image, texts = row["image"], row["captions"]
            except (ValueError, KeyError, TypeError) as exc:
                raise EvalError(f"{path}:{number}: expected {{\"image\": ..., \"captions\": [...]}} ({exc})") from exc
            if isinstance(texts, str):
                texts = [texts]
            full = os.path.abspath(base / os.path.expanduser(str(image)))
            if full not in captions:
                images.append(full)
            captions.setdefault(full, []).extend(str(t) for t in texts if str(t).strip())
    if not images:
        raise EvalError(f"{path} has no captioned images")
    return Dataset(kind="captions", source=path, images=images, captions=captions)


def read_label_csv(path: Path, split: str | None = None) -> Dataset:
    """A CSV with ``path`` and ``label`` columns (relative paths are relative to the CSV); optional ``split``."""
    labels: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "path" not in columns or "label" not in columns:
            raise EvalError(f"{path}: a labelled CSV needs 'path' and 'label' columns; found {columns}")
        if split and "split" not in columns:
            raise EvalError(f"{path}: --split {split} given but the CSV has no 'split' column")
        for row in reader:
            if split and (row.get("split") or "").strip() != split:
                continue
            raw, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
            if raw and label:
                labels[os.path.abspath(path.parent / os.path.expanduser(raw))] = label
    return _labelled(path, labels)


def read_label_folders(root: Path) -> Dataset:
    """A folder holding one sub-folder per label (the sub-folder's name is the label)."""
    labels: dict[str, str] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                labels[os.path.abspath(file)] = folder.name
    return _labelled(root, labels)


def _labelled(source: Path, labels: dict[str, str]) -> Dataset:
    names = set(labels.values())
    if len(names) < 2:
        raise EvalError(f"{source}: found {len(labels)} labelled images in {len(names)} label(s); label "
                        "evaluation needs at least two labels (a sub-folder per label, or a CSV label column)")
    return Dataset(kind="labels", source=source, images=sorted(labels), labels=labels)


def load_dataset(source: Path, split: str | None = None) -> Dataset:
    """Captions JSONL, labelled CSV, or a folder of label folders, chosen by what *source* is."""
    if source.is_dir():
        return read_label_folders(source)
    if not source.is_file():
        raise EvalError(f"{source}: no such file or folder")
    if source.suffix.lower() in (".jsonl", ".json"):
        return read_captions(source)
    if source.suffix.lower() == ".csv":
        return read_label_csv(source, split)
    raise EvalError(f"{source}: expected a captions .jsonl, a labelled .csv, or a folder with a sub-folder per label")


def prompts_for(labels: Iterable[str], templates: Sequence[str]) -> list[tuple[str, str]]:
    """(query text, label) for every label and template; '_' in label names reads as a space."""
    for template in templates:
        if "{label}" not in template:
            raise EvalError(f"template {template!r} has no {{label}} placeholder")
    return [(t.replace("{label}", label.replace("_", " ")), label) for label in labels for t in templates]
