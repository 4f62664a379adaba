"""Where a fresh runtime process spends its time and memory before its first prediction.

    python -m tools.footprint_breakdown ARTIFACT [--repeat 5] [--session-option KEY=VALUE ...]

Each repeat is a fresh interpreter that takes the steps `runtimes.load` takes, one at a time, and
records the time and resident memory after each: interpreter start, numpy, onnxruntime, tokenizers,
the rest of `runtimes`, reading the manifest and hashing the files, creating the ONNX Runtime session,
loading the tokenizer, the first prediction. ONNX Runtime session options (`--no-arena`,
`--session-option session.disable_prepacking=1`, `--opt-level basic`) show what each one saves.
Medians over the repeats are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from runtimes.measure.footprint import CHILD_PRELUDE

CHILD = CHILD_PRELUDE + """
phase("interpreter")
import numpy
phase("import numpy")
import onnxruntime as ort
phase("import onnxruntime")
import tokenizers
phase("import tokenizers")
import runtimes
from runtimes.common.manifest import Manifest, verify_files
phase("import runtimes (rest)")
folder = sys.argv[1]
options = json.loads(sys.argv[2])
manifest = Manifest.read(folder)
files = verify_files(folder, manifest)
phase("manifest + sha256 of every file")
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.inter_op_num_threads = 1
so.enable_cpu_mem_arena = options.get("arena", True)
so.enable_mem_pattern = options.get("mem_pattern", True)
levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
so.graph_optimization_level = levels[options.get("opt_level", "all")]
for key, value in options.get("config", {}).items():
    so.add_session_config_entry(key, value)
session = ort.InferenceSession(str(files[manifest.model_file]), sess_options=so, providers=["CPUExecutionProvider"])
phase("create session")
tok = tokenizers.Tokenizer.from_file(str(files["tokenizer.json"]))
tok.enable_truncation(manifest.max_length)
phase("load tokenizer")
enc = tok.encode("a gripping, beautifully shot film")
names = [i.name for i in session.get_inputs()]
arrays = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
session.run(None, {n: numpy.array([arrays[n]], dtype=numpy.int64) for n in names})
phase("first prediction")
report()
"""


def run_once(artifact: Path, options: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(artifact), json.dumps(options)], capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the child failed:\n{proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.footprint_breakdown", description=__doc__.splitlines()[0])
    p.add_argument("artifact", type=Path)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-arena", action="store_true", help="enable_cpu_mem_arena = False")
    p.add_argument("--no-mem-pattern", action="store_true", help="enable_mem_pattern = False")
    p.add_argument("--opt-level", default="all", choices=("all", "extended", "basic", "none"))
    p.add_argument("--session-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an ONNX Runtime session config entry, e.g. session.disable_prepacking=1")
    args = p.parse_args(argv)
    options = {"arena": not args.no_arena, "mem_pattern": not args.no_mem_pattern, "opt_level": args.opt_level,
               "config": dict(o.split("=", 1) for o in args.session_option)}
    runs = [run_once(args.artifact, options) for _ in range(args.repeat)]
    phases = [r[1]["phases"] for r in runs]
    print(f"{args.artifact} {options}; medians of {args.repeat} fresh processes")
    print(f"{'phase':34s} {'ends at s':>9s} {'step ms':>8s} {'RSS MB':>7s} {'step MB':>8s}")
    prev_t = prev_m = 0.0
    for i, name in enumerate(p_["phase"] for p_ in phases[0]):
        t = statistics.median(ph[i]["seconds"] for ph in phases)
        m = statistics.median(ph[i]["rss_mb"] for ph in phases)
        print(f"{name:34s} {t:9.3f} {1e3 * (t - prev_t):8.1f} {m:7.1f} {m - prev_m:+8.1f}")
        prev_t, prev_m = t, m
    print(f"peak RSS {statistics.median(r[1]['peak_rss_mb'] for r in runs):.1f} MB; spawn to exit "
          f"{statistics.median(r[0] for r in runs):.3f} s (includes interpreter start and exit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
