"""What this CPU is and which instruction sets it has, read at run time (never assumed).

Autotune keys its decisions on these (a new CPU measures again) and offers a bf16 candidate only
where the CPU computes in bf16 natively: elsewhere OpenVINO would emulate it, slower than fp32.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from pathlib import Path

ISA_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The CPU features ONNX Runtime's and OpenVINO's INT8 and bf16 kernels dispatch on: a change can flip the winner."""
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""Either gives native bf16 arithmetic (Zen 4 and Cooper Lake: avx512_bf16; Sapphire Rapids on: AMX)."""


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """CPU model name and the ISA flags in ``ISA_FLAGS`` it has (Linux /proc/cpuinfo; elsewhere the
    platform's processor name and no flags)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
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


def has_bf16(isa: Iterable[str]) -> bool:
    """Whether a CPU with these ISA flags computes bf16 natively."""
    return any(flag in BF16_FLAGS for flag in isa)
