"""Automatic, verified precision: measure once per model and machine which variant runs fastest.

On the first ``index`` of a model on a machine (``--precision auto``, the default) and a run
big enough to pay for it, pixsearch builds each candidate variant it supports, verifies it
against fp32 on the user's own images (``quantize.quantize_model``: cosine >= 0.999 on every
sample, top-10 agreement), times it, and records a *decision* here: which variant won per
tower, the measured rates and cosines, and when. The record lives next to the variants
overlay (``<cache_dir>/variants/<model id>/decisions.json``), one entry per machine
fingerprint (CPU model, the ISA flags INT8 and bf16 kernels depend on, ONNX Runtime version,
thread count). A new machine, another ONNX Runtime, another thread count or changed model
files (``variants.source_of``) finds no entry and measures again.

Query-time code (``serve``, ``search``) only reads the record for the text tower: it never
builds variants, since a query must not wait tens of seconds.

Candidates are a list (``CANDIDATES``): ONNX Runtime dynamic INT8, and OpenVINO fp32 and
bf16-hint (``openvino.py``) when the ``openvino`` extra imports; each ``build`` returns a
``CandidateResult`` timed and verified against ONNX Runtime fp32 on the same samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .base import Embedder
from .onnx import default_threads
from .spec import ModelError, ModelSpec
from .variants import overlay_dir, source_of

DECISIONS = "decisions.json"
BACKENDS = ("onnxruntime", "openvino")
"""Backends pixsearch runs today; ``auto`` picks among them."""
PRECISIONS = ("auto", "fp32", "int8")
SAMPLE_IMAGES = 32
"""The user's images each candidate is verified and timed on."""
ISA_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The CPU features ONNX Runtime's INT8 and bf16 kernels dispatch on: a change can flip the winner."""

Log = Callable[[str], None]
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the machine


def _cpu() -> tuple[str, list[str]]:
    """CPU model name and the ISA flags in ``ISA_FLAGS`` it has (Linux /proc/cpuinfo; elsewhere the
    platform's processor name and no flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), []
    name, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return name or platform.machine(), [flag for flag in ISA_FLAGS if flag in flags]


def machine_fingerprint(threads: int = 0) -> dict[str, Any]:
    """What the measured speeds depend on besides the model: CPU, ISA flags, runtime, threads."""
    import onnxruntime

    from .openvino import openvino_version

    cpu, flags = _cpu()
    machine = {"cpu": cpu, "isa": flags, "onnxruntime": onnxruntime.__version__,
               "threads": threads or default_threads()}
    version = openvino_version()
    if version is not None:  # installing, upgrading or removing OpenVINO can change the winner
        machine["openvino"] = version
    return machine


def machine_key(machine: dict[str, Any]) -> str:
    """A short stable key for a fingerprint (the decisions file keeps one entry per key)."""
    return hashlib.blake2b(json.dumps(machine, sort_keys=True).encode(), digest_size=8).hexdigest()


# ----------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class TowerChoice:
    """What won for one tower, and the numbers it won on."""

    variant: str
    """What this tower runs: "int8" or "fp32" (ONNX Runtime), or "openvino-fp32" / "openvino-bf16"."""
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
class Decision:
    """The outcome of measuring on one machine: the variant ``auto`` runs, and why."""

    variant: str
    """The variant name ``--precision auto`` loads ("fp32" or a candidate's)."""
    reason: str
    """One line for people: what was chosen and why."""
    backend: str = "onnxruntime"
    image: TowerChoice | None = None
    text: TowerChoice | None = None
    samples: int = 0
    """How many of the user's images it was verified and timed on."""
    build_seconds: float = 0.0
    """Building, verifying and timing the candidates, in seconds."""
    measured_at: float = field(default_factory=time.time)
    machine: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        towers = {name: TowerChoice(**data[name]) if isinstance(data.get(name), dict) else None
                  for name in ("image", "text")}
        return cls(variant=str(data["variant"]), reason=str(data["reason"]), backend=str(data.get("backend", "")),
                   image=towers["image"], text=towers["text"], samples=int(data.get("samples", 0)),
                   build_seconds=float(data.get("build_seconds", 0.0)),
                   measured_at=float(data.get("measured_at", 0.0)), machine=dict(data.get("machine", {})))


def _decisions_path(spec: ModelSpec, cache_dir: Path) -> Path:
    return overlay_dir(cache_dir, spec.model_id) / DECISIONS


def _read_all(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def read_decision(spec: ModelSpec, cache_dir: Path, machine: dict[str, Any]) -> Decision | None:
    """The decision measured for *spec*'s current files on *machine*, or None (never measured,
    another machine, or the model files changed since)."""
    data = _read_all(_decisions_path(spec, cache_dir))
    try:
        if data.get("source") != source_of(spec):
            return None
    except OSError:  # a tower file is missing: the embedder will say so when it opens it
        return None
    entry = (data.get("machines") or {}).get(machine_key(machine))
    if not isinstance(entry, dict):
        return None
    try:
        return Decision.from_json(entry)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring a malformed decision in %s: %s", _decisions_path(spec, cache_dir), exc)
        return None


def write_decision(spec: ModelSpec, cache_dir: Path, decision: Decision) -> Path:
    """Record *decision* for *spec*'s current files and its machine (atomically; other machines'
    entries are kept while the model files stay the same)."""
    path = _decisions_path(spec, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = source_of(spec)
    data = _read_all(path)
    machines = data.get("machines") if data.get("source") == source else None
    entries = dict(machines) if isinstance(machines, dict) else {}
    entries[machine_key(decision.machine)] = decision.to_json()
    payload = {"model_id": spec.model_id, "source": source, "machines": entries}
    handle, tmp = tempfile.mkstemp(prefix=".decisions-", suffix=".json", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class CandidateResult:
    """A candidate built, verified and timed on the samples."""

    verified: bool
    image: TowerChoice
    text: TowerChoice
    samples: int
    failure: str = ""
    """Why it failed verification, in words ("" when verified)."""


@dataclass(frozen=True)
class Candidate:
    """A variant pixsearch can build itself, on one backend."""

    variant: str
    backend: str
    build: Callable[[ModelSpec, Path, Sequence[Path], int, float, Log], CandidateResult]
    """(spec, cache_dir, sample images, threads, min cosine, log) -> result; records the variant in the cache."""


def _build_ort_int8(spec: ModelSpec, cache_dir: Path, samples: Sequence[Path], threads: int, min_cosine: float,
                    say: Log) -> CandidateResult:
    """ONNX Runtime dynamic INT8, through ``pixsearch quantize``'s own code (recipe ladder, verification)."""
    from .quantize import MIN_TOP10_OVERLAP, quantize_model

    report = quantize_model(spec, cache_dir, samples, threads=threads, log=say, min_cosine=min_cosine)
    towers = []
    for result, count in ((report.image, report.images), (report.text, report.queries)):
        fp32_rate = count / result.fp32_seconds if result.fp32_seconds > 0 else 0.0
        rate = count / result.int8_seconds if result.int8_seconds > 0 else fp32_rate
        towers.append(TowerChoice("int8" if result.quantized else "fp32", round(fp32_rate, 2), round(rate, 2),
                                  round(result.min_cosine, 5), result.recipe))
    failure = ""
    if not report.verified:
        worst = min(report.image.min_cosine, report.text.min_cosine)
        failure = (f"min cosine {worst:.4f}, needs {min_cosine}" if worst < min_cosine else
                   f"top-10 overlap {report.top10_overlap:.2f}, needs {MIN_TOP10_OVERLAP}")
    return CandidateResult(report.verified, towers[0], towers[1], report.images, failure)


def _build_openvino(precision: str) -> Callable[[ModelSpec, Path, Sequence[Path], int, float, Log], CandidateResult]:
    """OpenVINO at *precision* (fp32 or bf16 hint), verified and timed against ONNX Runtime fp32 with
    ``pixsearch quantize``'s bar: cosine >= min_cosine on every sample image and query, top-10 agreement."""

    def build(spec: ModelSpec, cache_dir: Path, samples: Sequence[Path], threads: int, min_cosine: float,
              say: Log) -> CandidateResult:
        from .onnx import OnnxEmbedder
        from .openvino import OpenVinoEmbedder
        from .quantize import DEFAULT_QUERIES, MIN_SPEEDUP, MIN_TOP10_OVERLAP, _cosines, _runner, _timed, top_k_overlap

        reference = OnnxEmbedder(spec, threads=threads)
        trial = OpenVinoEmbedder(spec, cache_dir, threads=threads, precision=precision)
        crops = _readable_crops(reference, samples)
        queries = list(DEFAULT_QUERIES)
        say(f"openvino-{precision}: timing against onnxruntime fp32 on {len(crops)} images")
        towers, worst, vectors = [], 1.0, []
        for tower, items in (("image", crops), ("text", queries)):
            ref, ref_secs = _timed(tower, _runner(reference, tower), items)  # type: ignore[arg-type]
            out, secs = _timed(tower, _runner(trial, tower), items)  # type: ignore[arg-type]
            cosine = float(_cosines(ref, out).min())
            worst = min(worst, cosine)
            vectors.append((ref, out))
            towers.append((len(items) / ref_secs, len(items) / secs, cosine))
        overlap = top_k_overlap(vectors[1][0], vectors[0][0], vectors[1][1], vectors[0][1])
        verified = worst >= min_cosine and overlap >= MIN_TOP10_OVERLAP
        faster = towers[0][1] >= MIN_SPEEDUP * towers[0][0]  # indexing speed decides the backend
        name = f"openvino-{precision}" if faster else "fp32"
        image, text = (TowerChoice(name, round(base, 2), round(rate, 2), round(cos, 5), "openvino")
                       for base, rate, cos in towers)
        failure = "" if verified else (f"min cosine {worst:.4f}, needs {min_cosine}" if worst < min_cosine else
                                       f"top-10 overlap {overlap:.2f}, needs {MIN_TOP10_OVERLAP}")
        return CandidateResult(verified, image, text, len(crops), failure)

    return build


def _readable_crops(embedder: Embedder, samples: Sequence[Path]) -> list[Any]:
    """Model-sized crops of the *samples* that decode, as ``pixsearch quantize`` verifies on."""
    from .quantize import readable_crops

    return list(readable_crops(embedder, samples))


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("int8", "onnxruntime", _build_ort_int8),
    Candidate("openvino-fp32", "openvino", _build_openvino("fp32")),
    Candidate("openvino-bf16", "openvino", _build_openvino("bf16")),
)
"""What ``auto`` tries against fp32, in order; the fastest verified one wins. OpenVINO candidates
run only where the ``openvino`` extra imports."""


def candidates_for(backend: str) -> list[Candidate]:
    """The candidates *backend* ("auto": every installed backend) offers; a user-actionable error for an
    unknown one, or for ``openvino`` without the extra."""
    from .openvino import openvino_available, require_openvino

    check_backend(backend)
    if backend == "openvino":
        require_openvino()
    usable = {"onnxruntime", *(("openvino",) if openvino_available() else ())}
    return [c for c in CANDIDATES if backend in ("auto", c.backend) and c.backend in usable]


def check_backend(backend: str) -> None:
    if backend != "auto" and backend not in BACKENDS:
        raise ModelError(f"backend {backend!r} is not available; use auto or one of: {', '.join(BACKENDS)}")


def _floor(value: float, digits: int = 4) -> str:
    """*value* rounded down: "cosine >= 0.9995" must never overstate the agreement."""
    return f"{math.floor(value * 10 ** digits) / 10 ** digits:.{digits}f}"


def _explain(result: CandidateResult, name: str) -> str:
    image, text = result.image, result.text
    if not result.verified:
        return f"fp32: {name.upper()} failed verification ({result.failure})"
    if image.variant == "fp32" and text.variant == "fp32":
        return f"fp32: {name.upper()} agreed but was no faster than fp32 here"
    lowest = min(t.min_cosine for t in (image, text) if t.variant != "fp32")
    parts = [f"{t.speedup:.1f}x faster than fp32 for {label}" for t, label in
             ((image, "images"), (text, "text queries")) if t.variant != "fp32"]
    return (f"{name}: {', '.join(parts)} here, cosine >= {_floor(lowest)} on {result.samples} of your images"
            + ("" if image.variant != "fp32" else " (images stay fp32: no faster or no agreement)"))


def measure(spec: ModelSpec, cache_dir: Path, samples: Sequence[Path], threads: int = 0, backend: str = "auto",
            min_cosine: float | None = None, say: Log = lambda _m: None,
            machine: dict[str, Any] | None = None) -> Decision:
    """Build, verify and time every candidate on *samples* (the user's images), record and return the decision.

    *min_cosine*: the agreement bar, never below ``quantize.MIN_COSINE``. Fewer than 10 readable
    samples raise ModelError (nothing is recorded: a later, bigger run measures).
    """
    from .quantize import MIN_COSINE

    bar = MIN_COSINE if min_cosine is None else min_cosine
    if bar < MIN_COSINE:
        raise ModelError(f"precision_min_cosine {bar} is below {MIN_COSINE}: automatic precision never "
                         "accepts less agreement with fp32 than that")
    machine = machine or machine_fingerprint(threads)
    started = time.perf_counter()
    winner: tuple[float, Decision] | None = None
    fallback: Decision | None = None
    for candidate in candidates_for(backend):
        result = candidate.build(spec, cache_dir, samples, threads, bar, say)
        reason = _explain(result, candidate.variant)
        image, text = result.image, result.text
        usable = result.verified and (image.variant != "fp32" or text.variant != "fp32")  # verified and faster
        if usable:  # indexing speed first, query speed breaks ties
            speed = (image.speedup if image.variant != "fp32" else 1.0) + 1e-3 * text.speedup
            if winner is None or speed > winner[0]:
                winner = (speed, Decision(candidate.variant, reason, candidate.backend, image, text, result.samples))
        elif fallback is None:
            fallback = Decision("fp32", reason, candidate.backend, image, text, result.samples)
    best = winner[1] if winner else fallback or Decision("fp32", "fp32: no candidate variant for this backend")
    decision = Decision(best.variant, best.reason, best.backend, best.image, best.text, best.samples,
                        build_seconds=round(time.perf_counter() - started, 1), machine=machine)
    write_decision(spec, cache_dir, decision)
    return decision


def break_even(build_seconds: float, fp32_rate: float, fast_rate: float) -> float:
    """Images after which building a variant has paid for itself: build time / time saved per image
    (infinite when the variant is no faster)."""
    saved = 1 / fp32_rate - 1 / fast_rate if fp32_rate > 0 and fast_rate > 0 else 0.0
    return build_seconds / saved if saved > 0 else math.inf
