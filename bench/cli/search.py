"""`optimise search`: the fastest artifact for a target that loses at most a given accuracy on validation.

    optimise CKPT --max-accuracy-drop 1.0 --train-data T --eval-data V --target cpu --out DIR [--test-data TEST]

Parses, then calls `bench.search.run.search` (the same function as `bench.api.search`): see there and
docs/search.md for what the search does. Exit codes: 0 a candidate met the budget (or a worker finished);
1 none did (the closest is named); 2 bad input; 3 internal error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli.common import Parser, run_cli

PROG = "optimise search"


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="fine-tuned Hugging Face checkpoint folder (the teacher)")
    p.add_argument("--out", "-o", type=Path, required=True, help="where the chosen artifact goes; the report goes to "
                                                                  "OUT-search/ beside it")
    p.add_argument("--max-accuracy-drop", required=True, metavar="POINTS|PCT%",
                   help="the accuracy (F1 for NER and QA) a candidate may lose on validation: points (1.0) or a "
                        "share of the baseline's (1%%)")
    p.add_argument("--target", default="cpu", metavar="cpu[:CPU]|openvino[:CPU]|cuda",
                   help="cpu: ONNX Runtime or OpenVINO, whichever is faster; openvino: OpenVINO only; cuda: ONNX "
                        "Runtime CUDA (needs a GPU). CPU: the processor int8 is made for (native, avx2, avx512, "
                        "avx512_vnni, arm64; default native, this machine); the latencies are this machine's, "
                        "and the report says so when it is not of that CPU's class")
    p.add_argument("--task", help="text-classification, token-classification or question-answering (default: inferred)")
    data = p.add_argument_group("data (the formats `optimise` reads); never pass the test split as --eval-data")
    data.add_argument("--train-data", type=Path, help="what students learn from (without it: no students)")
    data.add_argument("--eval-data", type=Path, required=True, help="validation: the budget is checked and the "
                                                                   "candidates chosen on it")
    data.add_argument("--calibration-data", type=Path, help="activation ranges for static int8 and NNCF (default: "
                                                             "the validation data)")
    data.add_argument("--test-data", type=Path, help="scored once at the end, for the chosen artifact, the baseline "
                                                      "and the peers; never used to choose")
    data.add_argument("--early-stopping-share", type=float, default=0.1, metavar="SHARE",
                      help="share of --train-data held out to stop the students' training (default 0.1), so that "
                           "the validation data only choose; 0 stops on validation (optimistic figures)")
    data.add_argument("--early-stopping-from", choices=("train", "validation"), default="train",
                      help="hold the share out of --train-data (default; the teacher saw those texts) or out of "
                           "--eval-data (unseen by the teacher, but fewer examples choose)")
    data.add_argument("--early-stopping-data", type=Path, help="stop the students' training on this file instead "
                                                               "(apart from both training and validation data)")
    data.add_argument("--transfer-data", type=Path, help="unlabelled inputs every student also learns from, labelled "
                                                         "by the teacher (a text per line of a .txt file, or a "
                                                         "table's text column)")
    for name, default in (("text", "text"), ("label", "label"), ("tokens", "tokens"), ("tags", "tags"),
                          ("question", "question"), ("context", "context")):
        data.add_argument(f"--{name}-column", default=default, help=f"{name} column (default: {default})")
    p.add_argument("--max-length", type=int, metavar="TOKENS", help="the longest window to consider (default: the "
                                                                    "model's); shorter ones are tried below it")
    p.add_argument("--confidence", type=float, default=0.9,
                   help="how sure the search must be that a candidate's drop fits the budget (paired bootstrap on "
                        "the validation split; default 0.9; 0.5 checks roughly the point estimate)")
    p.add_argument("--no-students", action="store_true", help="graph-only candidates: no training")
    p.add_argument("--student-start", dest="student_starts", action="append", type=Path, metavar="DIR",
                   help="a small pretrained encoder (an HF folder) to distil into, beside the students cut from the "
                        "teacher's layers; repeat for several")
    p.add_argument("--augment", type=int, metavar="COPIES", help="augmented copies of each training text for every "
                   "student, labelled by the teacher (default: 1 for half-depth students, 2 for smaller ones)")
    p.add_argument("--quick", action="store_true", help="one short-trained student (half the layers, one epoch, no "
                                                        "augmentation) instead of four: minutes instead of an hour")
    p.add_argument("--time-budget", metavar="DURATION", help="start no new candidate after this long (e.g. 90m, "
                                                             "2h, 600s); what did not start is reported as skipped")
    p.add_argument("--peers", default="auto", help="comma-separated peers measured beside ours: optimum, "
                                                   "openvino-nncf; 'none'; 'auto': both for a cpu target")
    p.add_argument("--threads", type=int, default=1,
                   help="threads while candidates are compared (default 1; 0: the backend's choice); the finalists "
                   "are then timed under every setting")
    p.add_argument("--latency-texts", type=int, default=100, help="validation texts each side-by-side timing uses")
    p.add_argument("--storage", help="Optuna storage URL shared by workers (default: SQLite in the work folder)")
    p.add_argument("--worker", action="store_true", help="only run candidates of the study (with --storage); "
                                                          "another run chooses and writes the report")
    p.add_argument("--work-dir", type=Path, help="candidates and the study (default: under the cache folder, "
                                                 "keyed by checkpoint, data, target and budget)")
    p.add_argument("--cache-dir", type=Path, help="the step cache (as `optimise --cache-dir`)")
    p.add_argument("--allow-pickle", action="store_true", help="as `optimise --allow-pickle`")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it holds an artifact (an earlier report in OUT-search/ is replaced either way)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run, narrate=["bench.search"],
                   on_stop=lambda exc: "finished candidates are kept: run the same command again to resume")


def _run(args: argparse.Namespace) -> int:
    from bench.search.run import search
    from toolchain.compat import quiet_transformers

    if not args.verbose:
        quiet_transformers()

    options = {k: v for k, v in vars(args).items() if k not in ("checkpoint", "out", "verbose", "no_students")}
    options["student_starts"] = options["student_starts"] or ()  # search() takes any sequence of folders
    result = search(args.checkpoint, args.out, students=not args.no_students, **options)
    if result.worker:
        print(f"{PROG}: worker done; run without --worker to choose and report", file=sys.stderr)
        return result.exit_code
    if not result.met_budget:
        print(f"{PROG}: {result.message}; nothing was written to {args.out}", file=sys.stderr)
    print(f"report: {result.report}; plot: {result.plot or 'none'}", file=sys.stderr)
    if result.report is not None:
        print(result.report.read_text())
    return result.exit_code
