"""Soak test of the embedded runtime: one pipeline, many threads, many requests, hostile ones mixed in.

    python -m tools.soak ARTIFACT [--threads 8 --requests 10000 --rss-requests 100000]

Two measurements, both against the same `runtimes.load` pipeline:

1. Concurrency: `--threads` threads share the pipeline for `--requests` mixed requests (single
   texts, batches, top_k variants, empty and over-long texts, non-ASCII, and bad inputs that must
   raise `InputError`). Every answer must equal the serial answer to the same request, and every
   bad input must raise `InputError`; anything else counts as an error.
2. Memory: `--rss-requests` requests in one thread; resident memory is sampled as they run. The
   figure is the peak after warm-up (the first 5%) over the resident size at the end of warm-up.

Exit status 1 when there was any error, a mismatch, or memory grew by more than `--max-rss-growth`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.progress import progress_bar
from runtimes import InputError, Task, load
from toolchain.tasks import adapter_for

_WORDS = ["film", "story", "actor", "scene", "great", "dull", "slow", "brilliant", "plot", "score", "director", "cast",
          "moving", "bland", "funny", "script", "twist", "ending", "music", "visual", "long", "short", "café", "naïve",
          "東京", "😀"]


@dataclass(frozen=True)
class Request:
    """One call to the pipeline; `bad` requests must raise InputError."""

    args: tuple
    kwargs: dict
    bad: bool = False


def request_pool(task: Task, size: int = 400, seed: int = 0) -> list[Request]:
    """A fixed mix of realistic and hostile requests for `task`."""
    rng = random.Random(seed)

    def text(low: int = 1, high: int = 60) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high)))

    adapter = adapter_for(task)
    pool: list[Request] = []
    for i in range(size):
        args, kwargs, bad = adapter.soak_request(i % 10, text, rng)
        pool.append(Request(args, kwargs, bad=bad))
    return pool


def call(pipe: Callable, request: Request) -> Any:
    return pipe(*request.args, **request.kwargs)


def outcome(pipe: Callable, request: Request) -> str:
    """The answer as canonical JSON, or the InputError's message: what a repeat call must give again."""
    try:
        return json.dumps(call(pipe, request), sort_keys=True)
    except InputError as exc:
        return f"InputError: {exc}"


@dataclass
class ConcurrencyResult:
    threads: int
    requests: int
    bad_requests: int
    errors: int
    mismatches: int
    seconds: float
    first_problem: str = ""


def soak_threads(pipe: Callable, pool: list[Request], threads: int, requests: int, seed: int = 1) -> ConcurrencyResult:
    """Run `requests` requests drawn from `pool` on `threads` threads; compare with serial answers.

    A request may be refused with InputError (a question too long for a tiny window, say), but then
    every call must refuse it the same way; the hostile ones must be refused.
    """
    expected = [outcome(pipe, request) for request in pool]
    not_refused = [i for i, r in enumerate(pool) if r.bad and not expected[i].startswith("InputError")]
    if not_refused:
        raise AssertionError(f"hostile requests {not_refused[:5]} were answered instead of refused")
    rng = random.Random(seed)
    order = [rng.randrange(len(pool)) for _ in range(requests)]
    counts = {"errors": 0, "mismatches": 0, "bad": 0}
    problems: list[str] = []
    lock = threading.Lock()

    def worker(indices: list[int], bar, task) -> None:
        for index in indices:
            request = pool[index]
            try:
                problem = "mismatch" if outcome(pipe, request) != expected[index] else ""
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            with lock:
                counts["bad"] += request.bad
                if problem:
                    counts["mismatches" if problem == "mismatch" else "errors"] += 1
                    problems.append(f"request {index}: {problem}")
            bar.advance(task)

    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("threads", total=requests, info=f"{threads} threads")
        workers = [threading.Thread(target=worker, args=(order[t::threads], bar, task)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return ConcurrencyResult(threads, requests, counts["bad"], counts["errors"], counts["mismatches"],
                             time.perf_counter() - started, problems[0] if problems else "")


def resident_mb() -> float:
    """This process's resident set size now (Linux /proc; ru_maxrss elsewhere, which is a peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class MemoryResult:
    requests: int
    warmup_requests: int
    rss_after_warmup_mb: float
    peak_rss_after_warmup_mb: float
    final_rss_mb: float
    seconds: float

    @property
    def growth(self) -> float:
        return self.peak_rss_after_warmup_mb / self.rss_after_warmup_mb - 1


def soak_memory(pipe: Callable, pool: list[Request], requests: int, warmup_share: float = 0.05) -> MemoryResult:
    """Serve `requests` requests in one thread, sampling resident memory every 100 requests."""
    warmup = max(int(requests * warmup_share), len(pool))
    started = time.perf_counter()
    baseline = peak = 0.0
    with progress_bar() as bar:
        task = bar.add_task("memory", total=requests, info="one thread")
        for i in range(requests):
            outcome(pipe, pool[i % len(pool)])
            if i + 1 == warmup:
                baseline = peak = resident_mb()
            elif i + 1 > warmup and i % 100 == 0:
                peak = max(peak, resident_mb())
            if i % 500 == 0:
                bar.advance(task, 500 if i else 1)
    final = resident_mb()
    return MemoryResult(requests, warmup, baseline, max(peak, final), final, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.splitlines()[0])
    p.add_argument("artifact", type=Path)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--requests", type=int, default=10_000, help="requests shared by the threads")
    p.add_argument("--rss-requests", type=int, default=100_000, help="requests of the memory soak (0: skip)")
    p.add_argument("--max-rss-growth", type=float, default=0.05, help="allowed peak growth after warm-up")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    pipe = load(args.artifact, threads=2)
    pool = request_pool(pipe.manifest.task)
    threads = soak_threads(pipe, pool, args.threads, args.requests)
    print(f"{threads.requests} requests on {threads.threads} threads in {threads.seconds:.1f} s "
          f"({threads.bad_requests} of them bad inputs): {threads.errors} errors, {threads.mismatches} answers "
          "different from serial calls" + (f"; first: {threads.first_problem}" if threads.first_problem else ""))
    failed = bool(threads.errors or threads.mismatches)
    memory = None
    if args.rss_requests:
        memory = soak_memory(pipe, pool, args.rss_requests)
        print(f"{memory.requests} requests in one thread in {memory.seconds:.1f} s: resident memory "
              f"{memory.rss_after_warmup_mb:.1f} MB after {memory.warmup_requests} warm-up requests, peak "
              f"{memory.peak_rss_after_warmup_mb:.1f} MB after that ({memory.growth:+.1%}), "
              f"{memory.final_rss_mb:.1f} MB at the end")
        failed |= memory.growth > args.max_rss_growth
    if args.json:
        args.json.write_text(json.dumps({"concurrency": asdict(threads),
                                         "memory": asdict(memory) | {"growth": memory.growth} if memory else None},
                                        indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
