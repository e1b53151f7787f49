"""What pixsearch needs to know to run a CLIP-family model: the ModelSpec, and readers
that build it from each model-directory layout pixsearch understands.

Layouts:

* **pixsearch** (``pixsearch.json``): what ``pixsearch convert`` and ``pixsearch train``
  write. Documented in the README; every other layout maps onto the same fields.
* **Immich** (``visual/model.onnx``, ``textual/model.onnx``, ``config.json``): the
  open_clip exports Immich publishes on the Hugging Face Hub as ``immich-app/*``.
* **transformers.js** (``onnx/vision_model.onnx``, ``onnx/text_model.onnx``): ONNX
  exports of transformers CLIP/SigLIP/Chinese-CLIP (``Xenova/*``, ``onnx-community/*``).
* **transformers** (``config.json`` + weights): converted to the pixsearch layout once
  (needs the ``torch`` extra), see ``convert.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from ..errors import PixsearchError
from .preprocess import Interpolation, PreprocessConfig, channel_values, interpolation_named, resize_named

MANIFEST = "pixsearch.json"
FORMAT = "pixsearch-onnx"
FORMAT_VERSION = 1

Layout = Literal["pixsearch", "immich", "transformers.js", "transformers"]
"""The model-folder layouts pixsearch reads (see the module doc)."""
Tower = Literal["image", "text"]
"""The two towers of a CLIP-family model."""
CleanMode = Literal["whitespace", "canonicalize"]
Precision = Literal["auto", "fp32", "int8"]
"""What ``--precision`` asks for; ``auto`` runs int8 where it was verified against fp32, else fp32."""


class ModelError(PixsearchError):
    """A model cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class TowerSpec:
    file: str
    """ONNX file, relative to the model directory."""
    output: str
    """Name of the output holding the embedding."""


@dataclass(frozen=True)
class TextSpec(TowerSpec):
    tokenizer: str = "tokenizer.json"
    input_ids: str = "input_ids"
    context_length: int = 77
    pad_to_context: bool = False
    """Pad every query to context_length (SigLIP and fixed-shape exports need it)."""
    pad_id: int = 0
    clean: CleanMode = "whitespace"
    """Text clean-up before tokenising: ``whitespace`` collapses runs of spaces;
    ``canonicalize`` also lower-cases and drops punctuation (open_clip's SigLIP rule)."""


def _flag(value: object) -> bool:
    """A JSON boolean, or the strings "true"/"false" that pixsearch 0.x wrote."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value)) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Variant:
    """Alternative tower files of a model (the INT8 variant ``pixsearch quantize`` makes), and how they
    measured against fp32. A tower the variant does not name runs its fp32 file."""

    image: str | None = None
    """The image tower's file: absolute (overlay variants) or relative to the model directory."""
    text: str | None = None
    verified: bool = False
    """Measured to agree with fp32; ``--precision auto`` only ever picks a verified variant."""
    image_recipe: str = "fp32"
    """The quantization recipe kept for each tower ("fp32": none agreed, the tower runs fp32)."""
    text_recipe: str = "fp32"
    image_min_cosine: float | None = None
    text_min_cosine: float | None = None
    top10_overlap: float | None = None
    image_speedup: float | None = None
    text_speedup: float | None = None
    samples: str = ""
    ladder: str = ""
    """The recipe ladder that made it (quantize.LADDER): a newer ladder re-quantizes."""
    image_tried: str = ""
    text_tried: str = ""

    def file(self, tower: Tower) -> str | None:
        return self.image if tower == "image" else self.text

    @classmethod
    def from_json(cls, entry: Mapping[str, object]) -> Variant:
        """Read an entry of a manifest or overlay; keys this version does not know are ignored."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            if item.name not in entry:
                continue
            raw = entry[item.name]
            if item.name == "verified":
                values[item.name] = _flag(raw)
            elif item.name.endswith(("_cosine", "_overlap", "_speedup")):
                values[item.name] = _number(raw)
            else:
                values[item.name] = None if raw is None else str(raw)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The entry as written to ``variants.json`` (towers the variant does not name left out)."""
        return {key: value for key, value in asdict(self).items()
                if value is not None or key not in ("image", "text")}


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    """Stable name recorded in the Milvus collection; embeddings of different ids never mix."""
    dim: int
    image: TowerSpec
    text: TextSpec
    preprocess: PreprocessConfig
    directory: Path = field(compare=False, default=Path("."))
    variants: dict[str, Variant] = field(default_factory=dict, compare=False)
    """Alternative ONNX files by variant name, e.g. ``{"int8": Variant(image="/cache/variants/m/image.int8.onnx")}``.

    Filled from the variants overlay in pixsearch's cache (``variants.py``), so the files
    usually live outside the model directory and are absolute; relative ones (older
    ``pixsearch.json`` manifests) are inside it. A tower a variant does not name runs fp32.
    """

    def path(self, relative: str) -> Path:
        """A file of the model: relative to its directory, or an absolute path (overlay variants)."""
        return self.directory / relative  # an absolute *relative* replaces the directory

    def tower_file(self, tower: Tower, variant: str = "fp32") -> str:
        """The file *tower* runs in *variant*: the variant's own, else the fp32 one."""
        own = self.variants[variant].file(tower) if variant in self.variants else None
        return own or (self.image.file if tower == "image" else self.text.file)

    def to_manifest(self) -> dict[str, Any]:
        pre = asdict(self.preprocess)
        pre["size"] = list(self.preprocess.size)
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model_id": self.model_id,
            "dim": self.dim,
            "image": asdict(self.image),
            "text": asdict(self.text),
            "preprocess": pre,
            "variants": {name: variant.to_json() for name, variant in self.variants.items()},
        }

    def write_manifest(self) -> Path:
        path = self.directory / MANIFEST
        path.write_text(json.dumps(self.to_manifest(), indent=2) + "\n", encoding="utf-8")
        return path


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"cannot read {path}: expected a JSON object, found {type(data).__name__}")
    return data


def _preprocess_from_dict(pre: dict[str, Any]) -> PreprocessConfig:
    size = pre["size"]
    return PreprocessConfig(
        size=(int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size)),
        resize=resize_named(pre.get("resize")),
        interpolation=interpolation_named(pre.get("interpolation")),
        mean=channel_values(pre["mean"], "preprocess.mean"),
        std=channel_values(pre["std"], "preprocess.std"),
        shortest_edge=pre.get("shortest_edge"),
    )


def read_pixsearch_dir(directory: Path) -> ModelSpec:
    data = _load_json(directory / MANIFEST)
    if data.get("format") != FORMAT or int(data.get("version", 0)) > FORMAT_VERSION:
        raise ModelError(f"{directory / MANIFEST} is not a pixsearch model manifest this version can read")
    return ModelSpec(
        model_id=data["model_id"],
        dim=int(data["dim"]),
        image=TowerSpec(**data["image"]),
        text=TextSpec(**data["text"]),
        preprocess=_preprocess_from_dict(data["preprocess"]),
        directory=directory,
        variants={str(name): Variant.from_json(entry) for name, entry in (data.get("variants") or {}).items()},
    )


# ----------------------------------------------------------------------------- transformers configs

_RESAMPLE: dict[int, Interpolation] = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def preprocess_from_hf(pre: dict[str, Any]) -> PreprocessConfig:
    """PreprocessConfig from a transformers ``preprocessor_config.json``.

    CLIP-style processors resize the shortest edge then centre-crop; SigLIP-style
    ones resize straight to height x width.
    """
    size = pre.get("size", 224)
    crop = pre.get("crop_size")
    interpolation = _RESAMPLE.get(int(pre.get("resample", 3)), "bicubic")
    mean = channel_values(pre.get("image_mean", (0.5, 0.5, 0.5)), "image_mean")
    std = channel_values(pre.get("image_std", (0.5, 0.5, 0.5)), "image_std")
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        if pre.get("do_center_crop", True) and crop:
            crop_hw = (int(crop["height"]), int(crop["width"])) if isinstance(crop, dict) else (int(crop), int(crop))
        else:
            crop_hw = (edge, edge)
        return PreprocessConfig(size=crop_hw, resize="shortest", interpolation=interpolation,
                                mean=mean, std=std, shortest_edge=edge)
    hw = (int(size["height"]), int(size["width"]))
    if pre.get("do_center_crop") and crop:
        crop_hw = (int(crop["height"]), int(crop["width"]))
        return PreprocessConfig(size=crop_hw, resize="shortest", interpolation=interpolation,
                                mean=mean, std=std, shortest_edge=min(hw))
    return PreprocessConfig(size=hw, resize="squash", interpolation=interpolation, mean=mean, std=std)


PROCESSOR_FILE = "processor_config.json"
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"


def hf_image_processor_file(directory: Path) -> tuple[Path, dict[str, Any]]:
    """The file holding a transformers checkpoint's image-processor settings, and those settings.

    transformers 5 saves a processor as one ``processor_config.json`` with the image
    processor nested under ``"image_processor"``; earlier versions write it alone to
    ``preprocessor_config.json`` (and may write a ``processor_config.json`` without it).
    The nested one wins, as it does in transformers' own loader. Nothing is guessed:
    image size and mean/std decide what the model sees.
    """
    processor = directory / PROCESSOR_FILE
    if processor.is_file():
        nested = _load_json(processor).get("image_processor")
        if isinstance(nested, dict):
            return processor, nested
    legacy = directory / IMAGE_PROCESSOR_FILE
    if legacy.is_file():
        return legacy, _load_json(legacy)
    raise ModelError(f"{directory} has no image-processor settings: pixsearch reads image size, crop and "
                     f"mean/std from {IMAGE_PROCESSOR_FILE} or from the \"image_processor\" entry of "
                     f"{PROCESSOR_FILE} and never guesses them; save the checkpoint's processor too "
                     "(processor.save_pretrained(DIR))")


def read_hf_preprocess(directory: Path) -> PreprocessConfig:
    """PreprocessConfig of a transformers-style directory, from either processor layout."""
    return preprocess_from_hf(hf_image_processor_file(directory)[1])


def is_transformers_dir(directory: Path) -> bool:
    """A transformers checkpoint (config + weights) that pixsearch can convert."""
    has_weights = any((directory / name).exists() for name in
                      ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"))
    return (directory / "config.json").is_file() and has_weights


def detect_layout(directory: Path) -> Layout:
    """Name the layout of a model directory: pixsearch, immich, transformers.js or transformers."""
    if (directory / MANIFEST).is_file():
        return "pixsearch"
    if (directory / "visual" / "model.onnx").is_file() and (directory / "textual" / "model.onnx").is_file():
        return "immich"
    if (directory / "onnx" / "vision_model.onnx").is_file() and (directory / "onnx" / "text_model.onnx").is_file():
        return "transformers.js"
    if is_transformers_dir(directory):
        return "transformers"
    raise ModelError(
        f"{directory} is not a model directory pixsearch knows: expected {MANIFEST} (pixsearch), "
        "visual/ + textual/ model.onnx (Immich), onnx/vision_model.onnx + onnx/text_model.onnx "
        "(transformers.js), or a transformers checkpoint (config.json + model.safetensors)"
    )
