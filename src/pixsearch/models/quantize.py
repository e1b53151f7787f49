"""INT8 variants of any model: dynamic quantization, verified against fp32 on real images.

Dynamic INT8 (weights quantized ahead of time, activations per batch at run
time) needs no calibration set and runs ViT-B towers 2-3x faster on CPUs. Trained
CLIP weights have outlier channels, so a quantized tower is only trusted after
it reproduces the fp32 embeddings (cosine >= 0.999 on every sample image and
query) and the retrieval results (top-10 overlap). Each tower tries a ladder of
recipes, from fastest to most conservative, and keeps the first that agrees; a
tower none of them saves stays fp32. The result is recorded as ``variants["int8"]``
in the variants overlay in pixsearch's cache (``variants.py``), never in the model
folder, so models of every layout (Immich and transformers.js exports in the Hugging
Face cache included) can use it; ``precision=auto`` uses it only when its
``verified`` flag is ``"true"``. Every trial runs through OnnxEmbedder, the code
that indexes and searches, so input names and types (Immich's int32 ``text``) and
fixed-batch exports are handled as they are in use.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..images import IMAGE_SUFFIXES, ImageError, load_image
from .base import Embedder
from .onnx import OnnxEmbedder
from .spec import ModelError, ModelSpec, Tower, Variant
from .timing import interleaved_seconds
from .variants import overlay_dir, write_overlay

if TYPE_CHECKING:
    import onnx

Vectors = npt.NDArray[np.float32]
Crop = npt.NDArray[np.uint8]
Runner = Callable[[Sequence[Any]], Vectors]
"""Embeds a list of crops (image tower) or of queries (text tower)."""
Log = Callable[[str], None]

MIN_COSINE = 0.999
"""Every sample embedding must agree with fp32 at least this well."""
MIN_TOP10_OVERLAP = 0.9
"""Mean share of the fp32 top-10 (text -> image) that the int8 variant must also return."""
MIN_SPEEDUP = 1.1
"""A verified tower that runs less than this much faster than fp32 stays fp32 inside the variant
(a gain within timing noise is no gain)."""
VARIANT = "int8"

DEFAULT_QUERIES = (
    "a dog running on the grass", "a cat sleeping on a sofa", "a red car parked on the street",
    "people walking on a beach", "a plate of food with vegetables", "a man riding a bicycle",
    "a bowl of fruit on a table", "a train at a station", "a child playing with a ball", "a snowy mountain",
    "a bedroom with a large bed", "two giraffes in a field", "an airplane in the sky", "a pizza with cheese",
    "a woman holding an umbrella", "a kitchen with a stove", "a boat on a lake", "a laptop on a desk",
    "a group of people at a party", "a bus on a city street", "a black and white photo", "a close-up of a flower",
    "a blue dress", "a pair of running shoes", "a man wearing a suit and tie", "a horse in a stable",
    "a bathroom with a white sink", "a skateboarder doing a trick", "a clock tower", "an elephant near water",
)
"""Verification queries when the user gives none: everyday photo descriptions, COCO-style."""


FIRST_BLOCK = r"/(layers|layer|resblocks)\.0/"
"""Node names of the first transformer block: transformers CLIP/SigLIP (``layers.0``), BERT-style
text encoders such as XLM-R (``layer.0``) and open_clip (``resblocks.0``) exports."""
MLP_DOWN = r"/mlp/(fc2|c_proj)/|/layer\.\d+/output/dense/"
"""MLP down-projections in the same three naming schemes."""


@dataclass(frozen=True)
class Recipe:
    """One way of quantizing a tower; the ladder goes from fastest to most faithful."""

    name: str
    per_channel: bool = True
    reduce_range: bool = False
    """7-bit weights: avoids int16 saturation of u8*s8 products on AVX2 CPUs without VNNI."""
    exclude: tuple[str, ...] = ()
    """Regular expressions of node names left in fp32 (besides every Conv: the patch embedding)."""
    keep_projection: bool = False
    """Leave the tower's last MatMul/Gemm (the projection into the shared space) in fp32."""


RECIPES: tuple[Recipe, ...] = (
    Recipe("per-channel"),
    Recipe("per-channel-7bit", reduce_range=True),
    # The first block (raw token/patch embeddings) and the final projection are where errors cost
    # most. Measured on a ViT-B/32-shaped text tower (min cosine, speed against fp32): all-int8
    # 0.9967 at 2.0x, 7-bit 0.9987 at 1.9x, keep-first 0.9991 at 1.5-1.7x, keep-first-proj 0.9992 at 1.4-1.7x.
    Recipe("per-channel-7bit-keep-first", reduce_range=True, exclude=(FIRST_BLOCK,)),
    Recipe("per-channel-7bit-keep-first-proj", reduce_range=True, exclude=(FIRST_BLOCK,), keep_projection=True),
    # MLP down-projections see the post-GELU outliers of trained CLIP. The most faithful recipe
    # and the slowest (0.9994 at 1.3x on that tower; sometimes no faster than fp32, which then stays).
    Recipe("per-channel-7bit-keep-first-fc2-proj", reduce_range=True, exclude=(MLP_DOWN, FIRST_BLOCK),
           keep_projection=True),
)
LADDER = ",".join(recipe.name for recipe in RECIPES)
"""Recorded with each variant, so a variant made by an older ladder can be told apart."""


@dataclass
class TowerResult:
    """How the chosen file of one tower compares with fp32 on the samples."""

    tower: Tower
    file: str
    """Absolute path of the file the variant runs: the int8 file in the overlay, or the model's fp32 one."""
    recipe: str
    """Recipe kept, or "fp32" when no recipe agreed."""
    min_cosine: float
    mean_cosine: float
    fp32_seconds: float
    int8_seconds: float
    tried: list[str] = field(default_factory=list)

    @property
    def quantized(self) -> bool:
        return self.recipe != "fp32"

    @property
    def speedup(self) -> float:
        if not self.quantized:  # runs the fp32 file: untimed, and as fast as fp32 by definition
            return 1.0
        return self.fp32_seconds / self.int8_seconds if self.int8_seconds > 0 else 0.0


@dataclass
class QuantizeReport:
    image: TowerResult
    text: TowerResult
    top10_overlap: float
    images: int
    queries: int
    verified: bool
    overlay: Path | None = None
    """The variants.json the variant was recorded in."""

    def variant_entry(self, folder: Path) -> Variant:
        """The overlay entry: quantized tower files relative to the overlay *folder*, fp32 towers left
        out (they run the model's own file), measurements rounded as reports show them."""
        image, text = self.image, self.text
        return Variant(
            image=Path(image.file).relative_to(folder).as_posix() if image.quantized else None,
            text=Path(text.file).relative_to(folder).as_posix() if text.quantized else None,
            verified=self.verified, image_recipe=image.recipe, text_recipe=text.recipe,
            image_min_cosine=round(image.min_cosine, 5), text_min_cosine=round(text.min_cosine, 5),
            top10_overlap=round(self.top10_overlap, 3), image_speedup=round(image.speedup, 2),
            text_speedup=round(text.speedup, 2), samples=f"{self.images} images, {self.queries} queries",
            ladder=LADDER, image_tried="; ".join(image.tried), text_tried="; ".join(text.tried))


# ----------------------------------------------------------------------------- quantizing


def _weight_matmuls(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """MatMul/Gemm nodes whose second input is a stored weight: the ones dynamic quantization
    rewrites (``MatMulConstBOnly``), in graph (topological) order."""
    weights = {i.name for i in graph.initializer}
    weights |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    return [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in weights]


def _excluded_nodes(model_path: Path, recipe: Recipe) -> list[str]:
    """Names of the nodes that must stay fp32: every Conv, plus what *recipe* keeps.

    Unnamed nodes are never listed: the quantizer compares names, so an empty one would keep
    every unnamed node in fp32.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    regex = re.compile("|".join(recipe.exclude)) if recipe.exclude else None
    matmuls = _weight_matmuls(graph)
    kept = [n.name for n in graph.node if n.op_type == "Conv"]
    kept += [n.name for n in matmuls if regex is not None and regex.search(n.name)]
    if recipe.keep_projection and matmuls:
        kept.append(matmuls[-1].name)  # the last weight MatMul projects into the shared space
    return [name for name in dict.fromkeys(kept) if name]


def _integer_ops(model_path: Path) -> int:
    """How many integer MatMuls a quantized tower runs (0: the recipe kept everything in fp32)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QGemm") for n in graph.node)


def quantize_tower(src: Path, dst: Path, recipe: Recipe) -> Path:
    """Write the dynamic-INT8 version of tower *src* to *dst* (MatMul/Gemm weights only)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer warns about pre-processing on every call
    quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], per_channel=recipe.per_channel,
                     reduce_range=recipe.reduce_range, weight_type=QuantType.QInt8,
                     nodes_to_exclude=_excluded_nodes(src, recipe), extra_options={"MatMulConstBOnly": True})
    return dst


# ----------------------------------------------------------------------------- verifying


def sample_images(folder: Path, limit: int) -> list[Path]:
    """Up to *limit* image files under *folder*, in a stable order."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files[:limit]


def _cosines(a: Vectors, b: Vectors) -> Vectors:
    """Row-wise cosine of two embedding matrices (rows are unit length already)."""
    cosines: Vectors = np.sum(a * b, axis=1)
    return cosines


def top_k_overlap(queries_a: Vectors, gallery_a: Vectors, queries_b: Vectors, gallery_b: Vectors,
                  k: int = 10) -> float:
    """Mean share of top-*k* results (by inner product) that two embedding versions have in common."""
    k = min(k, len(gallery_a))
    top_a = np.argsort(-(queries_a @ gallery_a.T), axis=1)[:, :k]
    top_b = np.argsort(-(queries_b @ gallery_b.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_a, top_b, strict=True)]))


TIMED_PASSES: dict[Tower, int] = {"image": 3, "text": 5}
"""Timed passes per tower (the fastest counts): one pass over the queries takes ~0.2 s, too short to
time once on a shared machine; one over 32 images a few seconds, and a single one of those read
0.97x and 2.74x for the same ViT-B/32 INT8 image tower in two runs on a shared 2-core machine."""


INT8_FILES: dict[Tower, str] = {"image": "image.int8.onnx", "text": "text.int8.onnx"}
"""Names of the quantized towers in the overlay folder (the same for every layout)."""


def _fp32_file(spec: ModelSpec, tower: Tower) -> Path:
    return spec.path(spec.image.file if tower == "image" else spec.text.file)


def _embedder(spec: ModelSpec, image_file: Path, text_file: Path, threads: int) -> OnnxEmbedder:
    """An embedder running the given tower files, through the code that indexes and searches."""
    trial = dataclasses.replace(spec, variants={"trial": Variant(image=str(image_file), text=str(text_file))})
    return OnnxEmbedder(trial, threads=threads, variant="trial")


def _runner(embedder: OnnxEmbedder, tower: Tower) -> Runner:
    """How a tower is used in practice: images in batches while indexing, texts one query at a time."""
    if tower == "image":
        return embedder.embed_prepared

    def one_by_one(texts: Sequence[str]) -> Vectors:
        return np.concatenate([embedder.embed_texts([t]) for t in texts])

    return one_by_one


@dataclass(frozen=True)
class _Trial:
    """What every recipe of a tower is tried on, and where its files go."""

    spec: ModelSpec
    work: Path
    """Scratch folder the candidate files are written to."""
    folder: Path
    """The overlay folder the kept files will be moved to."""
    crops: list[Crop]
    queries: list[str]
    threads: int
    log: Log
    min_cosine: float = MIN_COSINE
    """The agreement bar every sample must meet (``MIN_COSINE`` unless the caller asks for stricter)."""


def _check_tower(trial: _Trial, tower: Tower, reference: Vectors, fp32: Runner) -> tuple[TowerResult, Vectors]:
    """Walk the recipe ladder for one tower in ``trial.work``; keep the first recipe that agrees with fp32.

    Each recipe is timed interleaved with *fp32* (``timing.interleaved_seconds``), so a burst of
    another process's work lands on both and the speed-up is a ratio from the same moments.

    The kept file is ``work/INT8_FILES[tower]``; the result names where it will live in ``trial.folder``.
    """
    spec, folder, log = trial.spec, trial.folder, trial.log
    src = _fp32_file(spec, tower)
    dst = trial.work / INT8_FILES[tower]
    kept = dst.with_name(dst.name + ".best")
    tried: list[str] = []
    best: tuple[TowerResult, Vectors] | None = None
    for recipe in RECIPES:
        quantize_tower(src, dst, recipe)
        if not _integer_ops(dst):  # a tiny tower whose every weight MatMul the recipe keeps: nothing gained
            tried.append(f"{recipe.name}: keeps every layer in fp32")
            continue
        files = (dst, _fp32_file(spec, "text")) if tower == "image" else (_fp32_file(spec, "image"), dst)
        embedder = _embedder(spec, *files, threads=trial.threads)
        items: Sequence[Any] = trial.crops if tower == "image" else trial.queries
        candidate = _runner(embedder, tower)
        vectors = candidate(items)
        timed = interleaved_seconds({"fp32": fp32, "int8": candidate}, items, TIMED_PASSES[tower])
        fp32_seconds, seconds = timed["fp32"], timed["int8"]
        cos = _cosines(vectors, reference)
        tried.append(f"{recipe.name}: min cosine {cos.min():.5f}, {fp32_seconds / seconds:.2f}x fp32 speed")
        log(f"  {tower} tower, {recipe.name}: min cosine {cos.min():.5f}, mean {cos.mean():.5f}, "
            f"{fp32_seconds / seconds:.2f}x fp32 speed")
        result = TowerResult(tower, str(folder / dst.name), recipe.name, float(cos.min()), float(cos.mean()),
                             fp32_seconds, seconds, tried)
        if cos.min() >= trial.min_cosine:
            kept.unlink(missing_ok=True)
            return result, vectors
        if best is None or result.min_cosine > best[0].min_cosine:
            best = (result, vectors)
            dst.replace(kept)
    if best is None:  # no recipe quantized anything: the tower has no weight MatMul to speed up
        return TowerResult(tower, str(src), "fp32", 1.0, 1.0, 0.0, 0.0, tried), reference
    kept.replace(dst)
    return best


def _fallback(result: TowerResult, spec: ModelSpec, reference: Vectors) -> tuple[TowerResult, Vectors]:
    """A tower no recipe saved (or that gained no speed) runs its fp32 file inside the int8 variant."""
    return dataclasses.replace(result, file=str(_fp32_file(spec, result.tower)), recipe="fp32", min_cosine=1.0,
                               mean_cosine=1.0, int8_seconds=result.fp32_seconds), reference


def readable_crops(embedder: Embedder, samples: Sequence[Path]) -> list[Crop]:
    """Model-sized crops of the *samples* that decode: at least 10, else ModelError (nothing to
    verify on). Unreadable samples are left out; verification needs images, not every image."""
    crops: list[Crop] = []
    for path in samples:
        try:
            crops.append(embedder.prepare(load_image(path, min_side=embedder.min_decode_side).rgb))
        except ImageError:
            continue
    if len(crops) < 10:
        raise ModelError(f"verification needs at least 10 readable sample images, found {len(crops)}")
    return crops


def quantize_model(spec: ModelSpec, cache_dir: Path, sample_images: Sequence[Path],
                   queries: Sequence[str] = DEFAULT_QUERIES, threads: int = 0,
                   log: Log = lambda _message: None, min_cosine: float = MIN_COSINE) -> QuantizeReport:
    """Quantize both towers of the model *spec* (any layout), verify, and record the variant in the
    overlay under *cache_dir* (``variants.py``); the model folder is only read.

    *log* receives one line per recipe tried; the models layer never prints, its caller does.
    *min_cosine*: the per-sample agreement bar (never below ``MIN_COSINE`` in use; tests raise it)."""
    folder = overlay_dir(cache_dir, spec.model_id)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".quantizing-", dir=folder.parent))
    try:
        report = _quantize_in(spec, work, folder, sample_images, queries, threads, log, min_cosine)
        files: dict[Tower, Path] = {t.tower: work / INT8_FILES[t.tower] for t in (report.image, report.text)
                                    if t.quantized}
        report.overlay = write_overlay(spec, cache_dir, VARIANT, report.variant_entry(folder), files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _quantize_in(spec: ModelSpec, work: Path, folder: Path, sample_images: Sequence[Path], queries: Sequence[str],
                 threads: int, log: Log, min_cosine: float = MIN_COSINE) -> QuantizeReport:
    reference_model = _embedder(spec, _fp32_file(spec, "image"), _fp32_file(spec, "text"), threads)
    crops = readable_crops(reference_model, sample_images)
    trial = _Trial(spec=spec, work=work, folder=folder, crops=crops, queries=list(queries), threads=threads, log=log,
                   min_cosine=min_cosine)
    log(f"verifying against fp32 on {len(crops)} images and {len(trial.queries)} queries")
    image_fp32, text_fp32 = _runner(reference_model, "image"), _runner(reference_model, "text")
    image_ref, text_ref = image_fp32(crops), text_fp32(trial.queries)
    image, image_vecs = _check_tower(trial, "image", reference=image_ref, fp32=image_fp32)
    text, text_vecs = _check_tower(trial, "text", reference=text_ref, fp32=text_fp32)
    forced = image.min_cosine < min_cosine and text.min_cosine < min_cosine
    if not forced:  # a failing (or no faster) tower runs fp32 inside the variant; the other one still gains
        if image.min_cosine < min_cosine or image.speedup < MIN_SPEEDUP:
            image, image_vecs = _fallback(image, spec, image_ref)
        if text.min_cosine < min_cosine or text.speedup < MIN_SPEEDUP:
            text, text_vecs = _fallback(text, spec, text_ref)
    overlap = top_k_overlap(text_ref, image_ref, text_vecs, image_vecs)
    verified = (not forced and min(image.min_cosine, text.min_cosine) >= min_cosine and overlap >= MIN_TOP10_OVERLAP)
    return QuantizeReport(image=image, text=text, top10_overlap=overlap, images=len(crops), queries=len(trial.queries),
                          verified=verified)
