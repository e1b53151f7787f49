"""Autotune's candidates and how they are timed: interleaved passes, bf16 only on CPUs that have it,
and the OpenVINO + NNCF static INT8 candidate built, kept in pixsearch's cache and verified."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pixsearch.models import load_spec
from pixsearch.models.candidates import Trial, candidates_for, one_query_at_a_time
from pixsearch.models.cpu import cpu_info, has_bf16
from pixsearch.models.onnx import OnnxEmbedder
from pixsearch.models.quantize import DEFAULT_QUERIES, TIMED_PASSES, readable_crops
from pixsearch.models.timing import interleaved_seconds, pass_orders

from .conftest import sample_images


class BusyMachine:
    """A clock and runners on it: each runner costs fixed time per call, and other work lands as a
    burst on the calls made while it lasts, as on a shared machine."""

    def __init__(self, costs: dict[str, float], burst_calls: range, burst: float):
        self.now = 0.0
        self.calls: list[str] = []
        self.costs, self.burst_calls, self.burst = costs, burst_calls, burst

    def clock(self) -> float:
        return self.now

    def runner(self, name: str) -> Any:
        def run(_items: Sequence[Any]) -> None:
            busy = self.burst if len(self.calls) in self.burst_calls else 0.0
            self.calls.append(name)
            self.now += self.costs[name] + busy

        return run


def test_pass_orders_rotate_so_no_runner_always_goes_first():
    assert pass_orders(["fp32", "int8", "ov"], 3) == [["fp32", "int8", "ov"], ["int8", "ov", "fp32"],
                                                      ["ov", "fp32", "int8"]]
    assert pass_orders([], 3) == []


def test_a_burst_of_other_work_does_not_decide_the_timing():
    # fp32 truly takes 3 s a pass, int8 1 s. A burst covers the first four calls after the warm-ups:
    # timed one after the other, all of one runner's passes would fall in it (next test); interleaved,
    # each runner still gets a clean pass.
    machine = BusyMachine({"fp32": 3.0, "int8": 1.0}, burst_calls=range(2, 6), burst=10.0)
    best = interleaved_seconds({n: machine.runner(n) for n in ("fp32", "int8")}, [0], passes=3, clock=machine.clock)
    assert best == {"fp32": 3.0, "int8": 1.0}
    assert machine.calls == ["fp32", "int8", "fp32", "int8", "int8", "fp32", "fp32", "int8"]  # warm-ups, rotated


def test_the_old_one_after_the_other_timing_is_misled_by_the_same_burst():
    # The control for the test above: the sequential best-of-passes autotune and quantize used before,
    # same burst, same costs: every fp32 pass falls in the burst.
    machine = BusyMachine({"fp32": 3.0, "int8": 1.0}, burst_calls=range(1, 5), burst=10.0)

    def one_after_the_other(name: str) -> float:
        run = machine.runner(name)
        run([0])  # warm-up
        best = float("inf")
        for _ in range(TIMED_PASSES["image"]):
            start = machine.clock()
            run([0])
            best = min(best, machine.clock() - start)
        return best

    fp32, int8 = one_after_the_other("fp32"), one_after_the_other("int8")
    assert TIMED_PASSES["image"] == 3 and fp32 > 10 and int8 == 1.0


def test_interleaved_timing_needs_a_pass():
    with pytest.raises(ValueError, match="at least 1"):
        interleaved_seconds({}, [], passes=0)


@pytest.mark.parametrize(("flags", "bf16"), [
    ("fpu sse avx2 fma avx512f avx512_vnni", False),  # Ice Lake / Zen 3-class: no native bf16
    ("fpu avx2 avx512f avx512_bf16 avx512_vnni", True),  # Zen 4, Cooper Lake
    ("fpu avx2 amx_tile amx_bf16 amx_int8", True),  # Sapphire Rapids' AMX
    ("fpu sse sse2 avx avx2", False),  # AVX2-only
])
def test_bf16_is_offered_only_where_the_cpu_has_it(tmp_path, flags, bf16):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n", encoding="utf-8")
    name, isa = cpu_info(cpuinfo)
    assert name == "Test CPU" and has_bf16(isa) is bf16
    pytest.importorskip("openvino")
    offered = {c.variant for c in candidates_for("auto", isa=isa)}
    assert ("openvino-bf16" in offered) is bf16
    assert {"int8", "openvino-fp32", "openvino-int8"} <= offered


def test_nncf_static_int8_is_built_in_the_cache_and_verified(tiny_model, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from pixsearch.models.nncf_int8 import quantized_ops
    from pixsearch.models.openvino import cache_dir_for, int8_image_file

    cache = tmp_path / "cache"
    spec = load_spec(str(tiny_model), cache)
    assert int8_image_file(spec, cache) is None
    reference = OnnxEmbedder(spec)
    crops = readable_crops(reference, sample_images()[:24])
    queries = list(DEFAULT_QUERIES)
    said: list[str] = []

    def trial(bar: float) -> Trial:
        return Trial(spec, cache, [], crops, queries, reference, reference.embed_prepared(crops),
                     one_query_at_a_time(reference)(queries), 0, bar, said.append)

    build = next(c for c in candidates_for("openvino", isa=[]) if c.variant == "openvino-int8").build
    result = build(trial(0.999))
    ir = int8_image_file(spec, cache)
    assert ir is not None and ir.is_relative_to(cache_dir_for(cache, spec.model_id)) and quantized_ops(ir) > 0
    assert not any(p.suffix in (".xml", ".bin") for p in Path(tiny_model).rglob("*"))  # model folder only read
    assert any(f"calibrating NNCF static INT8 on {len(crops)} of your images" in line for line in said)
    # A real INT8 model of the same function: close to fp32, not equal (the tiny random tower sits near the bar)
    assert 0.95 < result.image.min_cosine < 0.99999 and result.text.min_cosine > 0.9999
    assert result.verified is (result.image.min_cosine >= 0.999 and not result.failure)
    assert (result.embedder is None) is (not result.verified)
    # A bar the quantized tower cannot meet: it fails, says why, and nothing is left to run it
    strict = build(trial(0.9999))
    assert not strict.verified and strict.embedder is None and strict.failure.startswith("min cosine")
