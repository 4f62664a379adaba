"""What the CPU can do, for choosing quantisation settings."""

from __future__ import annotations

import platform

from runtimes.measure.machine import cpu_flags  # the one place that reads /proc/cpuinfo


def int8_isa() -> str:
    """The best int8 dot-product instruction set here: avx512_vnni, avx_vnni, avx512, avx2, or unknown."""
    flags = cpu_flags()
    for isa in ("avx512_vnni", "avx_vnni"):
        if isa in flags:
            return isa
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return platform.machine() or "unknown"


def has_vnni() -> bool:
    return int8_isa() in ("avx512_vnni", "avx_vnni")
