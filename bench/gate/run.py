"""`optimise gate`: fail CI when a candidate artifact is slower than its baseline beyond a tolerance.

    optimise gate CANDIDATE --baseline BASELINE_ARTIFACT --max-slowdown 10%   # primary: both measured now
    optimise gate CANDIDATE --baseline report.json --max-slowdown 10%         # weaker: a saved `optimise bench` report

Exit 0: not slower beyond the tolerance; 1: regression; 2: bad input (one line on stderr); 3: internal error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from bench import workload
from bench.command import Parser, configure_logging, parse, run_command
from bench.gate.decision import GatePolicy, parse_slowdown, run_sequential
from bench.gate.output import GateRun, junit_xml, markdown_summary
from bench.gate.reference import REFERENCE_VERSION, reference_runner
from bench.progress import progress_bar
from bench.report.schema import GateReference, read_report
from runtimes import load
from runtimes.common.errors import InputError
from runtimes.common.manifest import Manifest
from runtimes.measure import BlockTimes, cycle_blocks, machine_info, time_interleaved

log = logging.getLogger(__name__)
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
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    configure_logging(args.verbose)
    return run_command(PROG, lambda: _run(args), args.verbose)


def _run(args) -> int:
    try:
        policy = GatePolicy(max_slowdown=parse_slowdown(args.max_slowdown), min_rounds=args.min_rounds,
                            max_rounds=args.max_rounds)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.block < 1 or args.repeats < 1:
        raise InputError("--block and --repeats must be at least 1")
    threads = args.threads or None
    clock = choose_clock(args.clock, threads)
    texts = workload.load_texts(args.texts)
    if args.baseline.is_file() and args.baseline.suffix == ".json":
        run = gate_against_report(args.candidate, args.baseline, args.subject, texts, policy, args.block, threads,
                                  args.backend, args.repeats, clock)
    else:
        run = gate_interleaved(args.candidate, args.baseline, texts, policy, args.block, threads, args.backend,
                               args.repeats, clock)
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        with open(args.summary, "a", encoding="utf-8") as fh:  # GITHUB_STEP_SUMMARY is appended to
            fh.write(markdown_summary(run))
    if args.junit:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_text(junit_xml(run), encoding="utf-8")
    for w in run.warnings:
        log.warning("warning: %s", w)
    print(run.headline)
    return run.verdict.exit_code


def choose_clock(name: str, threads: int | None) -> str:
    """'wall' or 'cpu'. CPU time leaves out the time a call waits for a core, but with several intra-op
    threads it would count their spinning and miss nothing else, so it is refused for them. Measured on
    this project's shared 2-core machine under heavy load, CPU time also compressed a real 14% slowdown
    to 7-11% (neighbours' cache and memory traffic adds the same cost to every call), so wall time is
    the default: the block structure and fastest-call cost already absorb most of what waiting adds."""
    if name == "cpu" and threads != 1:
        raise InputError("--clock cpu needs --threads 1: other threads' spinning would count as the model's time")
    return name


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def _task_of(folder: Path) -> str:
    return Manifest.read(folder).task.value


def gate_interleaved(candidate: Path, baseline: Path, texts: Sequence[str], policy: GatePolicy, block: int,
                     threads: int | None, backend: str = "auto", repeats: int = 3, clock: str = "wall") -> GateRun:
    """Primary mode: load both artifacts here and time them in turns until the decision is sure."""
    started = time.perf_counter()
    tasks = {name: _task_of(path) for name, path in (("baseline", baseline), ("candidate", candidate))}
    if tasks["baseline"] != tasks["candidate"]:
        raise InputError(f"the baseline is a {tasks['baseline']} model but the candidate a {tasks['candidate']} one")
    warnings = []
    if baseline.resolve() == candidate.resolve():
        warnings.append("the baseline and the candidate are the same folder")
    requests = workload.requests_for(Manifest.read(candidate).task, texts)[:block]
    pipes = {name: load(path, backend=backend, threads=threads, batch_size=1)
             for name, path in (("baseline", baseline), ("candidate", candidate))}
    runners = {name: workload.runner_for(p) for name, p in pipes.items()}
    times: dict[str, BlockTimes] | None = None
    with progress_bar() as bar:
        task = bar.add_task("gate", total=2 * policy.max_rounds, info="baseline and candidate in turns")

        def sample(rounds: int):
            nonlocal times
            times = time_interleaved(runners, cycle_blocks(requests, repeats, rounds), into=times,
                                     on_block=lambda *_: bar.advance(task), clock=CLOCKS[clock])
            return times["baseline"].block_costs(len(requests)), times["candidate"].block_costs(len(requests))

        verdict = run_sequential(sample, policy, paired=True)
    assert times is not None
    return GateRun(verdict, policy, "interleaved", str(baseline), str(candidate), len(requests), repeats, threads,
                   time.perf_counter() - started, machine_info(threads).summary(), times["baseline"].stats(),
                   times["candidate"].stats(), tuple(warnings), clock)


def reference_samples(pipe, requests: Sequence[object], rounds: int, threads: int | None, repeats: int = 3,
                      on_block=None, clock: str | None = None) -> tuple[GateReference, list[float]]:
    """Time `pipe` and the reference network in turns; per round, the model's workload cost / the reference's."""
    runners = {"model": workload.runner_for(pipe), "reference": reference_runner(threads)}
    clock = clock or "wall"
    times = time_interleaved(runners, cycle_blocks(requests, repeats, rounds), on_block=on_block, clock=CLOCKS[clock])
    model, ref = times["model"].block_costs(len(requests)), times["reference"].block_costs(len(requests))
    normalised = [m / r for m, r in zip(model, ref)]
    record = GateReference(reference_version=REFERENCE_VERSION,
                           workload=workload.digest(requests, threads=threads, repeats=repeats, clock=clock),
                           block=len(requests), repeats=repeats, threads=threads, normalised=normalised,
                           model_p50_ms=times["model"].stats().p50_ms,
                           reference_p50_ms=times["reference"].stats().p50_ms)
    return record, normalised


def gate_against_report(candidate: Path, report_path: Path, subject: str | None, texts: Sequence[str],
                        policy: GatePolicy, block: int, threads: int | None, backend: str = "auto",
                        repeats: int = 3, clock: str = "wall") -> GateRun:
    """Weaker mode: compare reference-normalised times with those saved in a report."""
    started = time.perf_counter()
    report = read_report(report_path)
    saved_subjects = [s for s in report.subjects if s.gate_reference is not None]
    if subject:
        chosen = report.subject(subject)
    elif len(saved_subjects) == 1:
        chosen = saved_subjects[0]
    else:
        raise InputError(f"{report_path} has {len(saved_subjects)} models with gate samples; "
                         f"choose one with --subject ({', '.join(s.name for s in saved_subjects)})")
    saved = chosen.gate_reference
    if saved is None:
        raise InputError(f"{chosen.name} in {report_path} has no gate samples (only artifacts get them)")
    task = Manifest.read(candidate).task
    if task.value != chosen.task:
        raise InputError(f"the saved baseline is a {chosen.task} model but the candidate a {task.value} one")
    requests = workload.requests_for(task, texts)[:block]
    digest = workload.digest(requests, threads=threads, repeats=repeats, clock=clock)
    if saved.reference_version != REFERENCE_VERSION:
        raise InputError(f"the report's reference workload is version {saved.reference_version}, this tool's is "
                         f"{REFERENCE_VERSION}: re-run `optimise bench` on the baseline")
    if saved.workload != digest:
        raise InputError("the report was measured on another workload (texts, block or threads differ); "
                         "pass the same --texts/--block/--repeats/--threads/--clock as `optimise bench`, or re-run it")
    warnings = _version_drift(report.machine.versions, machine_info(threads).versions)
    pipe = load(candidate, backend=backend, threads=threads, batch_size=1)
    current: list[float] = []
    with progress_bar() as bar:
        task_id = bar.add_task("gate", total=2 * policy.max_rounds, info="candidate and reference in turns")

        def sample(rounds: int):
            _, normalised = reference_samples(pipe, requests, rounds, threads, repeats,
                                              on_block=lambda *_: bar.advance(task_id), clock=clock)
            current.extend(normalised)
            return saved.normalised, current

        verdict = run_sequential(sample, policy, paired=False)
    return GateRun(verdict, policy, "saved-report", f"{report_path} ({chosen.name})", str(candidate), len(requests),
                   repeats, threads, time.perf_counter() - started, machine_info(threads).summary(),
                   warnings=tuple(warnings),
                   clock=clock)


def _version_drift(saved: dict[str, str], now: dict[str, str]) -> list[str]:
    keys = ("onnxruntime", "openvino", "numpy", "tokenizers")
    return [f"{k} was {saved.get(k)} when the baseline was measured and is {now.get(k)} now"
            for k in keys if saved.get(k) != now.get(k)]
