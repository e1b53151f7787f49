"""Timing candidates against each other fairly on a machine other processes share.

Timing fp32 for a few seconds and then each candidate for a few seconds lets a burst of someone
else's work land on one of them only, and the choice follows the burst (a single pass read
0.97x and 2.74x for the same INT8 tower in two runs on a shared 2-core machine). Here every pass
runs each runner once, in an order rotated every pass, and each runner keeps its fastest pass:
other processes only ever add time, and a burst now costs every runner about equally.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Runner = Callable[[Sequence[Any]], Any]
"""Runs one tower over the items (crops in batches, or queries one at a time)."""
Clock = Callable[[], float]


def pass_orders(names: Sequence[str], passes: int) -> list[list[str]]:
    """The order each pass runs the runners in: rotated by one every pass, so no runner always goes
    first (right after a warm-up) or last."""
    count = len(names)
    return [[names[(start + i) % count] for i in range(count)] for start in range(passes)] if count else []


def interleaved_seconds(runners: Mapping[str, Runner], items: Sequence[Any], passes: int,
                        clock: Clock = time.perf_counter) -> dict[str, float]:
    """Fastest of *passes* timed calls of each runner on *items*, the runners interleaved pass by pass.

    Each runner is called once first, untimed (lazy loading, compilation, caches). *clock* is the
    time source (``time.perf_counter``; a test gives a clock it controls).
    """
    if passes < 1:
        raise ValueError(f"passes must be at least 1, not {passes}")
    for run in runners.values():
        run(items)
    best = dict.fromkeys(runners, float("inf"))
    for order in pass_orders(list(runners), passes):
        for name in order:
            start = clock()
            runners[name](items)
            best[name] = min(best[name], clock() - start)
    return best
