"""The settings ``pixsearch train`` uses when the user gives none: the ones measured to learn.

Two regimes differ by two orders of magnitude in learning rate. A random model needs
a large rate, a warm-up of a couple of epochs (AdamW's first steps on random weights
are noisy) and many epochs; a pretrained one needs a small rate and few epochs or it
forgets what it knew. Early stopping waits ``patience`` epochs without a better
validation score, so it never stops while the score still climbs, and the best epoch's
model is the one kept. Measurements behind the numbers: README "Training" section.
"""

from __future__ import annotations

from dataclasses import dataclass

TRAIN_TEMPLATES = ("a photo of a {label}", "a photo of the {label}", "a {label}", "a picture of a {label}",
                   "a close-up photo of a {label}", "{label}")
"""Caption templates for labelled images: several phrasings of each label, so the text tower learns
the label word rather than one fixed sentence (``pixsearch eval`` prompts with the first)."""


@dataclass(frozen=True)
class Schedule:
    epochs: int
    lr: float
    warmup_epochs: float
    patience: int


SCRATCH = Schedule(epochs=40, lr=1e-3, warmup_epochs=2.0, patience=8)
FINE_TUNE = Schedule(epochs=10, lr=1e-5, warmup_epochs=0.5, patience=3)


def schedule_for(from_scratch: bool, epochs: int | None, lr: float | None, patience: int | None) -> Schedule:
    """The regime's defaults, with whatever the user set explicitly taking precedence."""
    base = SCRATCH if from_scratch else FINE_TUNE
    return Schedule(epochs=base.epochs if epochs is None else epochs, lr=base.lr if lr is None else lr,
                    warmup_epochs=base.warmup_epochs, patience=base.patience if patience is None else patience)
