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

Candidates are a list (``candidates.CANDIDATES``): ONNX Runtime dynamic INT8; OpenVINO fp32, bf16
(only where the CPU has native bf16) and NNCF static INT8 when the ``openvino`` extra imports.
Each ``build`` makes and verifies its variant; ``measure`` then times fp32 and every verified
candidate together, interleaved pass by pass (``timing.py``), so a burst of other work on a
shared machine cannot decide the choice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .candidates import (
    CandidateResult,
    TowerChoice,
    Trial,
    candidates_for,
    one_query_at_a_time,
)
from .cpu import cpu_info
from .onnx import OnnxEmbedder, default_threads
from .spec import ModelError, ModelSpec
from .timing import interleaved_seconds
from .variants import overlay_dir, source_of

DECISIONS = "decisions.json"
PRECISIONS = ("auto", "fp32", "int8")
SAMPLE_IMAGES = 32
"""The user's images each candidate is verified and timed on."""

Log = Callable[[str], None]
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the machine


_cpu = cpu_info
"""This CPU's name and ISA flags (a name of its own here, so a test can stand in another machine)."""


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


# ----------------------------------------------------------------------------- choosing


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


def _timed(results: dict[str, CandidateResult], trial: Trial) -> dict[str, CandidateResult]:
    """*results* with their towers' rates, fp32 and every verified candidate timed together, interleaved
    (``timing.py``): images in batches as indexing runs them, queries one at a time as search does."""
    from dataclasses import replace

    from .quantize import MIN_SPEEDUP, TIMED_PASSES

    embedders = {"fp32": trial.reference, **{n: r.embedder for n, r in results.items() if r.embedder is not None}}
    trial.say(f"timing {', '.join(embedders)} on {len(trial.crops)} images, interleaved")
    image = interleaved_seconds({n: e.embed_prepared for n, e in embedders.items()}, trial.crops,
                                TIMED_PASSES["image"])
    text = interleaved_seconds({n: one_query_at_a_time(e) for n, e in embedders.items()}, trial.queries,
                               TIMED_PASSES["text"])
    timed = {}
    for name, result in results.items():
        towers = []
        for choice, secs, count in ((result.image, image, len(trial.crops)), (result.text, text, len(trial.queries))):
            base = count / secs["fp32"]
            rate = count / secs[name] if name in secs else base
            # a tower no faster than fp32 (within timing noise) gains nothing: it counts as fp32
            variant = choice.variant if rate >= MIN_SPEEDUP * base else "fp32"
            towers.append(replace(choice, variant=variant, fp32_rate=round(base, 2), rate=round(rate, 2)))
        if result.embedder is not None and result.image.variant.startswith("openvino-") and towers[0].variant == "fp32":
            towers[1] = replace(towers[1], variant="fp32")  # one OpenVINO embedder runs both towers: images decide
        timed[name] = replace(result, image=towers[0], text=towers[1])
    return timed


def measure(spec: ModelSpec, cache_dir: Path, samples: Sequence[Path], threads: int = 0, backend: str = "auto",
            min_cosine: float | None = None, say: Log = lambda _m: None,
            machine: dict[str, Any] | None = None) -> Decision:
    """Build and verify every candidate on *samples* (the user's images), time the verified ones against
    fp32 interleaved, record and return the decision. ``build_seconds`` covers all of it (NNCF's
    calibration included), which is what the break-even is computed from.

    *min_cosine*: the agreement bar, never below ``quantize.MIN_COSINE``. Fewer than 10 readable
    samples raise ModelError (nothing is recorded: a later, bigger run measures).
    """
    from .quantize import DEFAULT_QUERIES, MIN_COSINE, readable_crops

    bar = MIN_COSINE if min_cosine is None else min_cosine
    if bar < MIN_COSINE:
        raise ModelError(f"precision_min_cosine {bar} is below {MIN_COSINE}: automatic precision never "
                         "accepts less agreement with fp32 than that")
    machine = machine or machine_fingerprint(threads)
    started = time.perf_counter()
    candidates = candidates_for(backend, isa=machine.get("isa", []))
    reference = OnnxEmbedder(spec, threads=threads)
    crops = readable_crops(reference, samples)
    queries = list(DEFAULT_QUERIES)
    trial = Trial(spec, cache_dir, samples, crops, queries, reference, reference.embed_prepared(crops),
                  one_query_at_a_time(reference)(queries), threads, bar, say)
    results = _timed({c.variant: c.build(trial) for c in candidates}, trial)
    winner: tuple[float, Decision] | None = None
    fallback: Decision | None = None
    for candidate in candidates:
        result = results[candidate.variant]
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
