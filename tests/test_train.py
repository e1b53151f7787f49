"""pixsearch train: the contrastive loss on constructed batches, and a train -> save -> load -> export round trip."""

from __future__ import annotations

import json
import math

import pytest

from .conftest import SAMPLES, run_cli

torch = pytest.importorskip("torch", reason="training needs the torch extra: pip install '.[torch]'")

from pixsearch.quality.examples import split_indices  # noqa: E402
from pixsearch.quality.train import TrainInterrupted, TrainOptions, train  # noqa: E402
from pixsearch.quality.trainkit import SilentReporter, info_nce  # noqa: E402


def test_info_nce_known_values():
    n, scale = 4, 2.0
    eye = torch.eye(n)
    # orthonormal pairs: each row's logits are scale on the diagonal, 0 elsewhere
    expected = -math.log(math.exp(scale) / (math.exp(scale) + n - 1))
    assert float(info_nce(eye, eye, scale)) == pytest.approx(expected, rel=1e-6)
    # identical embeddings everywhere: no information, loss = log(batch size)
    same = torch.ones(n, 8)
    assert float(info_nce(same, same, 10.0)) == pytest.approx(math.log(n), rel=1e-6)
    # two items sharing a caption are both positives: their target is uniform over the two
    groups = torch.tensor([0, 0, 1, 2])
    emb = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    row0 = -math.log(math.exp(scale) / (2 * math.exp(scale) + 2))
    row2 = -math.log(math.exp(scale) / (math.exp(scale) + 3))
    assert float(info_nce(emb, emb, scale, groups)) == pytest.approx((2 * row0 + 2 * row2) / 4, rel=1e-6)
    # normalisation: scaling the inputs changes nothing
    assert float(info_nce(3 * eye, 0.5 * eye, scale)) == pytest.approx(expected, rel=1e-6)


def test_split_indices_is_seeded_and_disjoint():
    train_idx, val_idx = split_indices(20, 0.25, seed=1)
    assert len(val_idx) == 5 and sorted(train_idx + val_idx) == list(range(20))
    assert split_indices(20, 0.25, seed=1) == (train_idx, val_idx)
    assert split_indices(3, 0.9, seed=0)[0] and len(split_indices(3, 0.9, seed=0)[0]) >= 2
    with pytest.raises(ValueError, match="val-split"):
        split_indices(10, 1.0, seed=0)


class _StopAfter(SilentReporter):
    """Simulates Ctrl-C after a number of optimiser steps."""

    def __init__(self, steps: int):
        self.left = steps

    def step(self, loss: float, epoch: int) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


def test_train_resume_export_and_use(tmp_path, cache_dir):
    out = tmp_path / "trained"
    options = TrainOptions(data=SAMPLES, output=out, from_scratch="tiny", epochs=2, batch_size=6,
                           val_split=0.2, cache_dir=cache_dir)
    with pytest.raises(TrainInterrupted, match="resume"):
        train(options, _StopAfter(3))
    state = out / ".pixsearch-train" / "state.pt"
    assert state.is_file()
    report = train(options)  # same options: resumes at epoch 2 (16 train images / 6 = 2 steps per epoch)
    assert [h["epoch"] for h in report["history"]] == [1, 2]
    assert all(math.isfinite(h["loss"]) for h in report["history"]) and report["val_images"] == 4
    assert not state.exists()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "preprocessor_config.json").read_text())["crop_size"]["height"] == 32

    with pytest.raises(ValueError, match="--restart"):
        train(options)

    from transformers import AutoModel

    assert AutoModel.from_pretrained(out).config.projection_dim == 16  # a plain transformers checkpoint

    db = str(tmp_path / "t.db")
    indexed = json.loads(run_cli("index", str(SAMPLES), "--model", str(out), "--db", db, "--json").stdout)
    assert indexed["added"] == 20
    hits = json.loads(run_cli("search", "a photo of a hat", "--model", str(out), "--db", db, "-k", "3",
                              "--json").stdout)
    assert len(hits) == 3


def test_train_state_reads_the_dict_saved_in_state_pt():
    """state.pt keeps the state as plain values (as pixsearch always wrote it), so older runs resume."""
    from pixsearch.quality.train import EpochRecord, TrainState

    saved = {"epoch": 1, "step_in_epoch": 2, "global_step": 5, "best": 0.5, "bad_epochs": 0,
             "history": [{"epoch": 1, "loss": 2.5, "val_score": 0.5}], "fingerprint": "abc", "finished": False}
    state = TrainState.from_dict(saved)
    assert state.history == [EpochRecord(epoch=1, loss=2.5, val_score=0.5)] and state.global_step == 5
    # an epoch record from before per-epoch timing reads as 0 seconds
    assert state.to_dict() == {**saved, "history": [{"epoch": 1, "loss": 2.5, "val_score": 0.5, "seconds": 0.0}]}
