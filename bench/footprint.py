"""Cold start and peak memory of a fresh process that loads a model and serves requests.

    python -m bench.footprint ARTIFACT CHECKPOINT [--requests 100]

The runtime's child and the process runner live in `runtimes.measure.footprint` (steps may use
them too); the PyTorch + transformers child lives here, since only bench may import torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtimes.common.errors import InputError
from runtimes.common.manifest import Task
from runtimes.measure.footprint import CHILD_PRELUDE, ProcessFootprint, run_child, runtime_footprint
from toolchain.tasks import adapter_for

# argv: checkpoint folder, requests JSON file, threads (0: torch's default), task, and the JSON of the
# pipeline's and its call's keyword arguments (the task adapter's).
TRANSFORMERS_CHILD = CHILD_PRELUDE + """
import torch
from transformers import pipeline
phase("import")
if int(sys.argv[3]):
    torch.set_num_threads(int(sys.argv[3]))
pipe = pipeline(sys.argv[4], model=sys.argv[1], device="cpu", **json.loads(sys.argv[5]))
call = json.loads(sys.argv[6])
phase("load")
requests = json.load(open(sys.argv[2]))
pipe(requests[0], **call)
phase("first prediction")
for r in requests[1:]:
    pipe(r, **call)
phase("requests")
report()
"""

HF_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


def checkpoint_footprint(checkpoint: Path, requests: Sequence[object], threads: int | None, task: Task,
                         timeout: float = 600) -> ProcessFootprint:
    """A fresh process that imports torch + transformers, builds the pipeline and serves `requests`."""
    adapter = adapter_for(task)
    if adapter.transformers_pipeline is None:
        raise InputError(f"transformers 5 has no {task.value} pipeline to measure")
    argv = [str(checkpoint.resolve()), "{requests}", str(threads or 0), task.value,
            json.dumps(adapter.transformers_pipeline), json.dumps(adapter.transformers_call)]
    return run_child(TRANSFORMERS_CHILD, argv, requests, timeout, env=HF_ENV)


@dataclass(frozen=True)
class Footprint:
    name: str
    seconds: float  # spawn to exit
    peak_rss_mb: float


def compare(artifact: Path, checkpoint: Path, texts: list[str], threads: int = 2, rounds: int = 2) -> list[Footprint]:
    """Alternate the runtime's and PyTorch's processes `rounds` times; keep each one's fastest run.

    The fastest run is the least disturbed by other jobs; peak RSS hardly varies between runs.
    """
    runs: dict[str, list[ProcessFootprint]] = {}
    for _ in range(rounds):
        runs.setdefault("runtimes + onnxruntime", []).append(runtime_footprint(artifact, texts, threads))
        runs.setdefault("PyTorch + transformers", []).append(
            checkpoint_footprint(checkpoint, texts, threads, Task.TEXT_CLASSIFICATION))
    return [Footprint(name, min(r.wall_s for r in rs), min(r.peak_rss_mb for r in rs)) for name, rs in runs.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.splitlines()[0])
    p.add_argument("artifact", type=Path)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--requests", type=int, default=100)
    args = p.parse_args(argv)
    from bench.data import load_rotten_tomatoes

    texts = [e.text for e in load_rotten_tomatoes().test[: args.requests]]
    for f in compare(args.artifact, args.checkpoint, texts, args.threads):
        print(f"{f.name:26s} {f.seconds:6.2f} s  {f.peak_rss_mb:7.0f} MB peak RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
