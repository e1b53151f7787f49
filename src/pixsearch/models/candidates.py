"""The variants ``--precision auto`` can build itself, each verified against ONNX Runtime fp32.

A candidate's ``build`` makes its variant (ONNX Runtime dynamic INT8 through ``pixsearch
quantize``'s recipe ladder; OpenVINO fp32 and bf16 hints; OpenVINO + NNCF static INT8 of the image
tower calibrated on the user's images) and checks it on the user's images with ``quantize``'s
bar: cosine >= min_cosine on every sample image and query, and top-10 agreement. It does not time
the variant: ``autotune.measure`` times every verified candidate and fp32 together, interleaved
(``timing.py``), so contention on a shared machine costs all of them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import Embedder
from .cpu import cpu_info, has_bf16
from .onnx import OnnxEmbedder
from .spec import ModelError, ModelSpec

BACKENDS = ("onnxruntime", "openvino")
"""Backends pixsearch runs today; ``auto`` picks among them."""
Log = Callable[[str], None]


@dataclass(frozen=True)
class TowerChoice:
    """What won for one tower, and the numbers it won on."""

    variant: str
    """What this tower runs: "int8" or "fp32" (ONNX Runtime), or "openvino-fp32" / "openvino-bf16" /
    "openvino-int8"."""
    fp32_rate: float
    """Items per second in fp32 on the samples (images in batches; queries one at a time)."""
    rate: float
    """Items per second of the variant that won (== fp32_rate when fp32 won)."""
    min_cosine: float
    """Lowest cosine to fp32 over the samples of the candidate tried (1.0: fp32, or nothing to quantize)."""
    recipe: str = "fp32"

    @property
    def speedup(self) -> float:
        return self.rate / self.fp32_rate if self.fp32_rate > 0 else 1.0


@dataclass(frozen=True)
class Trial:
    """What every candidate is built and verified on: the user's images and fp32's answers on them."""

    spec: ModelSpec
    cache_dir: Path
    samples: Sequence[Path]
    """The user's image files (``pixsearch quantize`` reads them itself)."""
    crops: Sequence[np.ndarray]
    """The same images decoded and model-sized."""
    queries: Sequence[str]
    reference: OnnxEmbedder
    """ONNX Runtime fp32: what every candidate must agree with."""
    image_ref: np.ndarray
    text_ref: np.ndarray
    threads: int
    min_cosine: float
    say: Log


@dataclass(frozen=True)
class CandidateResult:
    """A candidate built and verified; its towers' rates are filled in once it has been timed."""

    verified: bool
    image: TowerChoice
    text: TowerChoice
    samples: int
    failure: str = ""
    """Why it failed verification, in words ("" when verified)."""
    embedder: Embedder | None = None
    """What runs the variant (None when it failed: it is never timed nor used)."""


@dataclass(frozen=True)
class Candidate:
    """A variant pixsearch can build itself, on one backend."""

    variant: str
    backend: str
    build: Callable[[Trial], CandidateResult]
    """Builds the variant into the cache and verifies it on the trial's samples."""


def _failure(worst: float, overlap: float, min_cosine: float) -> str:
    from .quantize import MIN_TOP10_OVERLAP

    if worst < min_cosine:
        return f"min cosine {worst:.4f}, needs {min_cosine}"
    return f"top-10 overlap {overlap:.2f}, needs {MIN_TOP10_OVERLAP}" if overlap < MIN_TOP10_OVERLAP else ""


def _build_ort_int8(trial: Trial) -> CandidateResult:
    """ONNX Runtime dynamic INT8, through ``pixsearch quantize``'s own code (recipe ladder, verification)."""
    from .quantize import VARIANT, quantize_model
    from .variants import with_overlay

    report = quantize_model(trial.spec, trial.cache_dir, trial.samples, queries=trial.queries, threads=trial.threads,
                            log=trial.say, min_cosine=trial.min_cosine)
    image, text = (TowerChoice("int8" if r.quantized else "fp32", 0.0, 0.0, round(r.min_cosine, 5), r.recipe)
                   for r in (report.image, report.text))
    worst = min(report.image.min_cosine, report.text.min_cosine)
    failure = "" if report.verified else _failure(worst, report.top10_overlap, trial.min_cosine) or "not verified"
    embedder = (OnnxEmbedder(with_overlay(trial.spec, trial.cache_dir), threads=trial.threads, variant=VARIANT)
                if report.verified else None)
    return CandidateResult(report.verified, image, text, report.images, failure, embedder)


def one_query_at_a_time(embedder: Embedder) -> Callable[[Sequence[Any]], np.ndarray]:
    """How the text tower is used in practice: one query per call."""

    def run(texts: Sequence[Any]) -> np.ndarray:
        return np.concatenate([embedder.embed_texts([t]) for t in texts])

    return run


def _build_openvino(precision: str) -> Callable[[Trial], CandidateResult]:
    """OpenVINO at *precision* (fp32 or bf16 hint; int8: NNCF static INT8 of the image tower, built
    first and calibrated on the trial's images), verified against ONNX Runtime fp32."""

    def build(trial: Trial) -> CandidateResult:
        from .openvino import OpenVinoEmbedder
        from .quantize import MIN_TOP10_OVERLAP, _cosines, top_k_overlap

        if precision == "int8":
            from .nncf_int8 import build_int8_image

            build_int8_image(trial.spec, trial.cache_dir, trial.crops, trial.say)
        name = f"openvino-{precision}"
        candidate = OpenVinoEmbedder(trial.spec, trial.cache_dir, threads=trial.threads, precision=precision)
        trial.say(f"{name}: verifying against onnxruntime fp32 on {len(trial.crops)} images")
        image_out = candidate.embed_prepared(trial.crops)
        text_out = one_query_at_a_time(candidate)(trial.queries)
        image_cos, text_cos = float(_cosines(trial.image_ref, image_out).min()), float(
            _cosines(trial.text_ref, text_out).min())
        overlap = top_k_overlap(trial.text_ref, trial.image_ref, text_out, image_out)
        worst = min(image_cos, text_cos)
        verified = worst >= trial.min_cosine and overlap >= MIN_TOP10_OVERLAP
        recipe = "nncf-static-int8" if precision == "int8" else "openvino"
        image, text = (TowerChoice(name, 0.0, 0.0, round(cos, 5), recipe) for cos in (image_cos, text_cos))
        return CandidateResult(verified, image, text, len(trial.crops),
                               "" if verified else _failure(worst, overlap, trial.min_cosine),
                               candidate if verified else None)

    return build


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("int8", "onnxruntime", _build_ort_int8),
    Candidate("openvino-fp32", "openvino", _build_openvino("fp32")),
    Candidate("openvino-bf16", "openvino", _build_openvino("bf16")),
    Candidate("openvino-int8", "openvino", _build_openvino("int8")),
)
"""What ``auto`` tries against fp32; the fastest verified one wins. OpenVINO candidates run only
where the ``openvino`` extra imports, bf16 only where the CPU has native bf16, NNCF static INT8
only where nncf imports."""


def _nncf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def candidates_for(backend: str, isa: Sequence[str] | None = None) -> list[Candidate]:
    """The candidates *backend* ("auto": every installed backend) offers on a CPU with the *isa* flags
    (None: this CPU's, read now); a user-actionable error for an unknown backend, or for ``openvino``
    without the extra."""
    from .openvino import openvino_available, require_openvino

    check_backend(backend)
    if backend == "openvino":
        require_openvino()
    usable = {"onnxruntime", *(("openvino",) if openvino_available() else ())}
    flags = cpu_info()[1] if isa is None else list(isa)
    skipped = {*(() if has_bf16(flags) else ("openvino-bf16",)), *(() if _nncf_available() else ("openvino-int8",))}
    return [c for c in CANDIDATES
            if backend in ("auto", c.backend) and c.backend in usable and c.variant not in skipped]


def check_backend(backend: str) -> None:
    if backend != "auto" and backend not in BACKENDS:
        raise ModelError(f"backend {backend!r} is not available; use auto or one of: {', '.join(BACKENDS)}")
