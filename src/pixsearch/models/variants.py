"""The variants overlay: alternative ONNX towers (INT8) kept in pixsearch's cache, per model id.

``pixsearch quantize`` never writes into a model folder (a Hugging Face cache snapshot,
an Immich export, a folder of the user's): it writes the quantized towers and a small
``variants.json`` into ``<cache_dir>/variants/<model id>/``. ``load_spec`` merges that
file into ``ModelSpec.variants``, whatever the model's layout::

    {
      "model_id": "ViT-B-32__openai",
      "source": {"image": {"file": "visual/model.onnx", "bytes": 351468764, "digest": "..."},
                 "text": {...}},
      "variants": {"int8": {"image": "image.int8.onnx", "verified": true, "image_min_cosine": 0.99931, ...}}
    }

Each entry is a ``spec.Variant``; files written before it existed hold every value as a
string (``"verified": "true"``), which ``Variant.from_json`` still reads.

Tower files are relative to that folder; a tower a variant does not name runs its
fp32 file from the model folder. ``source`` fingerprints the fp32 towers the variant
was made and verified from: if the model's files change (a new hub revision, another
model under the same id) the overlay no longer applies and the model runs fp32 until
it is quantized again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .spec import ModelSpec, Tower, Variant

OVERLAY = "variants.json"
_DIGEST_SPAN = 1 << 20
"""Bytes hashed at each end of a tower file: enough to tell models apart, cheap on every load."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

log = logging.getLogger(__name__)


def overlay_dir(cache_dir: Path, model_id: str) -> Path:
    """The folder holding the variants of *model_id* (a file-system-safe, collision-free name)."""
    safe = _UNSAFE.sub("_", model_id).strip("._") or "model"
    if safe != model_id:
        safe += "-" + hashlib.blake2b(model_id.encode(), digest_size=4).hexdigest()
    return Path(cache_dir).expanduser() / "variants" / safe


def fingerprint(path: Path) -> dict[str, Any]:
    """Size and a hash of both ends of *path*: changes when the tower's graph or weights change."""
    size = path.stat().st_size
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        digest.update(handle.read(_DIGEST_SPAN))
        if size > _DIGEST_SPAN:
            handle.seek(max(_DIGEST_SPAN, size - _DIGEST_SPAN))
            digest.update(handle.read())
    return {"bytes": size, "digest": digest.hexdigest()}


def source_of(spec: ModelSpec) -> dict[str, Any]:
    """What the overlay records about the fp32 towers it was made from."""
    return {tower: {"file": file, **fingerprint(spec.path(file))}
            for tower, file in (("image", spec.image.file), ("text", spec.text.file))}


def _entries(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The raw ``variants`` entries of an overlay file, skipping any that are not JSON objects."""
    raw = data.get("variants")
    if not isinstance(raw, dict):
        return {}
    return {str(name): entry for name, entry in raw.items() if isinstance(entry, dict)}


def _read(folder: Path) -> dict[str, Any] | None:
    path = folder / OVERLAY
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _matches(data: dict[str, Any], spec: ModelSpec) -> bool:
    """The overlay was made from the fp32 files *spec* runs now."""
    try:
        return data.get("source") == source_of(spec)
    except OSError:  # a tower file is missing: the embedder will say so when it opens it
        return False


def read_overlay(spec: ModelSpec, cache_dir: Path) -> dict[str, Variant]:
    """The overlay variants of *spec* with absolute file paths, or {} (none, or made from other files)."""
    folder = overlay_dir(cache_dir, spec.model_id)
    data = _read(folder)
    if data is None:
        return {}
    if not _matches(data, spec):
        log.warning("%s was made from other model files than %s's; run `pixsearch quantize` again",
                    folder / OVERLAY, spec.model_id)
        return {}
    merged = {}
    for name, entry in _entries(data).items():
        variant = Variant.from_json(entry)
        merged[name] = dataclasses.replace(
            variant, image=str(folder / variant.image) if variant.image else None,
            text=str(folder / variant.text) if variant.text else None)
    return merged


def with_overlay(spec: ModelSpec, cache_dir: Path) -> ModelSpec:
    """*spec* with its overlay variants merged in (they win over a manifest's own ``variants``)."""
    overlay = read_overlay(spec, cache_dir)
    if not overlay:
        return spec
    return dataclasses.replace(spec, variants={**spec.variants, **overlay})


def write_overlay(spec: ModelSpec, cache_dir: Path, name: str, entry: Variant,
                  files: dict[Tower, Path]) -> Path:
    """Record variant *name* of *spec*: move its tower *files* (tower -> path) into the overlay folder.

    *entry* names each tower file relative to the folder, as ``files`` will be placed;
    towers absent from *entry* run fp32. Files are replaced one by one and the JSON
    last (atomically), so a process loading the model meanwhile sees a usable state.
    """
    folder = overlay_dir(cache_dir, spec.model_id)
    folder.mkdir(parents=True, exist_ok=True)
    for tower, path in files.items():
        target = entry.file(tower)
        if not target:
            raise ValueError(f"variant {name!r} names no {tower} file for {path}")
        os.replace(path, folder / target)
    data = _read(folder)
    variants = _entries(data) if data is not None and _matches(data, spec) else {}
    variants[name] = entry.to_json()
    payload = {"model_id": spec.model_id, "source": source_of(spec), "variants": variants}
    handle, tmp = tempfile.mkstemp(prefix=".variants-", suffix=".json", dir=folder)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, folder / OVERLAY)
    used = {str(value) for raw in variants.values() for key, value in raw.items() if key in ("image", "text")}
    for stale in folder.glob("*.onnx"):  # towers an earlier run wrote and this one no longer uses
        if stale.name not in used:
            stale.unlink(missing_ok=True)
    return folder / OVERLAY
