"""Cold start and memory of a fresh process: what an app pays before and while it serves a model.

The child starts from nothing, so imports count. It reports the time and resident memory after
each phase (import, load, first prediction, the remaining requests) and its own peak RSS (VmHWM:
getrusage's ru_maxrss would also count memory a forked child inherited from its parent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Reads /proc/self/status; shared by every child script (the runtime's and bench's PyTorch one).
CHILD_PRELUDE = """
import json, sys, time
_T0 = time.perf_counter()
_PHASES = []
def _mb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")
def phase(name):
    _PHASES.append({"phase": name, "seconds": time.perf_counter() - _T0, "rss_mb": _mb("VmRSS")})
def report(**extra):
    print(json.dumps({"phases": _PHASES, "peak_rss_mb": _mb("VmHWM"), **extra}))
"""

# argv: artifact folder, requests JSON file, threads (0: backend default), backend.
RUNTIME_CHILD = CHILD_PRELUDE + """
import runtimes
phase("import")
pipe = runtimes.load(sys.argv[1], backend=sys.argv[4], threads=int(sys.argv[3]) or None)
phase("load")
requests = json.load(open(sys.argv[2]))
def serve(r):
    return pipe(question=r["question"], context=r["context"]) if isinstance(r, dict) else pipe(r)
serve(requests[0])
phase("first prediction")
for r in requests[1:]:
    serve(r)
phase("requests")
report(backend=pipe.backend)
"""


@dataclass(frozen=True)
class Phase:
    """Seconds since the child's first line and its resident memory when `phase` ended."""

    phase: str
    seconds: float
    rss_mb: float


@dataclass(frozen=True)
class ProcessFootprint:
    """One fresh process: wall time from spawn to exit, peak RSS, and its phases."""

    wall_s: float
    peak_rss_mb: float
    phases: tuple[Phase, ...] = field(default_factory=tuple)
    requests: int = 0

    def at(self, name: str) -> Phase:
        for p in self.phases:
            if p.phase == name:
                return p
        raise KeyError(f"no phase {name!r}; phases: {', '.join(p.phase for p in self.phases)}")


class MeasuredProcessError(RuntimeError):
    """The measured process failed; the message carries the tail of its stderr."""


def run_child(script: str, args: Sequence[str], requests: Sequence[object], timeout: float = 600,
              env: dict[str, str] | None = None) -> ProcessFootprint:
    """Run `script` in a fresh interpreter as `python -c script REQUESTS_FILE_PLACEHOLDER ...`.

    `args` may contain the string "{requests}", replaced by the path of a JSON file holding
    `requests`. The script's last stdout line must be the JSON object written by `report()`.
    """
    child_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requests.json"
        path.write_text(json.dumps(list(requests)))
        argv = [sys.executable, "-c", script, *[a.replace("{requests}", str(path)) for a in args]]
        started = time.perf_counter()
        try:
            proc = subprocess.run(argv, env=child_env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MeasuredProcessError(f"the measured process ran past {timeout:.0f}s") from None
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise MeasuredProcessError(f"the measured process exited with {proc.returncode}:\n{proc.stderr[-2000:]}")
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise MeasuredProcessError(
            f"the measured process printed no report:\n{proc.stdout[-500:]}{proc.stderr[-1500:]}") from None
    phases = tuple(Phase(p["phase"], p["seconds"], p["rss_mb"]) for p in data["phases"])
    return ProcessFootprint(wall, data["peak_rss_mb"], phases, len(requests))


def runtime_footprint(artifact: Path | str, requests: Sequence[object], threads: int | None = None,
                      backend: str = "auto", timeout: float = 600) -> ProcessFootprint:
    """A fresh process that imports `runtimes`, loads `artifact` and serves `requests` one by one.

    A request is a text, or `{"question", "context"}` for question answering. Pass one request to
    measure time and memory to the first prediction.
    """
    if not requests:
        raise ValueError("at least one request is needed (the first prediction)")
    args = [str(Path(artifact).resolve()), "{requests}", str(threads or 0), backend]
    return run_child(RUNTIME_CHILD, args, requests, timeout)
