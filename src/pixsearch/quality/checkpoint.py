"""The checkpoints training starts from and writes: finding, loading and saving transformers models.

Training needs weights, so only transformers checkpoints qualify (an ONNX export has
none to train); a ``--from-scratch`` run first writes a random one (models/scratch.py)
and keeps it beside the resume state.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..models.preprocess import PreprocessConfig
from ..models.ref import HUB_PREFIX, ModelRef, UnknownModel, parse_model_ref
from ..models.registry import REGISTRY
from ..models.spec import IMAGE_PROCESSOR_FILE, PROCESSOR_FILE, is_transformers_dir
from .trainkit import TrainError

if TYPE_CHECKING:
    import torch

SCRATCH_DIR = "export-tmp"


@dataclass
class Trainable:
    """A loaded checkpoint, its towers frozen as asked."""

    model: Any
    """A transformers CLIPModel / SiglipModel / ChineseCLIPModel."""
    tokenizer: Any
    """Its fast tokenizer (a transformers PreTrainedTokenizerFast)."""
    preprocess: PreprocessConfig
    context_length: int


def _not_trainable(text: str, why: str) -> TrainError:
    trainable = [m.name for m in REGISTRY.values() if m.layout == "transformers"]
    return TrainError(f"--model {text!r} {why}, so it cannot be trained (ONNX exports have no trainable "
                      "weights). Use a local transformers folder, hf-hub:owner/repo of one (e.g. "
                      f"hf-hub:openai/clip-vit-base-patch32), or: {', '.join(trainable)}")


def _trainable_ref(text: str) -> ModelRef:
    """*text* parsed as a model reference that can name a transformers checkpoint."""
    try:
        ref = parse_model_ref(text)
    except UnknownModel as exc:
        if text.startswith(HUB_PREFIX):  # a malformed hub name: the parser says what shape it needs
            raise TrainError(str(exc)) from exc
        raise _not_trainable(text, "is not a transformers checkpoint") from exc
    if ref.known is not None and ref.known.layout != "transformers":
        raise _not_trainable(text, "is not a transformers checkpoint")
    return ref


def resolve_base(model: str | None, from_scratch: str | None, image_size: int | None, seed: int,
                 state_dir: Path, cache_dir: Path, texts: Sequence[str]) -> Path:
    """The checkpoint training starts from; a new random one for *from_scratch* (kept for resuming)."""
    if from_scratch:
        from ..models.scratch import new_clip_checkpoint, read_preset

        base = state_dir / "base"
        if (base / "config.json").is_file():
            return base
        preset = read_preset(from_scratch)
        if image_size:
            preset["image_size"] = image_size
        return new_clip_checkpoint(base, preset, texts=texts, seed=seed)
    if not model:
        raise TrainError("say what to train: --model CHECKPOINT (a transformers CLIP/SigLIP/Chinese-CLIP "
                         "folder or hf-hub:owner/repo) or --from-scratch PRESET")
    from ..models.loader import fetch_model_dir

    directory = fetch_model_dir(_trainable_ref(model), cache_dir, "transformers")
    if not is_transformers_dir(directory):
        raise TrainError(f"{directory} is not a transformers checkpoint (config.json + model.safetensors)")
    if image_size:
        raise TrainError("--image-size only applies to --from-scratch: a pretrained model's size is fixed by "
                         "its position embeddings (see its preprocessor_config.json)")
    return directory


def load_trainable(base: Path, freeze_image: bool, freeze_text: bool) -> Trainable:
    """Model, tokenizer, preprocess config and context length of checkpoint *base*, towers frozen as asked."""
    from ..models.convert import load_checkpoint

    checkpoint = load_checkpoint(base)
    model = checkpoint.model
    for tower, frozen in (("vision_model", freeze_image), ("visual_projection", freeze_image),
                          ("text_model", freeze_text), ("text_projection", freeze_text)):
        module = getattr(model, tower, None)
        if frozen and module is not None:
            module.requires_grad_(False)
    return Trainable(model=model, tokenizer=checkpoint.tokenizer, preprocess=checkpoint.preprocess,
                     context_length=checkpoint.context_length)


def features(output: Any) -> torch.Tensor:
    """The embedding of a get_*_features call, whichever transformers version made it."""
    from ..models.convert import tower_features

    return tower_features(output)


def save_checkpoint_dir(model: Any, tokenizer: Any, base: Path, output: Path) -> None:
    """Write a complete transformers checkpoint into *output*, file by file atomically.

    Everything is written to a scratch folder first and then moved over the old files,
    so an interruption leaves either the previous or the new version of each file.
    """
    scratch = output / ".pixsearch-train" / SCRATCH_DIR
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
