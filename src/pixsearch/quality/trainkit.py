"""Plumbing for ``pixsearch train``: errors, progress hooks, the decoded-crop cache, loss and optimiser.

Kept apart from train.py so the training logic reads on its own. torch is only
imported inside the functions that need it (it is the optional ``torch`` extra).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from ..errors import PixsearchError
from ..images import ImageError, load_image
from ..models.preprocess import PreprocessConfig, resize_and_crop, to_model_input
from .augment import Augment, augment_crop

if TYPE_CHECKING:
    import torch

Crop = npt.NDArray[np.uint8]


class TrainError(PixsearchError, ValueError):
    """Training cannot start or go on; the message says what to change."""


class TrainInterrupted(Exception):
    """Training stopped early on request; its state was saved and the same command resumes it."""


@dataclass(frozen=True)
class EpochTiming:
    """How long an epoch took and how long the rest will take at that pace (the progress display's ETA)."""

    seconds: float
    epochs_left: int

    @property
    def eta(self) -> float:
        return self.seconds * self.epochs_left


class Reporter(Protocol):
    """Progress hooks; the CLI draws a progress bar, tests and benchmarks may stay silent."""

    def start(self, total_steps: int, done: int) -> None:
        """Training is about to run *total_steps* steps, *done* of them already (resume)."""

    def step(self, loss: float, epoch: int) -> None:
        """One optimiser step finished."""

    def epoch(self, epoch: int, loss: float, val_score: float | None, improved: bool,
              timing: EpochTiming | None = None) -> None:
        """An epoch finished; *improved*: the model in the output folder was replaced."""

    def decoding(self, done: int, total: int) -> None:
        """Images decoded so far before training starts."""

    def message(self, text: str) -> None:
        """Something the user should read (skipped files, resume, early stop)."""


class SilentReporter:
    """A Reporter that ignores everything; subclass it to hear only some of the hooks."""

    def start(self, total_steps: int, done: int) -> None:
        pass

    def step(self, loss: float, epoch: int) -> None:
        pass

    def epoch(self, epoch: int, loss: float, val_score: float | None, improved: bool,
              timing: EpochTiming | None = None) -> None:
        pass

    def decoding(self, done: int, total: int) -> None:
        pass

    def message(self, text: str) -> None:
        pass


class CropCache:
    """Model-sized uint8 crops, made by the same functions indexing uses.

    Everything is decoded once up front (bad files are found before training starts);
    the crops stay in memory when they fit in *limit_mb*, otherwise they are decoded
    again for every batch.
    """

    def __init__(self, cfg: PreprocessConfig, limit_mb: int = 2048, reporter: Reporter | None = None,
                 workers: int = 0) -> None:
        self.cfg = cfg
        self.limit = limit_mb * 2**20
        self.reporter: Reporter = reporter or SilentReporter()
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.min_side = cfg.shortest_edge or min(cfg.size)
        self._crops: dict[str, Crop] = {}
        self._usable: set[str] = set()

    def _decode(self, path: str) -> Crop:
        return np.ascontiguousarray(resize_and_crop(load_image(Path(path), min_side=self.min_side).rgb, self.cfg))

    def _try(self, path: str) -> tuple[str, Crop | None, str]:
        try:
            return path, self._decode(path), ""
        except ImageError as exc:
            return path, None, exc.reason
        except OSError as exc:
            return path, None, str(exc)

    def load(self, paths: Sequence[str]) -> list[tuple[str, str]]:
        """Decode *paths*; returns (path, reason) for the files that cannot be used."""
        height, width = self.cfg.size
        keep = len(paths) * height * width * 3 <= self.limit
        bad = []
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for done, (path, crop, reason) in enumerate(pool.map(self._try, paths), start=1):
                if crop is None:
                    bad.append((path, reason))
                else:
                    self._usable.add(path)
                    if keep:
                        self._crops[path] = crop
                self.reporter.decoding(done, len(paths))
        return bad

    def has(self, path: str) -> bool:
        return path in self._usable

    def crop(self, path: str) -> Crop:
        cached = self._crops.get(path)
        return cached if cached is not None else self._decode(path)

    def batch(self, paths: Sequence[str], augment: Augment | None = None,
              rng: np.random.Generator | None = None) -> npt.NDArray[np.float32]:
        """Normalised N x 3 x H x W float32 model input, each crop augmented (seeded by *rng*) if asked."""
        crops = [self.crop(p) for p in paths]
        if augment is not None and augment.active:
            gen = rng if rng is not None else np.random.default_rng()
            crops = [augment_crop(c, augment, gen) for c in crops]
        return to_model_input(crops, self.cfg)


def info_nce(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor,
             groups: torch.Tensor | None = None, text_groups: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over a batch; an image and a text with the same group id are positives.

    *groups* None means every pair is its own group (plain CLIP loss). The target of
    each row is uniform over its positives, so duplicate captions are not negatives.
    *text_groups* (the texts' own ids, when there are fewer texts than images) makes it
    label-aware: with ten label prompts shared by thousands of images, each distinct
    prompt is encoded once per batch and every image must pick out its label's prompts
    among all labels present, while each prompt must pick out its label's images.
    """
    import torch
    import torch.nn.functional as F

    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    logits = logit_scale * image_emb @ text_emb.T
    if groups is None:
        groups = torch.arange(len(logits), device=logits.device)
    columns = groups if text_groups is None else text_groups
    positives = (groups[:, None] == columns[None, :]).to(logits.dtype)
    image_targets = positives / positives.sum(dim=1, keepdim=True)
    text_targets = positives.T / positives.T.sum(dim=1, keepdim=True)
    image_loss = -(image_targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    text_loss = -(text_targets * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (image_loss + text_loss) / 2


def make_optimizer(params: list[torch.nn.Parameter], lr: float, weight_decay: float, total_steps: int,
                   warmup_steps: int | None = None) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no decay on biases, norms and the logit scale) with linear warm-up, then cosine decay.

    *warmup_steps* None: 5% of the run."""
    import torch

    decay = [p for p in params if p.ndim >= 2]
    other = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": other, "weight_decay": 0.0}], lr=lr)
    warmup = max(1, total_steps // 20 if warmup_steps is None else warmup_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
