"""`optimise bench`: measure artifacts (and a PyTorch baseline); write report.json, report.md and a plot.

    optimise bench out/cpu-fp32 out/cpu-int8 --baseline CHECKPOINT --data test.csv --out out/bench

Parses, then calls `bench.suite.bench` (`bench.api.bench`). Exit codes: 0 measured; 2 bad input; 3 internal error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.common import Parser, run_cli

PROG = "optimise bench"


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("artifacts", nargs="+", metavar="[NAME=]PATH", help="artifact folders (or checkpoints) to measure")
    p.add_argument("--baseline", metavar="[NAME=]PATH", help="artifact or PyTorch checkpoint the ratios are taken "
                                                              "against (default: the first model)")
    p.add_argument("--data", type=Path, help="labelled data for quality and the latency texts (see bench.quality)")
    p.add_argument("--out", type=Path, default=Path("out/bench"), help="where report.json/.md and the plot go")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every engine (0: backend default)")
    p.add_argument("--backend", default="auto", help="runtimes backend for artifacts (default auto)")
    p.add_argument("--quality-limit", type=int, default=0, help="score at most this many examples (0: all)")
    p.add_argument("--latency-texts", type=int, default=300, help="batch-1 requests timed per model")
    p.add_argument("--rounds", type=int, default=10, help="blocks every model takes its turn in")
    p.add_argument("--passes", type=int, default=3, help="times each block goes through its inputs; speed-ups use "
                                                         "each input's fastest call (default 3)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before each block")
    p.add_argument("--shapes", default="1x16,1x128,8x64", help="fixed shapes BATCHxSEQUENCE for the network alone "
                                                               "('' to skip)")
    p.add_argument("--throughput-batch", type=int, default=32)
    p.add_argument("--footprint-requests", type=int, default=100, help="requests the fresh process serves (0: skip)")
    p.add_argument("--gate-rounds", type=int, default=20, help="rounds of gate samples saved per artifact (0: skip)")
    p.add_argument("--texts", type=Path, help="the gate's workload (as `optimise gate --texts`; default built in)")
    p.add_argument("--block", type=int, default=16, help="the gate's calls per block (as `optimise gate --block`)")
    p.add_argument("--gate-threads", type=int, default=1, help="the gate's threads (as `optimise gate --threads`)")
    p.add_argument("--repeats", type=int, default=3, help="the gate's passes per block (as `optimise gate --repeats`)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run, narrate=["bench.suite"])


def _run(args: argparse.Namespace) -> int:
    from bench.progress import interactive
    from bench.report.markdown import report_markdown
    from bench.suite import bench

    options = {k: v for k, v in vars(args).items() if k not in ("artifacts", "out", "no_plot", "verbose")}
    report = bench(args.artifacts, out=args.out, plot=not args.no_plot, **options)
    markdown = report_markdown(report)
    if interactive():
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(markdown))
    else:
        print(markdown)
    return 0
