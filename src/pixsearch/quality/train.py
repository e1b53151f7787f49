"""Fine-tune (or train from scratch) a CLIP-family model on your images: ``pixsearch train``.

The loss is CLIP's symmetric InfoNCE: in a batch of image-caption pairs, each image
must pick out its own caption among the batch's captions and vice versa. With
labelled images the captions come from templates ("a photo of a {label}"), so many
pairs in a batch share a caption; those count as positives for each other rather
than as negatives (otherwise the loss would push identical captions apart).

Images go through ``pixsearch.images`` and ``models.preprocess`` with the model's own config,
exactly as indexing does, so the model is trained on the pixels it will later see.
The output directory is a transformers checkpoint that ``--model DIR`` accepts (it
is converted to ONNX once, and checked, before ``train`` returns). Training state
is kept in ``OUTPUT/.pixsearch-train`` so an interrupted run resumes where it stopped.

torch is imported lazily: it is the optional ``torch`` extra.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..models.extras import require_torch
from .augment import Augment
from .checkpoint import Trainable, features, load_trainable, resolve_base, save_checkpoint_dir
from .datasets import load_dataset
from .defaults import TRAIN_TEMPLATES, Schedule, schedule_for
from .examples import Examples, examples_from, split_indices, subset
from .metrics import hits_at_k
from .trainkit import (
    CropCache,
    EpochTiming,
    Reporter,
    SilentReporter,
    TrainError,
    TrainInterrupted,
    info_nce,
    make_optimizer,
)

if TYPE_CHECKING:
    import torch

__all__ = ["TrainError", "TrainInterrupted", "TrainOptions", "TrainState", "Trainer", "train"]

STATE_DIR = ".pixsearch-train"
MAX_LOGIT_SCALE = float(np.log(100.0))
VALIDATION_KS = (1, 5, 10)


@dataclass
class TrainOptions:
    data: Path
    output: Path
    model: str | None = None
    """Base checkpoint: a transformers folder, hf-hub:owner/repo, or a registry name of a transformers model."""
    from_scratch: str | None = None
    """Preset name or CONFIG.json for a randomly initialised CLIP (models/scratch.py)."""
    templates: tuple[str, ...] = TRAIN_TEMPLATES
    split: str | None = None
    epochs: int | None = None
    """Default: defaults.SCRATCH / FINE_TUNE epochs."""
    batch_size: int = 64
    lr: float | None = None
    """Default: 1e-3 from scratch, 1e-5 when fine-tuning pretrained weights (quality/defaults.py)."""
    weight_decay: float = 0.1
    image_size: int | None = None
    freeze_image: bool = False
    freeze_text: bool = False
    val_split: float = 0.1
    patience: int | None = None
    """Stop after this many epochs without a better validation score (0: never stop early; default per regime)."""
    seed: int = 0
    augment: bool = True
    """Random resized crops, flips and colour jitter (quality/augment.py); validation never augments."""
    cache_mb: int = 2048
    restart: bool = False
    save_every: float = 300.0
    threads: int = 0
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "pixsearch")

    def fingerprint(self) -> str:
        """What must not change between an interrupted run and its resumption."""
        keys = ("data", "model", "from_scratch", "templates", "split", "batch_size", "image_size",
                "freeze_image", "freeze_text", "val_split", "seed")
        blob = json.dumps({k: str(getattr(self, k)) for k in keys}, sort_keys=True)
        return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    val_score: float | None
    """Mean text-to-image hits@k on the held-out images (None: too few of them)."""
    seconds: float = 0.0
    """Wall time of the epoch, validation included (0: written by an older pixsearch)."""


@dataclass
class TrainState:
    """Progress of a run, saved with the weights so an interrupted run resumes exactly where it stopped."""

    fingerprint: str
    """TrainOptions.fingerprint() of the run: a resume with other data or options is refused."""
    epoch: int = 0
    """Epochs finished."""
    step_in_epoch: int = 0
    global_step: int = 0
    best: float | None = None
    bad_epochs: int = 0
    """Epochs in a row without a better validation score (early stopping)."""
    history: list[EpochRecord] = field(default_factory=list)
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as saved in ``state.pt`` (the format older pixsearch versions wrote, too)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        values = dict(data)
        values["history"] = [EpochRecord(**entry) for entry in values.get("history", [])]
        return cls(**values)


Batch = tuple[npt.NDArray[np.intp], list[str], int]
"""Indices into the training examples, the caption chosen for each, and the seed of its augmentation."""


class Trainer:
    """One training run: data, model, optimiser and resumable state."""

    train: Examples
    val: Examples
    base: Path
    net: Trainable
    crops: CropCache
    batch: int
    steps_per_epoch: int
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    state: TrainState
    schedule: Schedule

    def __init__(self, options: TrainOptions, reporter: Reporter | None = None) -> None:
        self.options = options
        self.reporter: Reporter = reporter or SilentReporter()
        self.torch = require_torch("`pixsearch train`")
        self.state_dir = options.output / STATE_DIR
        self.state_path = self.state_dir / "state.pt"
        self.device = "cuda" if self.torch.cuda.is_available() else "cpu"

    @property
    def model(self) -> Any:
        return self.net.model

    def prepare(self) -> None:
        opts = self.options
        self.torch.set_num_threads(opts.threads or os.cpu_count() or 1)
        self._check_output()
        examples = examples_from(load_dataset(opts.data, opts.split), opts.templates)
        train_idx, val_idx = split_indices(len(examples.paths), opts.val_split, opts.seed)
        self.train, self.val = subset(examples, train_idx), subset(examples, val_idx)
        texts = [c for caps in self.train.captions for c in caps]
        self.base = resolve_base(opts.model, opts.from_scratch, opts.image_size, opts.seed, self.state_dir,
                                 opts.cache_dir, texts)
        self.net = load_trainable(self.base, opts.freeze_image, opts.freeze_text)
        self.model.to(self.device)
        self.crops = CropCache(self.net.preprocess, opts.cache_mb, reporter=self.reporter)
        bad = self.crops.load(self.train.paths + self.val.paths)
        for path, reason in bad:
            self.reporter.message(f"skipped {path}: {reason}")
        self.train = subset(self.train, [i for i, p in enumerate(self.train.paths) if self.crops.has(p)])
        self.val = subset(self.val, [i for i, p in enumerate(self.val.paths) if self.crops.has(p)])
        if len(self.train.paths) < 2:
            raise TrainError(f"{opts.data}: fewer than two usable training images")
        self.batch = min(opts.batch_size, len(self.train.paths))
        self.steps_per_epoch = len(self.train.paths) // self.batch
        self.schedule = schedule_for(bool(opts.from_scratch), opts.epochs, opts.lr, opts.patience)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise TrainError("both towers are frozen: nothing to train")
        warmup = round(self.schedule.warmup_epochs * self.steps_per_epoch)
        self.optimizer, self.scheduler = make_optimizer(params, self.schedule.lr, opts.weight_decay,
                                                        self.steps_per_epoch * self.schedule.epochs, warmup)
        self.augment = Augment() if opts.augment else Augment.off()
        self.state = TrainState(fingerprint=opts.fingerprint())
        self._resume()

    def _check_output(self) -> None:
        out, ours = self.options.output, self.state_dir.is_dir()
        if self.options.restart and ours:
            shutil.rmtree(self.state_dir)
        elif out.exists() and any(p.name != STATE_DIR for p in out.iterdir()) and not self.state_path.exists():
            hint = "add --restart to train it again" if ours else "choose a new --output folder"
            raise TrainError(f"{out} already holds {'a trained model' if ours else 'files'} and no interrupted "
                             f"run to resume; {hint}")
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def _resume(self) -> None:
        if not self.state_path.is_file():
            return
        saved = self.torch.load(self.state_path, map_location=self.device, weights_only=False)
        state = TrainState.from_dict(saved["state"])
        if state.fingerprint != self.options.fingerprint():
            raise TrainError(f"{self.options.output} holds an interrupted run with other data or options; run the "
                             "same command as before to resume it, or add --restart to start over")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = state
        self.reporter.message(f"resuming at epoch {state.epoch + 1}, "
                              f"step {state.step_in_epoch} of {self.steps_per_epoch}")

    def save_state(self) -> None:
        """Write model, optimiser and progress atomically: a crash mid-write keeps the previous state."""
        tmp = self.state_path.with_suffix(".tmp")
        self.torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "scheduler": self.scheduler.state_dict(), "state": self.state.to_dict()}, tmp)
        os.replace(tmp, self.state_path)

    def _batches(self, epoch: int) -> Iterator[Batch]:
        """The epoch's batches: a seeded order and caption choice, so a resumed epoch replays identically."""
        rng = np.random.default_rng([self.options.seed, epoch])
        order = rng.permutation(len(self.train.paths))
        choices = [int(rng.integers(len(c))) for c in self.train.captions]
        seeds = rng.integers(2**31, size=self.steps_per_epoch)
        for step in range(self.steps_per_epoch):
            idx = order[step * self.batch:(step + 1) * self.batch]
            yield idx, [self.train.captions[i][choices[i]] for i in idx], int(seeds[step])

    def _tokens(self, texts: list[str]) -> Any:
        return self.net.tokenizer(texts, padding=True, truncation=True, max_length=self.net.context_length,
                                  return_tensors="pt").to(self.device)

    def _step(self, batch: Batch) -> float:
        torch, (idx, captions, seed) = self.torch, batch
        paths = [self.train.paths[i] for i in idx]
        pixels = torch.from_numpy(self.crops.batch(paths, self.augment, np.random.default_rng(seed))).to(self.device)
        image_groups = [self.train.groups[i] for i in idx]
        # each distinct (caption, group) once: label prompts shared by many images are one text, not many
        texts = sorted(set(zip(captions, image_groups, strict=True)))
        tokens = self._tokens([text for text, _ in texts])
        groups = torch.tensor(image_groups, device=self.device)
        text_groups = torch.tensor([group for _, group in texts], device=self.device)
        image = features(self.model.get_image_features(pixel_values=pixels))
        text = features(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                     attention_mask=tokens["attention_mask"]))
        loss = info_nce(image, text, self.model.logit_scale.exp(), groups, text_groups)
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)  # loss.backward(), which torch leaves unannotated
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return float(loss.detach())

    def validate(self) -> float | None:
        """Mean over k in (1, 5, 10) of text-to-image hits@k on the held-out images (see metrics.hits_at_k)."""
        if len(self.val.paths) < 2:
            return None
        torch = self.torch
        self.model.eval()
        with torch.no_grad():
            images = []
            for start in range(0, len(self.val.paths), 128):
                pixels = torch.from_numpy(self.crops.batch(self.val.paths[start:start + 128])).to(self.device)
                images.append(features(self.model.get_image_features(pixel_values=pixels)))
            queries = sorted({(c, g) for caps, g in zip(self.val.captions, self.val.groups, strict=True)
                              for c in caps})
            tokens = self._tokens([q for q, _ in queries])
            text = features(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                         attention_mask=tokens["attention_mask"]))
            normalize = torch.nn.functional.normalize
            scores = normalize(text, dim=-1) @ normalize(torch.cat(images), dim=-1).T
        self.model.train()
        order = scores.argsort(dim=1, descending=True).cpu().numpy()
        groups = np.asarray(self.val.groups)
        values = []
        for (_, group), row in zip(queries, order, strict=True):
            relevant = [bool(flag) for flag in groups[row] == group]
            total = int((groups == group).sum())
            values.append(np.mean([hits_at_k(relevant, k, total) for k in VALIDATION_KS]))
        return float(np.mean(values))

    def run(self) -> dict[str, Any]:
        """Train to the end (or early stop), leaving the best model in the output folder."""
        opts, state = self.options, self.state
        self.model.train()
        last_save = time.monotonic()
        epochs = self.schedule.epochs
        self.reporter.start(self.steps_per_epoch * epochs, state.global_step)
        try:
            while state.epoch < epochs and not state.finished:
                losses, started = [], time.monotonic()
                for step, batch in enumerate(self._batches(state.epoch)):
                    if step < state.step_in_epoch:
                        continue
                    losses.append(self._step(batch))
                    state.step_in_epoch, state.global_step = step + 1, state.global_step + 1
                    self.reporter.step(losses[-1], state.epoch + 1)
                    if time.monotonic() - last_save > opts.save_every:
                        self.save_state()
                        last_save = time.monotonic()
                self._end_epoch(float(np.mean(losses)) if losses else float("nan"), started)
        except KeyboardInterrupt:
            self.save_state()
            raise TrainInterrupted(f"stopped; state saved in {self.state_dir}. "
                                   "Run the same command to resume.") from None
        return self._finish()

    def _end_epoch(self, loss: float, started: float) -> None:
        state = self.state
        score = self.validate()
        timing = EpochTiming(seconds=time.monotonic() - started, epochs_left=self.schedule.epochs - state.epoch - 1)
        state.history.append(EpochRecord(epoch=state.epoch + 1, loss=loss, val_score=score,
                                         seconds=round(timing.seconds, 2)))
        improved = score is None or state.best is None or score > state.best
        if improved:
            state.best, state.bad_epochs = score, 0
            save_checkpoint_dir(self.model, self.net.tokenizer, self.base, self.options.output)
        else:
            state.bad_epochs += 1
        self.reporter.epoch(state.epoch + 1, loss, score, improved, timing)
        state.epoch, state.step_in_epoch = state.epoch + 1, 0
        if self.schedule.patience and state.bad_epochs >= self.schedule.patience:
            self.reporter.message(f"early stop: no better validation score for {state.bad_epochs} epochs")
            state.finished = True
        self.save_state()

    def _finish(self) -> dict[str, Any]:
        """Convert the result once (which also checks it) and drop the bulky resume state."""
        from ..models import load_spec

        spec = load_spec(str(self.options.output), self.options.cache_dir)
        report = {"output": str(self.options.output), "model_id": spec.model_id,
                  "base": f"scratch:{self.options.from_scratch}" if self.options.from_scratch else str(self.base),
                  "train_images": len(self.train.paths), "val_images": len(self.val.paths),
                  "best_val_score": self.state.best, "history": [asdict(h) for h in self.state.history],
                  "schedule": asdict(self.schedule),
                  "options": {k: str(v) for k, v in asdict(self.options).items()}}
        (self.state_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        self.state_path.unlink(missing_ok=True)
        if self.options.from_scratch:
            shutil.rmtree(self.state_dir / "base", ignore_errors=True)
        return report


def train(options: TrainOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run ``pixsearch train``: returns a report (history, best validation score, model id)."""
    trainer = Trainer(options, reporter)
    trainer.prepare()
    return trainer.run()
