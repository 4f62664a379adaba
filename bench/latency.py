"""Side-by-side latency measurement: candidates take turns on the same inputs in one process."""

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
    warmup: int = 10,
) -> dict[str, LatencyReport]:
    """Time every candidate on every input, interleaved so machine noise hits all of them alike."""
    for run in candidates.values():
        for x in inputs[:warmup]:
            run(x)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with progress_bar() as bar:
        task = bar.add_task("latency", total=len(inputs), info=", ".join(candidates))
        for x in inputs:
            for name, run in candidates.items():
                t0 = time.perf_counter()
                run(x)
                times[name].append((time.perf_counter() - t0) * 1e3)
            bar.advance(task)
    return {
        name: LatencyReport(
            name, len(ts), statistics.median(ts), statistics.quantiles(ts, n=10)[-1], statistics.fmean(ts)
        )
        for name, ts in times.items()
    }
