"""New CLIP checkpoints from random initialisation (needs the ``torch`` extra).

Used by ``pixsearch train --from-scratch``, by the benchmarks (random weights with
the exact shapes, hence the exact compute, of ViT-B/32 and ViT-B/16 CLIP) and by the
tests (a tiny model). The tokenizer is a CLIP-style byte-level BPE, trained here
on the given texts, so nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .extras import require_torch
from .spec import ModelError

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

PRESETS: dict[str, dict[str, Any]] = {
    # For unit tests: a few hundred kB, milliseconds per batch.
    "tiny": {"image_size": 32, "patch_size": 8, "vision_width": 32, "vision_layers": 2, "vision_heads": 4,
             "text_width": 32, "text_layers": 2, "text_heads": 4, "embed_dim": 16, "context_length": 32},
    # For training on a CPU in minutes (pixsearch train --from-scratch small): an epoch of clothing/train
    # took ~22 CPU-seconds (~11 s on 2 quiet cores; the earlier 64 px / width-192 preset took ~300 CPU-s).
    "small": {"image_size": 48, "patch_size": 8, "vision_width": 128, "vision_layers": 3, "vision_heads": 4,
              "text_width": 64, "text_layers": 2, "text_heads": 4, "embed_dim": 64, "context_length": 16},
    # Same shapes (and FLOPs) as OpenAI's ViT-B/32 and ViT-B/16 CLIP, for benchmarks.
    "vit-b-32": {"image_size": 224, "patch_size": 32, "vision_width": 768, "vision_layers": 12, "vision_heads": 12,
                 "text_width": 512, "text_layers": 12, "text_heads": 8, "embed_dim": 512, "context_length": 77},
    "vit-b-16": {"image_size": 224, "patch_size": 16, "vision_width": 768, "vision_layers": 12, "vision_heads": 12,
                 "text_width": 512, "text_layers": 12, "text_heads": 8, "embed_dim": 512, "context_length": 77},
}

_DEFAULT_CORPUS = ["a photo of a dog", "a photo of a cat", "a red car in the snow", "people on the beach"]
_OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
_OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def read_preset(name_or_path: str) -> dict[str, Any]:
    """A preset by name, or a JSON file with the same keys."""
    if name_or_path in PRESETS:
        return dict(PRESETS[name_or_path])
    path = Path(name_or_path)
    if not path.is_file():
        raise ModelError(f"--from-scratch {name_or_path!r}: not a preset ({', '.join(PRESETS)}) nor a JSON file")
    preset = dict(PRESETS["small"])
    preset.update(json.loads(path.read_text(encoding="utf-8")))
    return preset


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> CLIPTokenizer:
    """A CLIP tokenizer (transformers CLIPTokenizer) whose BPE merges are learned from *texts*."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    base = CLIPTokenizer(vocab={"<|startoftext|>": 0, "<|endoftext|>": 1}, merges=[])
    learner = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    learner.normalizer = base.backend_tokenizer.normalizer
    learner.pre_tokenizer = base.backend_tokenizer.pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), end_of_word_suffix="</w>",
                                  show_progress=False)
    learner.train_from_iterator(list(texts) or _DEFAULT_CORPUS, trainer=trainer)
    model = json.loads(learner.to_str())["model"]
    vocab = dict(model["vocab"])
    for char in pre_tokenizers.ByteLevel.alphabet():  # every byte must stay encodable at word ends too
        vocab.setdefault(char + "</w>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # tokenizers' BPE takes the merges as (left, right) pairs; transformers annotates them as list[str]
    return CLIPTokenizer(vocab=vocab, merges=cast(Any, merges))


def new_clip_checkpoint(out_dir: Path, preset: str | dict[str, Any] = "tiny", texts: Iterable[str] = (),
                        seed: int = 0, vocab_size: int = 4096) -> Path:
    """Write a randomly initialised CLIP (transformers format, with tokenizer and preprocessor) to *out_dir*."""
    torch = require_torch("making a new CLIP checkpoint (--from-scratch, benchmarks, tests)")
    from transformers import CLIPConfig, CLIPModel

    p = read_preset(preset) if isinstance(preset, str) else dict(preset)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=p["text_width"], intermediate_size=4 * p["text_width"],
                         num_hidden_layers=p["text_layers"], num_attention_heads=p["text_heads"],
                         max_position_embeddings=p["context_length"], bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=p["vision_width"], intermediate_size=4 * p["vision_width"],
                           num_hidden_layers=p["vision_layers"], num_attention_heads=p["vision_heads"],
                           image_size=p["image_size"], patch_size=p["patch_size"]),
        projection_dim=p["embed_dim"],
    )
    model = CLIPModel(config)
    model.train(False)  # eval mode, as the checkpoint is saved for inference
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.model_max_length = p["context_length"]
    tokenizer.save_pretrained(out_dir)
    write_preprocessor_config(out_dir, p["image_size"])
    return out_dir


def write_preprocessor_config(out_dir: Path, image_size: int) -> None:
    """A CLIP-style preprocessor_config.json (shortest-edge resize, centre crop, OpenAI mean/std)."""
    config = {
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": image_size},
        "do_center_crop": True, "crop_size": {"height": image_size, "width": image_size}, "resample": 3,
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": _OPENAI_MEAN, "image_std": _OPENAI_STD, "do_convert_rgb": True,
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
