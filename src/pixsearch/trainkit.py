"""Plumbing for ``pixsearch train``: torch check, data split, decoded-crop cache, progress hooks, saving.

Kept apart from train.py so the training logic reads on its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import PixsearchError
from .images import ImageError, PreprocessConfig, load_image, resize_and_crop, to_model_input
from .models.spec import IMAGE_PROCESSOR_FILE, PROCESSOR_FILE


def require_torch():
    """The torch module, or an error that says how to install it (torch is an optional extra)."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        from .models.spec import ModelError

        raise ModelError("`pixsearch train` needs the torch extra: pip install 'pixsearch[torch]' "
                         "(CPU torch 2.13.0; a CUDA build of torch is used when installed)") from exc
    transformers.utils.logging.disable_progress_bar()
    return torch


class SplitError(PixsearchError, ValueError):
    """A validation share outside [0, 1)."""


def split_indices(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: a seeded shuffle, at least two items left for training."""
    if not 0.0 <= fraction < 1.0:
        raise SplitError(f"--val-split must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(count).tolist()
    n_val = min(int(round(count * fraction)), max(0, count - 2))
    return sorted(order[n_val:]), sorted(order[:n_val])


class Reporter:
    """Progress hooks; the CLI draws a progress bar, tests and benchmarks may stay silent."""

    def start(self, total_steps: int, done: int) -> None:
        """Training is about to run *total_steps* steps, *done* of them already (resume)."""

    def step(self, loss: float, epoch: int) -> None:
        """One optimiser step finished."""

    def epoch(self, epoch: int, loss: float, val_score: float | None, improved: bool) -> None:
        """An epoch finished; *improved*: the model in the output folder was replaced."""

    def decoding(self, done: int, total: int) -> None:
        """Images decoded so far before training starts."""

    def message(self, text: str) -> None:
        """Something the user should read (skipped files, resume, early stop)."""


class CropCache:
    """Model-sized uint8 crops, made by the same functions indexing uses.

    Everything is decoded once up front (bad files are found before training starts);
    the crops stay in memory when they fit in *limit_mb*, otherwise they are decoded
    again for every batch.
    """

    def __init__(self, cfg: PreprocessConfig, limit_mb: int = 2048, reporter: Reporter | None = None,
                 workers: int = 0):
        self.cfg = cfg
        self.limit = limit_mb * 2**20
        self.reporter = reporter or Reporter()
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.min_side = cfg.shortest_edge or min(cfg.size)
        self._crops: dict[str, np.ndarray] = {}
        self._usable: set[str] = set()

    def _decode(self, path: str) -> np.ndarray:
        return np.ascontiguousarray(resize_and_crop(load_image(Path(path), min_side=self.min_side).rgb, self.cfg))

    def _try(self, path: str) -> tuple[str, np.ndarray | None, str]:
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

    def crop(self, path: str) -> np.ndarray:
        cached = self._crops.get(path)
        return cached if cached is not None else self._decode(path)

    def batch(self, paths: Sequence[str], flips: Sequence[bool] | None) -> np.ndarray:
        """Normalised N x 3 x H x W float32 model input, optionally mirrored left-right per item."""
        crops = [self.crop(p) for p in paths]
        if flips is not None:
            crops = [c[:, ::-1] if flip else c for c, flip in zip(crops, flips)]
        return to_model_input(crops, self.cfg)


def make_optimizer(params: list, lr: float, weight_decay: float, total_steps: int):
    """AdamW (no decay on biases, norms and the logit scale) with linear warm-up, then cosine decay."""
    import math

    import torch

    decay = [p for p in params if p.ndim >= 2]
    other = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": other, "weight_decay": 0.0}], lr=lr)
    warmup = max(1, total_steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def save_checkpoint_dir(model, tokenizer, base: Path, output: Path) -> None:
    """Write a complete transformers checkpoint into *output*, file by file atomically.

    Everything is written to a scratch folder first and then moved over the old files,
    so an interruption leaves either the previous or the new version of each file.
    """
    scratch = output / ".pixsearch-train" / "export-tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    model.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    for name in (IMAGE_PROCESSOR_FILE, PROCESSOR_FILE):  # either transformers layout (spec.hf_image_processor_file)
        if (base / name).is_file():
            shutil.copyfile(base / name, scratch / name)
    for path in scratch.iterdir():
        if path.is_file():
            os.replace(path, output / path.name)
    shutil.rmtree(scratch, ignore_errors=True)
