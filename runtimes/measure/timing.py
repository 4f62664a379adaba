"""Latency timing: several runners take turns on the same inputs, block by block, in one process.

Why blocks: ONNX Runtime, OpenVINO and OpenMP keep worker threads spinning for a while after each
call, so alternating call by call makes each engine pay for the others' spinning threads. Why
turns: a shared machine drifts (other jobs, frequency, thermal state); when the runners take turns
every block, drift hits them alike and ratios between them stay meaningful. The order inside a
round alternates (A B, then B A) so neither runner always goes first after the other's threads.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

# Called after each timed block with (runner name, calls timed in the block), e.g. to advance a progress bar.
BlockCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in milliseconds. `iqr_ms` (p75 - p25) is the spread."""

    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    iqr_ms: float

    @classmethod
    def from_samples(cls, times_ms: Sequence[float]) -> LatencyStats:
        if not times_ms:
            raise ValueError("no latency samples to summarise")
        ordered = sorted(times_ms)
        return cls(
            samples=len(ordered),
            p50_ms=percentile(ordered, 50),
            p90_ms=percentile(ordered, 90),
            p99_ms=percentile(ordered, 99),
            mean_ms=statistics.fmean(ordered),
            min_ms=ordered[0],
            iqr_ms=percentile(ordered, 75) - percentile(ordered, 25),
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile of sorted values, linearly interpolated (numpy's default method)."""
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class BlockTimes:
    """Per-call times (ms) of one runner, one list per timed block, in the order they were taken."""

    name: str
    blocks: list[list[float]] = field(default_factory=list)

    @property
    def calls(self) -> list[float]:
        return [t for block in self.blocks for t in block]

    def block_medians(self) -> list[float]:
        """One robust value per block: a preempted call moves the block's median little."""
        return [statistics.median(b) for b in self.blocks]

    def stats(self) -> LatencyStats:
        return LatencyStats.from_samples(self.calls)

    def block_costs(self, inputs: int) -> list[float]:
        """Per block, the undisturbed cost of the workload: the sum over its inputs of each input's
        fastest call, for blocks that cycle through `inputs` inputs several times (`cycle_blocks`).

        On a loaded machine a call is slowed by waiting for a core, never sped up, and the chance of
        being disturbed grows with the call's length; so a block's median drifts with the load and
        exaggerates differences, while each input's fastest call stays near what the computation costs.
        """
        return [workload_cost(block, inputs) for block in self.blocks]


def workload_cost(times: Sequence[float], inputs: int) -> float:
    """Sum over `inputs` of the fastest call of each, for times taken cycling over them in order."""
    if inputs < 1 or not times or len(times) % inputs:
        raise ValueError(f"{len(times)} calls do not cycle over {inputs} inputs")
    return sum(min(times[i::inputs]) for i in range(inputs))


def cycle_blocks(inputs: Sequence[T], repeats: int, rounds: int) -> list[list[T]]:
    """`rounds` blocks, each going through all the inputs `repeats` times (for `BlockTimes.block_costs`).

    Cycling (1 2 3 1 2 3) rather than repeating in place (1 1 2 2 3 3) spreads each input's calls
    over the block, so one burst of load cannot disturb all of them.
    """
    if not inputs or repeats < 1:
        raise ValueError("need at least one input and one repeat")
    return [list(inputs) * repeats for _ in range(rounds)]


def split_blocks(inputs: Sequence[T], rounds: int) -> list[list[T]]:
    """Deal the inputs into `rounds` blocks (every input timed once): 0, r, 2r... then 1, r+1...

    Dealing rather than slicing keeps each block's mix of text lengths like the whole set's.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    blocks = [list(inputs[i::rounds]) for i in range(min(rounds, len(inputs)))]
    if not blocks:
        raise ValueError("no inputs to time")
    return blocks


def repeat_blocks(inputs: Sequence[T], rounds: int) -> list[list[T]]:
    """The same inputs in every block, so that block values are comparable round to round."""
    if not inputs:
        raise ValueError("no inputs to time")
    return [list(inputs) for _ in range(rounds)]


def time_interleaved(
    runners: Mapping[str, Callable[[T], object]],
    blocks: Sequence[Sequence[T]],
    warmup: int = 2,
    into: Mapping[str, BlockTimes] | None = None,
    on_block: BlockCallback | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, BlockTimes]:
    """Time each runner on each input; runners take turns block by block.

    In round r every runner makes `warmup` untimed calls, then times one call per input of
    `blocks[r]`. Pass earlier results as `into` to append more rounds (the gate does this when it
    needs more samples); round parity continues from there so the A-B / B-A alternation holds.
    """
    if not runners:
        raise ValueError("no runners to time")
    results = {name: BlockTimes(name) for name in runners} if into is None else dict(into)
    missing = [n for n in runners if n not in results]
    if missing:
        raise ValueError(f"`into` has no entry for {', '.join(missing)}")
    names = list(runners)
    done = len(results[names[0]].blocks)
    for offset, block in enumerate(blocks):
        order = names if (done + offset) % 2 == 0 else names[::-1]
        for name in order:
            run = runners[name]
            for x in list(block)[:warmup]:
                run(x)
            times = []
            for x in block:
                t0 = clock()
                run(x)
                times.append((clock() - t0) * 1e3)
            results[name].blocks.append(times)
            if on_block is not None:
                on_block(name, len(times))
    return results
