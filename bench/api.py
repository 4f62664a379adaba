"""The Python API: everything the `optimise` command line does, as functions (the CLI calls these).

    from bench.api import search
    result = search("my-checkpoint", out="model", max_accuracy_drop=1.0,
                    train_data="train.csv", eval_data="validation.csv", test_data="test.csv")

- `optimise(checkpoint, out, recipe=..., ...)`: export and optimise one recipe (`toolchain.optimise`);
- `search(checkpoint, out, max_accuracy_drop=..., eval_data=..., ...) -> SearchResult`: the fastest
  artifact within an accuracy budget, every trial with its figures and reason;
- `bench(artifacts, baseline=..., data=..., out=...) -> Report`: measure side by side;
- `gate(candidate, baseline=..., max_slowdown="10%") -> GateRun`: the CI latency gate's decision.

Errors are `runtimes.EdgeError` subclasses whose messages name these functions' parameters.
"""

from __future__ import annotations

from bench.gate.output import GateRun
from bench.gate.run import gate
from bench.report.schema import Report
from bench.search.result import SearchResult, Trial
from bench.search.run import SearchOptions, search
from bench.suite import BenchOptions, bench
from toolchain.api import optimise

__all__ = ["BenchOptions", "GateRun", "Report", "SearchOptions", "SearchResult", "Trial", "bench", "gate",
           "optimise", "search"]
