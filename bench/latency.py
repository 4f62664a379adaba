"""Side-by-side latency: candidates take turns on the same inputs within one process."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from .progress import progress_bar


@dataclass(frozen=True)
class LatencyReport:
    name: str
    samples: int
    p50_ms: float
    p90_ms: float
    mean_ms: float


def compare_latency(
    candidates: dict[str, Callable[[object], object]],
    inputs: Sequence[object],
    rounds: int = 5,
    warmup: int = 5,
) -> dict[str, LatencyReport]:
    """Time every candidate on every input.

    The inputs are cut into `rounds` blocks; in each round every candidate runs the whole block
    (after `warmup` untimed calls). Taking turns by block, not by call, matters: ONNX Runtime,
    OpenVINO and OpenMP keep their worker threads spinning for a while after each call, and
    alternating call by call makes each engine pay for the others' spinning threads.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    blocks = [inputs[i::rounds] for i in range(rounds)]
    with progress_bar() as bar:
        task = bar.add_task("latency", total=len(inputs) * len(candidates), info=", ".join(candidates))
        for block in blocks:
            for name, run in candidates.items():
                for x in block[:warmup]:
                    run(x)
                for x in block:
                    t0 = time.perf_counter()
                    run(x)
                    times[name].append((time.perf_counter() - t0) * 1e3)
                bar.advance(task, len(block))
    return {
        name: LatencyReport(name, len(ts), statistics.median(ts), statistics.quantiles(ts, n=10)[-1],
                            statistics.fmean(ts))
        for name, ts in times.items()
    }
