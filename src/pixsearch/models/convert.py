"""Convert a transformers checkpoint (CLIP, SigLIP, Chinese-CLIP) to pixsearch's ONNX layout.

This is the only run-time use of torch, and it is optional (``pip install
'pixsearch[torch]'``): a converted model is cached and from then on runs on ONNX
Runtime alone. Every conversion is checked: the ONNX towers must reproduce the
torch embeddings (cosine >= 0.999) or the conversion fails.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .extras import require_torch
from .preprocess import PreprocessConfig
from .spec import ModelError, ModelSpec, TextSpec, TowerSpec, read_hf_preprocess

if TYPE_CHECKING:
    import torch

Array = npt.NDArray[Any]

SUPPORTED_TYPES = ("clip", "siglip", "chinese_clip")
MIN_COSINE = 0.999


def checkpoint_fingerprint(directory: Path) -> str:
    """Short hash of a checkpoint's config and weight files (name, size, mtime)."""
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(directory.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def checkpoint_content_id(directory: Path) -> str:
    """Short hash of a checkpoint's bytes: the same weights get the same model id wherever they live."""
    digest = hashlib.blake2b(digest_size=5)
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in (".json", ".safetensors", ".bin"):
            digest.update(path.name.encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def tower_features(output: Any) -> torch.Tensor:
    """transformers 4 returns a tensor from get_*_features, transformers 5 a ModelOutput."""
    import torch

    features: torch.Tensor = output if torch.is_tensor(output) else output.pooler_output
    return features


def _towers(model: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The image and text towers of a transformers model as separate modules, as ONNX export needs them."""
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return tower_features(self.model.get_image_features(pixel_values=pixel_values))

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return tower_features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    return ImageTower().eval(), TextTower().eval()


def _cosines(a: Array, b: Array) -> Array:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cosines: Array = (a * b).sum(axis=1)
    return cosines


def text_spec_for(model_type: str, config: Any, tokenizer: Any) -> TextSpec:
    """Tokenisation rules of a transformers model, as pixsearch records them."""
    text_config = config.text_config
    context = int(getattr(text_config, "max_position_embeddings", 77))
    siglip = model_type == "siglip"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TextSpec(file="textual.onnx", output="text_embeds", tokenizer="tokenizer.json",
                    context_length=context, pad_to_context=siglip, pad_id=int(pad_id),
                    clean="canonicalize" if siglip else "whitespace")


def export_onnx(model: Any, tokenizer: Any, spec: ModelSpec, out_dir: Path, opset: int = 17) -> None:
    """Export both towers of a transformers model into *out_dir* and verify them."""
    import torch

    image_tower, text_tower = _towers(model)
    height, width = spec.preprocess.size
    pixels = torch.randn(2, 3, height, width)
    sample = tokenizer(["a photo of a dog", "two cats sleeping on a red sofa"], padding="max_length"
                       if spec.text.pad_to_context else True, truncation=True,
                       max_length=spec.text.context_length, return_tensors="pt")
    ids, mask = sample["input_ids"], sample["attention_mask"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow are expected
        torch.onnx.export(image_tower, (pixels,), str(out_dir / spec.image.file), input_names=["pixel_values"],
                          output_names=[spec.image.output], opset_version=opset, dynamo=False,
                          dynamic_axes={"pixel_values": {0: "batch"}, spec.image.output: {0: "batch"}})
        torch.onnx.export(text_tower, (ids, mask), str(out_dir / spec.text.file),
                          input_names=["input_ids", "attention_mask"], output_names=[spec.text.output],
                          opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"},
                                        spec.text.output: {0: "batch"}})
        expected_image = image_tower(pixels).numpy()
        expected_text = text_tower(ids, mask).numpy()
    _verify(out_dir, spec, pixels.numpy(), ids.numpy(), mask.numpy(), expected_image, expected_text)


def _verify(out_dir: Path, spec: ModelSpec, pixels: Array, ids: Array, mask: Array, expected_image: Array,
            expected_text: Array) -> None:
    import onnxruntime as ort

    image = ort.InferenceSession(str(out_dir / spec.image.file), providers=["CPUExecutionProvider"])
    got_image = image.run(None, {"pixel_values": pixels.astype(np.float32)})[0]
    text = ort.InferenceSession(str(out_dir / spec.text.file), providers=["CPUExecutionProvider"])
    feed = {"input_ids": ids.astype(np.int64)}
    if "attention_mask" in {i.name for i in text.get_inputs()}:
        feed["attention_mask"] = mask.astype(np.int64)
    got_text = text.run(None, feed)[0]
    worst = min(_cosines(got_image, expected_image).min(), _cosines(got_text, expected_text).min())
    if worst < MIN_COSINE:
        raise ModelError(f"ONNX export disagrees with torch (cosine {worst:.4f} < {MIN_COSINE}); "
                         "please report this model")


@dataclass
class Checkpoint:
    """A transformers CLIP-family checkpoint, loaded with what pixsearch needs beside the weights."""

    config: Any
    model: Any
    tokenizer: Any
    preprocess: PreprocessConfig

    @property
    def context_length(self) -> int:
        return int(getattr(self.config.text_config, "max_position_embeddings", 77))


def load_checkpoint(src: Path) -> Checkpoint:
    """Load a local CLIP / SigLIP / Chinese-CLIP checkpoint (conversion and training share this).

    Refuses what pixsearch cannot use as it is: other model types, missing image-processor
    settings (image size and mean/std are never guessed; either transformers layout is read,
    see ``spec.hf_image_processor_file``), a slow tokenizer.
    """
    require_torch("converting a transformers checkpoint to ONNX")
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(src, local_files_only=True)
    model_type = getattr(config, "model_type", "")
    if model_type not in SUPPORTED_TYPES:
        raise ModelError(f"{src}: model type {model_type!r} is not supported; "
                         f"supported: {', '.join(SUPPORTED_TYPES)}")
    preprocess = read_hf_preprocess(src)
    tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{src}: pixsearch needs a fast tokenizer (tokenizer.json) for this model")
    model = AutoModel.from_pretrained(src, local_files_only=True)
    return Checkpoint(config=config, model=model, tokenizer=tokenizer, preprocess=preprocess)


def convert_checkpoint(src: Path, out_dir: Path, model_id: str | None = None) -> ModelSpec:
    """Convert the transformers checkpoint in *src* into a pixsearch model in *out_dir*."""
    checkpoint = load_checkpoint(src)
    config, model, tokenizer = checkpoint.config, checkpoint.model.eval(), checkpoint.tokenizer
    preprocess, model_type = checkpoint.preprocess, config.model_type
    text = text_spec_for(model_type, config, tokenizer)
    dim = int(getattr(config, "projection_dim", 0) or config.text_config.hidden_size)
    spec = ModelSpec(
        model_id=model_id or f"{src.name}-{checkpoint_content_id(src)}",
        dim=dim,
        image=TowerSpec(file="visual.onnx", output="image_embeds"),
        text=text,
        preprocess=preprocess,
        directory=out_dir,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.backend_tokenizer.save(str(out_dir / spec.text.tokenizer))
    export_onnx(model, tokenizer, spec, out_dir)
    spec.write_manifest()
    return spec


def converted_dir(src: Path, cache_dir: Path) -> Path:
    """Where the ONNX conversion of checkpoint *src* is cached."""
    key = hashlib.blake2b(str(src.resolve()).encode(), digest_size=6).hexdigest()
    return cache_dir / "converted" / f"{src.name}-{key}-{checkpoint_fingerprint(src)}"


def convert_cached(src: Path, cache_dir: Path, model_id: str | None = None) -> Path:
    """Convert *src* once; later calls return the cached result. Atomic: a crash leaves no half model."""
    target = converted_dir(src, cache_dir)
    if (target / "pixsearch.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        convert_checkpoint(src, tmp, model_id=model_id)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
