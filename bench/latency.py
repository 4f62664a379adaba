"""Side-by-side latency with a progress bar: `runtimes.measure.time_interleaved` for bench's callers."""

from __future__ import annotations

from typing import Callable, Sequence

from runtimes.measure import LatencyStats, split_blocks, time_interleaved

from .progress import progress_bar


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
