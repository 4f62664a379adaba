"""The machine a measurement ran on: every report carries it, since figures mean little without it."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
from dataclasses import asdict, dataclass, field

from runtimes.common.cpu import cpu_flags, cpuinfo_field, detect_isa

# Instruction sets that decide int8 / bf16 speed on x86 (names as /proc/cpuinfo spells them).
ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
             "amx_bf16")
# Versions are read from package metadata, never by importing: asking must not load torch.
PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "tokenizers", "onnx", "torch", "transformers",
            "nncf", "scikit-learn")


@dataclass(frozen=True)
class MachineInfo:
    cpu_model: str
    architecture: str
    logical_cpus: int
    usable_cpus: int  # the affinity mask: what a container or taskset really gives this process
    isa: tuple[str, ...]
    threads: int | None  # intra-op threads the measurement pinned (None: the backend's choice)
    os: str
    python: str
    versions: dict[str, str] = field(default_factory=dict)
    load_average: tuple[float, ...] = ()  # 1, 5, 15 minutes when measured: how shared the machine was
    int8_isa: str = ""  # the int8 class (runtimes.common.cpu.CpuIsa) that decides which int8 format is exact and fast

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        isa = ", ".join(self.isa) or "none of " + "/".join(ISA_FLAGS)
        libs = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        threads = "backend default" if self.threads is None else self.threads
        load = "/".join(f"{x:.1f}" for x in self.load_average) or "unknown"
        return (f"{self.cpu_model} ({self.architecture}, {self.usable_cpus}/{self.logical_cpus} CPUs usable, "
                f"threads {threads}, load average {load}); int8 class: {self.int8_isa or 'unknown'}; ISA: {isa}; "
                f"{self.os}; Python {self.python}; {libs}")


def machine_info(threads: int | None = None) -> MachineInfo:
    """Describe this machine and the installed inference libraries."""
    return MachineInfo(
        cpu_model=cpuinfo_field("model name") or platform.processor() or "unknown",
        architecture=platform.machine(),
        logical_cpus=os.cpu_count() or 1,
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        isa=tuple(f for f in ISA_FLAGS if f in cpu_flags()),
        threads=threads,
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        versions=_versions(),
        load_average=tuple(round(x, 2) for x in os.getloadavg()) if hasattr(os, "getloadavg") else (),
        int8_isa=detect_isa().value,
    )


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
