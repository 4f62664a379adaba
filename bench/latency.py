"""Side-by-side latency with a progress bar: `runtimes.measure.time_interleaved` for bench's callers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench.progress import progress_bar
from runtimes.measure import LatencyStats, split_blocks, time_interleaved


def compare_latency(
    candidates: dict[str, Callable[[object], object]],
    inputs: Sequence[object],
    rounds: int = 5,
    warmup: int = 5,
) -> dict[str, LatencyStats]:
    """Time every candidate once per input; the inputs are dealt into `rounds` blocks and the
    candidates take turns block by block (see `runtimes.measure.timing` for why)."""
    with progress_bar() as bar:
        task = bar.add_task("latency", total=len(inputs) * len(candidates), info=", ".join(candidates))
        times = time_interleaved(candidates, split_blocks(inputs, rounds), warmup=warmup,
                                 on_block=lambda _name, n: bar.advance(task, n))
    return {name: t.stats() for name, t in times.items()}
