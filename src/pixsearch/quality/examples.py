"""Training pairs from a dataset, and the seeded train/validation split.

With labelled images the captions come from templates ("a photo of a {label}"), so
every image of a label shares its captions; such images form one *group*, and the
loss treats pairs of the same group as positives for each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PixsearchError
from .datasets import Dataset, prompts_for


class SplitError(PixsearchError, ValueError):
    """A validation share outside [0, 1)."""


@dataclass
class Examples:
    """Training pairs: each image with its captions and a group id (same group = mutual positives)."""

    paths: list[str]
    captions: list[list[str]]
    groups: list[int]


def examples_from(dataset: Dataset, templates: Sequence[str]) -> Examples:
    """Every captioned image its own group; every label one group, captioned by the templates."""
    if dataset.kind == "captions":
        keep = [p for p in dataset.images if dataset.captions.get(p)]
        return Examples(paths=keep, captions=[dataset.captions[p] for p in keep], groups=list(range(len(keep))))
    names = dataset.label_names
    prompts = {name: [text for text, _ in prompts_for([name], templates)] for name in names}
    return Examples(paths=list(dataset.images), captions=[prompts[dataset.labels[p]] for p in dataset.images],
                    groups=[names.index(dataset.labels[p]) for p in dataset.images])


def subset(examples: Examples, indices: Sequence[int]) -> Examples:
    return Examples(paths=[examples.paths[i] for i in indices], captions=[examples.captions[i] for i in indices],
                    groups=[examples.groups[i] for i in indices])


def split_indices(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: a seeded shuffle, at least two items left for training."""
    if not 0.0 <= fraction < 1.0:
        raise SplitError(f"--val-split must be in [0, 1), got {fraction}")
    order: list[int] = np.random.default_rng(seed).permutation(count).tolist()
    n_val = min(round(count * fraction), max(0, count - 2))
    return sorted(order[n_val:]), sorted(order[:n_val])
