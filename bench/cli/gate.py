"""`optimise gate`: fail CI when a candidate artifact is slower than its baseline beyond a tolerance.

    optimise gate CANDIDATE --baseline BASELINE_ARTIFACT --max-slowdown 10%   # primary: both measured now
    optimise gate CANDIDATE --baseline report.json --max-slowdown 10%         # weaker: a saved `optimise bench` report

Parses, then calls `bench.gate.run.gate` (`bench.api.gate`). Exit codes: 0 not slower beyond the
tolerance; 1 regression; 2 bad input (one line on stderr); 3 internal error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.common import Parser, run_cli

PROG = "optimise gate"


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("candidate", type=Path, help="the artifact folder under test")
    p.add_argument("--baseline", type=Path, required=True,
                   help="baseline artifact folder (measured now, interleaved), or a report.json from `optimise bench`")
    p.add_argument("--max-slowdown", default="10%", help="tolerance, e.g. 10%% or 0.10 (default 10%%)")
    p.add_argument("--subject", help="which model of the saved report is the baseline (default: its only artifact)")
    p.add_argument("--texts", type=Path,
                   help="workload: .txt (one text per line), CSV/JSONL/Parquet with a text column; "
                                               "default: built-in review-like sentences")
    p.add_argument("--block", type=int, default=16, help="inputs per block (default 16); each round gives one sample "
                                                         "per side: the sum of each input's fastest call")
    p.add_argument("--repeats", type=int, default=3, help="times each block goes through its inputs (default 3)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall (default): elapsed time per call; cpu: CPU time of this process per call (one thread "
                        "only; it understated a real slowdown on a heavily loaded machine, see docs/bench.md)")
    # One thread by default: on a loaded machine a multi-threaded call mostly measures how long its
    # threads wait for each other to be scheduled, which compresses real differences toward 1.
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads for every session (default 1; 0: backend default)")
    p.add_argument("--backend", default="auto", help="runtimes backend (default auto)")
    p.add_argument("--min-rounds", type=int, default=10)
    p.add_argument("--max-rounds", type=int, default=60)
    p.add_argument("--summary", type=Path, help="write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


def _run(args: argparse.Namespace) -> int:
    from bench.gate.run import gate

    run = gate(**{k: v for k, v in vars(args).items() if k != "verbose"})
    print(run.headline)
    return run.exit_code
