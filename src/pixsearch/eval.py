"""Retrieval quality you can measure: ``pixsearch eval``.

Two kinds of evaluation data:

* **captions** (a JSONL file, one ``{"image": path, "captions": [...]}`` per line,
  COCO / Flickr30k style): every caption is a query and its own image the target;
  reported as Recall@k and median rank.
* **labels** (a folder per label, or a CSV with ``path`` and ``label`` columns):
  prompts made from label names ("a photo of a {label}") are queries and every image
  of that label is relevant; reported as precision@k and mean average precision,
  plus image-to-image label precision@k (each image as a query, itself excluded).

The images are indexed with the product's own ``Indexer`` into a Milvus collection
and searched with ``Store.search``, so the figures are what users get. ``exact=True``
also ranks the same stored vectors by brute force in NumPy, which separates the
model's quality from the approximate index's losses.

The metric functions at the top are pure and take plain rankings, so they are
tested on hand-made cases.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .config import Settings
from .errors import PixsearchError
from .images import IMAGE_SUFFIXES

DEFAULT_TEMPLATES = ("a photo of a {label}",)
DEFAULT_KS = (1, 5, 10)
MAX_DEPTH = 1000
"""Deepest ranking fetched per query: ranks beyond it count as 'not found'."""
CURVE_POINTS = 50
_QUERY_CHUNK = 128


class EvalError(PixsearchError, ValueError):
    """Evaluation data or options pixsearch cannot use; the message says how to fix them."""


# ----------------------------------------------------------------------------- metrics (pure)


def target_rank(ranking: Sequence[str], target: str) -> int | None:
    """1-based position of *target* in *ranking*, or None when it was not retrieved."""
    for position, item in enumerate(ranking, start=1):
        if item == target:
            return position
    return None


def recall_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose single target is within the first *k* results."""
    if not ranks:
        return 0.0
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def median_rank(ranks: Sequence[int | None]) -> float | None:
    """Median target rank (lower is better); None when over half the targets were never retrieved."""
    if not ranks:
        return None
    big = float("inf")
    value = statistics.median([float(r) if r is not None else big for r in ranks])
    return None if value == big else value


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """Share of the first *k* results that are relevant (missing results count as wrong)."""
    return sum(1 for flag in relevant[:k] if flag) / k if k > 0 else 0.0


def average_precision(relevant: Sequence[bool], total_relevant: int) -> float:
    """Mean of precision@i over the ranks i of the relevant results, divided by all relevant items.

    Relevant items missing from the ranking contribute zero, so a truncated ranking
    can only under-state AP.
    """
    if total_relevant <= 0:
        return 0.0
    found, score = 0, 0.0
    for position, flag in enumerate(relevant, start=1):
        if flag:
            found += 1
            score += found / position
    return score / total_relevant


def hits_at_k(relevant: Sequence[bool], k: int, total_relevant: int) -> float:
    """Relevant results in the top *k* over the most that could be there, min(k, total_relevant).

    With one relevant item this is plain Recall@k; with many it is precision@k that
    does not punish classes smaller than k. ``train`` uses it for early stopping.
    """
    best = min(k, total_relevant)
    return sum(1 for flag in relevant[:k] if flag) / best if best > 0 else 0.0


def overlap_at_k(approximate: Sequence[str], exact: Sequence[str], k: int) -> float:
    """ANN recall: share of the exact top-*k* that the approximate search also returned in its top-*k*."""
    truth = set(exact[:k])
    return len(truth.intersection(approximate[:k])) / len(truth) if truth else 1.0


# ----------------------------------------------------------------------------- data


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
    base, images, captions = path.parent, [], {}
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
            captions.setdefault(full, []).extend(t for t in texts if str(t).strip())
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
    labels = {}
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


# ----------------------------------------------------------------------------- ranking


Ranker = Callable[[np.ndarray, int], list[list[str]]]


def ann_ranker(store) -> Ranker:
    """Rankings (image paths, best first) from the Milvus index, as ``pixsearch search`` gets them."""

    def rank(vectors: np.ndarray, depth: int) -> list[list[str]]:
        out: list[list[str]] = []
        for start in range(0, len(vectors), _QUERY_CHUNK):
            hits = store.search(vectors[start:start + _QUERY_CHUNK], k=depth, output_fields=("path",))
            out.extend([hit.path for hit in row] for row in hits)
        return out

    return rank


def exact_ranker(paths: Sequence[str], matrix: np.ndarray) -> Ranker:
    """Rankings by brute-force inner product over the very vectors stored in Milvus."""

    def rank(vectors: np.ndarray, depth: int) -> list[list[str]]:
        scores = np.asarray(vectors, dtype=np.float32) @ matrix.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        return [[paths[i] for i in row] for row in order]

    return rank


# ----------------------------------------------------------------------------- scoring


def score_captions(rankings: list[list[str]], targets: Sequence[str], ks: Sequence[int]) -> dict:
    ranks = [target_rank(r, t) for r, t in zip(rankings, targets)]
    curve_to = min(CURVE_POINTS, max(len(r) for r in rankings) if rankings else 1)
    return {"queries": len(ranks), **{f"recall@{k}": recall_at_k(ranks, k) for k in ks},
            "median_rank": median_rank(ranks),
            "curve": [recall_at_k(ranks, k) for k in range(1, curve_to + 1)]}


def score_labels(rankings: list[list[str]], query_labels: Sequence[str], labels: dict[str, str],
                 ks: Sequence[int]) -> dict:
    totals: dict[str, int] = {}
    for label in labels.values():
        totals[label] = totals.get(label, 0) + 1
    per_label: dict[str, dict[str, list[float]]] = {}
    for ranking, label in zip(rankings, query_labels):
        relevant = [labels.get(p) == label for p in ranking]
        entry = per_label.setdefault(label, {"ap": [], **{f"precision@{k}": [] for k in ks}})
        entry["ap"].append(average_precision(relevant, totals[label]))
        for k in ks:
            entry[f"precision@{k}"].append(precision_at_k(relevant, k))
    means = {name: {metric: float(np.mean(values)) for metric, values in entry.items()}
             for name, entry in sorted(per_label.items())}
    return {"queries": len(rankings), **{f"precision@{k}": float(np.mean([m[f"precision@{k}"] for m in means.values()]))
                                         for k in ks},
            "map": float(np.mean([m["ap"] for m in means.values()])), "per_label": means}


def score_image_to_image(rankings: list[list[str]], queries: Sequence[str], labels: dict[str, str],
                         ks: Sequence[int]) -> dict:
    """Label precision@k of each image's neighbours, the query image itself removed."""
    out = {}
    for k in ks:
        values = []
        for ranking, query in zip(rankings, queries):
            others = [p for p in ranking if p != query]
            values.append(precision_at_k([labels.get(p) == labels[query] for p in others], k))
        out[f"precision@{k}"] = float(np.mean(values)) if values else 0.0
    return out


def chance(dataset: Dataset, ks: Sequence[int]) -> dict:
    """What a random ranking scores, the floor every model must clear."""
    n = len(dataset.images)
    if dataset.kind == "captions":
        return {**{f"recall@{k}": min(1.0, k / n) for k in ks}, "median_rank": (n + 1) / 2}
    counts = {name: sum(1 for v in dataset.labels.values() if v == name) for name in dataset.label_names}
    same = float(np.mean([(counts[label] - 1) / max(1, n - 1) for label in dataset.labels.values()]))
    return {**{f"precision@{k}": float(np.mean([c / n for c in counts.values()])) for k in ks},
            "image_to_image_precision": same}


def label_chance(dataset: Dataset) -> dict[str, float]:
    """Per label, the precision a random ranking expects: the label's share of the images."""
    n = len(dataset.images)
    return {name: sum(1 for v in dataset.labels.values() if v == name) / n for name in dataset.label_names}


def evaluate_rankings(dataset: Dataset, rank: Ranker, text_vectors: np.ndarray, queries: list[tuple[str, str]],
                      image_paths: Sequence[str], image_vectors: np.ndarray, ks: Sequence[int]) -> dict:
    """All metrics of one ranker (ANN or exact) on *dataset*."""
    depth = min(len(image_paths), MAX_DEPTH)
    rankings = rank(text_vectors, depth)
    if dataset.kind == "captions":
        return score_captions(rankings, [target for _, target in queries], ks)
    result = score_labels(rankings, [label for _, label in queries], dataset.labels, ks)
    neighbours = rank(image_vectors, min(len(image_paths), max(ks) + 1))
    result["image_to_image"] = score_image_to_image(neighbours, image_paths, dataset.labels, ks)
    return result


# ----------------------------------------------------------------------------- running one model


def queries_of(dataset: Dataset, templates: Sequence[str]) -> list[tuple[str, str]]:
    """(text, target) pairs: target is an image path (captions) or a label (labels)."""
    if dataset.kind == "captions":
        return [(c, path) for path in dataset.images for c in dataset.captions[path]]
    return prompts_for(dataset.label_names, templates)


def _embed_texts(embedder, texts: Sequence[str], batch: int = 64) -> np.ndarray:
    parts = [embedder.embed_texts(list(texts[i:i + batch])) for i in range(0, len(texts), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)


def evaluate_model(dataset: Dataset, model: str, settings: Settings, templates: Sequence[str] = DEFAULT_TEMPLATES,
                   ks: Sequence[int] = DEFAULT_KS, exact: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Index *dataset* with *model* into ``settings.db`` and measure retrieval through Milvus."""
    from .models import load_spec
    from .store import collection_name_for
    from .workspace import new_indexer, open_workspace

    spec = load_spec(model, Path(settings.cache_dir).expanduser())
    collection = f"{collection_name_for(spec.model_id)[:160]}_eval_{dataset.key()}"
    ws = open_workspace(settings.with_overrides({"model": model, "collection": collection}), create=True)
    try:
        indexer = new_indexer(ws, settings)
        report = indexer.run(dataset.images, delete=False, progress=progress)
        wanted = set(dataset.images)
        rows = [r for r in ws.store.iter_rows(("path", "vector")) if r["path"] in wanted]
        if not rows:
            raise EvalError(f"none of the {len(dataset.images)} images could be indexed; first problem: "
                            f"{report.skipped[0] if report.skipped else 'unknown'}")
        paths = [r["path"] for r in rows]
        matrix = np.stack([r["vector"] for r in rows]).astype(np.float32)
        indexed = set(paths)
        queries = [(text, target) for text, target in queries_of(dataset, templates)
                   if dataset.kind == "labels" or target in indexed]
        started = time.perf_counter()
        text_vectors = _embed_texts(ws.embedder, [text for text, _ in queries])
        ann = evaluate_rankings(dataset, ann_ranker(ws.store), text_vectors, queries, paths, matrix, ks)
        result = {"model": model, "model_id": spec.model_id, "dim": spec.dim, "images": len(paths),
                  "skipped": [{"path": p, "reason": r} for p, r in report.skipped],
                  "index_seconds": round(report.seconds, 2), "ann": ann,
                  "query_seconds": round(time.perf_counter() - started, 2)}
        if exact:
            result["exact"] = evaluate_rankings(dataset, exact_ranker(paths, matrix), text_vectors, queries,
                                                paths, matrix, ks)
            result["ann_recall"] = ann_vs_exact(ann_ranker(ws.store), exact_ranker(paths, matrix),
                                                text_vectors, min(max(ks), len(paths)))
        return result
    finally:
        ws.close()


def ann_vs_exact(ann: Ranker, exact: Ranker, vectors: np.ndarray, k: int) -> dict:
    """Mean share of the exact top-k that the ANN index also returns (1.0 = no loss from the index)."""
    got, truth = ann(vectors, k), exact(vectors, k)
    return {f"recall@{k}": float(np.mean([overlap_at_k(a, b, k) for a, b in zip(got, truth)])) if got else 1.0}


def run_eval(source: Path, models: Sequence[str], settings: Settings, db: str | None = None,
             templates: Sequence[str] = DEFAULT_TEMPLATES, ks: Sequence[int] = DEFAULT_KS, exact: bool = False,
             split: str | None = None, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Evaluate every model on *source*; with no *db*, in a temporary Milvus Lite file removed afterwards."""
    models = list(dict.fromkeys(models))
    if not models:
        raise EvalError("give at least one --model")
    ks = sorted({int(k) for k in ks})
    if ks[0] < 1:
        raise EvalError("--k values must be positive")
    dataset = load_dataset(source, split)
    with tempfile.TemporaryDirectory(prefix="pixsearch-eval-") as tmp:
        settings = settings.with_overrides({"db": db or str(Path(tmp) / "eval.db")})
        results = []
        for model in models:
            callback = (lambda done, total, m=model: progress(m, done, total)) if progress else None
            results.append(evaluate_model(dataset, model, settings, templates, ks, exact, callback))
    return {"dataset": str(source), "kind": dataset.kind, "images": len(dataset.images),
            "labels": dataset.label_names if dataset.kind == "labels" else None,
            "templates": list(templates) if dataset.kind == "labels" else None,
            "ks": ks, "chance": chance(dataset, ks), "label_chance": label_chance(dataset),
            "backend": "milvus-lite (temporary)" if db is None else db,
            "models": results}
