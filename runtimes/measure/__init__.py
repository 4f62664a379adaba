"""The one measurement layer: torch-free primitives that steps, the demo, `bench` and the gate all call.

    timing     interleaved block timing of several runners, latency statistics
    quality    task metrics: accuracy / macro-F1, entity F1, QA exact match / F1
    machine    CPU model, instruction sets, threads, library versions
    files      artifact and checkpoint sizes
    footprint  a fresh process that loads an artifact and serves requests: phases, peak RSS

Heavy libraries (scikit-learn, seqeval) are imported inside the functions that need them, so
`import runtimes` stays lean; this package imports nothing from toolchain or bench.
"""

from runtimes.measure.files import artifact_size_bytes, checkpoint_size_bytes
from runtimes.measure.machine import MachineInfo, machine_info
from runtimes.measure.timing import (
    BlockTimes,
    LatencyStats,
    cycle_blocks,
    repeat_blocks,
    split_blocks,
    time_interleaved,
)

__all__ = [
    "BlockTimes",
    "LatencyStats",
    "MachineInfo",
    "artifact_size_bytes",
    "checkpoint_size_bytes",
    "cycle_blocks",
    "machine_info",
    "repeat_blocks",
    "split_blocks",
    "time_interleaved",
]
