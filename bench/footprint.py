"""Cold start and peak memory of a fresh process that loads a model and classifies 100 texts.

    python -m bench.footprint ARTIFACT CHECKPOINT [--texts FILE]

Both processes start from nothing, so imports count: that is what an app pays at start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# VmHWM is this process's own peak RSS. (getrusage's ru_maxrss would also count the parent's memory,
# which a forked child inherits until exec and which Linux carries across exec.)
_REPORT_PEAK = """
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""

RUNTIME_APP = """
import json, sys
from runtimes import load
texts = json.load(open(sys.argv[2]))
pipe = load(sys.argv[1], threads=int(sys.argv[3]))
out = pipe(texts)
assert len(out) == len(texts)
""" + _REPORT_PEAK

TRANSFORMERS_APP = """
import json, sys
import torch
from transformers import pipeline
torch.set_num_threads(int(sys.argv[3]))
texts = json.load(open(sys.argv[2]))
pipe = pipeline("text-classification", model=sys.argv[1], device="cpu")
out = pipe(texts, batch_size=8, truncation=True)
assert len(out) == len(texts)
""" + _REPORT_PEAK


@dataclass(frozen=True)
class Footprint:
    name: str
    seconds: float
    peak_rss_mb: float


def measure(name: str, script: str, model: Path, texts: list[str], threads: int) -> Footprint:
    """Run `script` in a fresh interpreter; wall time from spawn to exit, and its peak RSS."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "texts.json"
        inputs.write_text(json.dumps(texts))
        with open(Path(tmp) / "stderr", "w+") as err:
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", script, str(model), str(inputs), str(threads)],
                                  env=env, stdout=subprocess.PIPE, stderr=err, text=True)
            seconds = time.perf_counter() - started
            err.seek(0)
            message = err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} process failed:\n{message[-2000:]}")
    return Footprint(name, seconds, int(proc.stdout.split()[-1]) / 1024)  # VmHWM is in kB


def compare(artifact: Path, checkpoint: Path, texts: list[str], threads: int = 2, rounds: int = 2) -> list[Footprint]:
    """Alternate the two apps `rounds` times and keep each one's best (least disturbed) run."""
    best: dict[str, Footprint] = {}
    for _ in range(rounds):
        for name, script, model in (("runtimes + onnxruntime", RUNTIME_APP, artifact),
                                    ("PyTorch + transformers", TRANSFORMERS_APP, checkpoint)):
            f = measure(name, script, model, texts, threads)
            if name not in best or f.seconds < best[name].seconds:
                best[name] = Footprint(name, f.seconds, min(f.peak_rss_mb, best.get(name, f).peak_rss_mb))
    return list(best.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.splitlines()[0])
    p.add_argument("artifact", type=Path)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    from .data import load_rotten_tomatoes

    texts = [e.text for e in load_rotten_tomatoes().test[:100]]
    for f in compare(args.artifact, args.checkpoint, texts, args.threads):
        print(f"{f.name:26s} {f.seconds:6.2f} s  {f.peak_rss_mb:7.0f} MB peak RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
