"""What the CPU can do, for choosing quantisation settings."""

from __future__ import annotations

import functools
import platform
from pathlib import Path


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """Instruction-set flags from /proc/cpuinfo (Linux); empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


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
