"""The CPU an artifact serves on: its int8 instruction set, detected here or named by the user.

Which int8 format is exact and which one pays depends on the instruction set:

- `avx2` and `avx512` (AVX-512 without VNNI): ONNX Runtime's and oneDNN's u8 x s8 kernels multiply with
  VPMADDUBSW, which adds two u8*s8 products into a saturating int16. Full-range 8-bit weights can overflow
  it: weights must be 7-bit (`reduce_range`), or NNCF's overflow fix on (half the weight range).
- `avx512_vnni` (also AVX-VNNI and AMX machines): VPDPBUSD accumulates in int32 and never saturates.
- `arm64`: the NEON and dot-product kernels widen before they add; no saturation.

Every decision reads `detect_isa()` (one function, so tests can fake the CPU) or a `CpuTarget` the
user named for a machine they will deploy on. Detection asks numpy's CPU dispatcher, which runs CPUID
in this process (it sees what an emulator or hypervisor really offers), and reads /proc/cpuinfo only
for AVX-VNNI, which numpy does not report.
"""

from __future__ import annotations

import enum
import functools
import importlib
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

from runtimes.common.errors import InputError

log = logging.getLogger(__name__)


class CpuIsa(str, enum.Enum):
    """An int8 instruction-set class: what decides the int8 format of a CPU artifact."""

    AVX2 = "avx2"  # x86 without AVX-512 and without VNNI: AMD Zen 1-3, Intel Haswell to Comet Lake
    AVX512 = "avx512"  # AVX-512 without VNNI: Intel Skylake-SP
    AVX512_VNNI = "avx512_vnni"  # VNNI: Intel Cascade Lake and later servers, Alder Lake and later (AVX-VNNI), Zen 4+
    ARM64 = "arm64"  # aarch64 (Graviton, Ampere, Apple silicon, Raspberry Pi, Jetson)

    @property
    def saturates(self) -> bool:
        """True when full-range u8 x s8 products can overflow the int8 kernels' int16 sums."""
        return self in (CpuIsa.AVX2, CpuIsa.AVX512)

    @property
    def family(self) -> str:
        """The int8 class shown to users: artifacts are interchangeable within one."""
        return {CpuIsa.AVX2: "non-VNNI x86", CpuIsa.AVX512: "non-VNNI x86", CpuIsa.AVX512_VNNI: "VNNI",
                CpuIsa.ARM64: "ARM"}[self]


NATIVE = "native"
TARGET_NAMES = (NATIVE, *(isa.value for isa in CpuIsa))


@dataclass(frozen=True)
class CpuTarget:
    """The CPU an artifact is built for: `native` (this machine, the default) or a named `CpuIsa`."""

    requested: str = NATIVE

    def __post_init__(self) -> None:
        if self.requested not in TARGET_NAMES:
            raise InputError(f"unknown CPU {self.requested!r}; choose one of: {', '.join(TARGET_NAMES)}")

    @property
    def isa(self) -> CpuIsa:
        """The instruction-set class the int8 format is chosen for."""
        return detect_isa() if self.requested == NATIVE else CpuIsa(self.requested)

    @property
    def is_local(self) -> bool:
        """True when this machine is of the target's class: only then do speed measurements here mean anything."""
        return same_int8_class(self.isa.value, detect_isa().value)


def parse_target(text: str) -> CpuTarget:
    """`native`, `avx2`, `avx512`, `avx512_vnni` or `arm64` (the part after `cpu:` in `--target cpu:avx2`)."""
    return CpuTarget(text.strip().lower())


@functools.lru_cache(maxsize=1)
def detect_isa() -> CpuIsa:
    """This machine's int8 class, from the CPU features this process can use."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return CpuIsa.ARM64
    features = cpu_features()
    if "AVX512VNNI" in features or "AVX_VNNI" in features:
        return CpuIsa.AVX512_VNNI
    if "AVX512BW" in features:
        return CpuIsa.AVX512
    if "AVX2" not in features and machine not in ("x86_64", "amd64", "i686", "x86"):
        log.warning("unknown CPU architecture %r: int8 is chosen as for AVX2 (7-bit weights, never saturates)",
                    machine)
    return CpuIsa.AVX2  # also x86 without AVX2: the 7-bit format is exact on every x86 kernel


@functools.lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """The CPU features this process sees, upper case as numpy names them (AVX2, AVX512VNNI, ASIMDDP...).

    AVX_VNNI (VNNI on AVX2 registers) comes from /proc/cpuinfo, and only when /proc/cpuinfo agrees with
    CPUID about AVX-512: under an emulator /proc/cpuinfo describes the host, not the CPU being run.
    """
    try:  # a private module of numpy's, without type stubs
        umath = importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:  # numpy < 2
        umath = importlib.import_module("numpy.core._multiarray_umath")
    found: dict[str, bool] = umath.__cpu_features__
    features = {name for name, present in found.items() if present}

    flags = cpu_flags()
    if "avx_vnni" in flags and ("avx512f" in flags) == ("AVX512F" in features) and "AVX2" in features:
        features.add("AVX_VNNI")
    return frozenset(features)


def same_int8_class(a: str, b: str) -> bool:
    """True when int8 artifacts made for `a` run as intended on `b` (names of `CpuIsa`)."""
    try:
        return CpuIsa(a).family == CpuIsa(b).family
    except ValueError:
        return a == b


_WARNED: set[tuple[str, str]] = set()


def warn_if_foreign(int8_target: str | None, where: str) -> bool:
    """Warn once per (target, machine) pair when an int8 artifact tuned for another int8 class runs here.

    Returns True when it warned (or had already warned for this pair)."""
    if not int8_target:
        return False
    try:
        target = CpuIsa(int8_target)
    except ValueError:
        return False
    here = detect_isa()
    if same_int8_class(target.value, here.value):
        return False
    key = (target.value, here.value)
    if key not in _WARNED:
        _WARNED.add(key)
        risk = ("its full-range int8 weights can saturate this CPU's int8 kernels and lose accuracy"
                if here.saturates and not target.saturates else
                "its 7-bit int8 weights run here but give up precision this CPU does not need"
                if target.saturates and not here.saturates else
                "its int8 format and speed were chosen for another instruction set")
        log.warning("%s was tuned for %s int8 (cpu:%s) but this CPU is %s (cpu:%s): %s. Rebuild it on this "
                    "machine (optimise's default, --target cpu:native), or for this CPU on any machine with "
                    "--target cpu:%s (openvino:%s for OpenVINO)",
                    where, target.family, target.value, here.family, here.value, risk, here.value, here.value)
    return True


def cpu_flags() -> frozenset[str]:
    """Instruction-set flags from /proc/cpuinfo (Linux); empty where it cannot be read."""
    value = cpuinfo_field("flags")
    return frozenset(value.split()) if value else frozenset()


def cpuinfo_field(name: str) -> str | None:
    """A field of /proc/cpuinfo's first processor (Linux), the one place that reads it; None elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None
