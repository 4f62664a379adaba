"""What the int8 steps share: the CPU they quantise for, and the speed-up they measure when it is this one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from runtimes.common.cpu import CpuTarget, detect_isa
from runtimes.common.errors import BackendUnavailableError
from runtimes.common.manifest import ModelFormat
from runtimes.embedded.backends import Device, SessionOptions
from runtimes.embedded.loader import choose_backend
from runtimes.measure.machine import machine_info
from toolchain.data import DataRole
from toolchain.steps.base import StepConfig, StepContext

log = logging.getLogger(__name__)

CpuName = Literal["native", "avx2", "avx512", "avx512_vnni", "arm64"]


class CpuInt8Step(StepConfig):
    """An int8 step whose format depends on the CPU that will serve the artifact.

    `cpu="native"` (the default) quantises for this machine; a named CPU (`avx2`, `avx512`,
    `avx512_vnni`, `arm64`) quantises for that one, and speed-ups are then not measured here.
    """

    cpu: CpuName = "native"

    @property
    def target(self) -> CpuTarget:
        return CpuTarget(self.cpu)

    def cache_record(self) -> dict[str, Any]:
        # `native` means another format on another machine: a shared cache must not hand one machine's
        # int8 to the other
        return {**super().cache_record(), "cpu": self.target.isa.value}


def cpu_details(cfg: CpuInt8Step) -> dict[str, Any]:
    """What a step's lineage record says about the CPU it quantised for and the one it ran on."""
    target = cfg.target
    return {"cpu_target": target.isa.value, "cpu_requested": cfg.cpu, "built_on_isa": detect_isa().value,
            "built_on": machine_info().cpu_model}


def measured_speedup(parent: Path, child: Path, model_format: ModelFormat, ctx: StepContext,
                     device: Device = Device.CPU, target: CpuTarget | None = None,
                     what: str = "this step") -> float | None:
    """Batch-1 speed of child over parent on `device`, measured side by side (the one measurement layer).

    None when the device is absent, or when `target` names a CPU of another int8 class than this one:
    a speed measured here says nothing about it. Below 1, warns that the step does not pay here.
    """
    from runtimes.measure import repeat_blocks, time_interleaved

    if target is not None and not target.is_local:
        log.info("%s was quantised for cpu:%s, not this CPU (%s): its speed-up is not measured here",
                 what, target.isa.value, detect_isa().value)
        return None
    try:
        backend, _ = choose_backend(model_format, device)
    except BackendUnavailableError:  # the step itself did its work: only its speed is unknown
        log.warning("%s is not here: the speed-up of %s could not be measured", device.value, what)
        return None
    sessions = {name: backend.load(p, device, SessionOptions()) for name, p in (("parent", parent), ("child", child))}
    calibration = ctx.data.get(DataRole.CALIBRATION) or ctx.data.get(DataRole.VALIDATION)
    texts = (calibration.texts if calibration else ("a short text to time the model on",) * 8)[:24]
    feeds = [ctx.checkpoint.encode([t], sessions["parent"].input_names) for t in texts]
    times = time_interleaved({name: s.run for name, s in sessions.items()}, repeat_blocks(feeds, 3), warmup=1)
    ratio = times["parent"].stats().p50_ms / times["child"].stats().p50_ms
    if ratio < 1:
        log.warning("%s made the model slower on this %s (x%.2f of its parent's speed at batch 1; int8 class %s): "
                    "it does not pay here, and the parent's graph (e.g. preset fp32) is the faster choice", what,
                    device.value, ratio, detect_isa().value)
    return round(ratio, 3)
