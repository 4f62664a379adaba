"""The CI latency gate: is a candidate artifact slower than its baseline beyond a tolerance? `gate()` decides;
`optimise gate` (bench.cli.gate) exits 1 when it is.

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


def gate(candidate: Path | str, *, baseline: Path | str, max_slowdown: str | float = "10%",
         subject: str | None = None, texts: Path | str | None = None, block: int = 16, repeats: int = 3,
         clock: str = "wall", threads: int = 1, backend: str = "auto", min_rounds: int = 10, max_rounds: int = 60,
         summary: Path | str | None = None, junit: Path | str | None = None) -> GateRun:
    """Is `candidate` slower than `baseline` beyond `max_slowdown` ("10%" or 0.10)? Returns the decision.

    `baseline` is an artifact folder (both are loaded and timed in turns, round by round, until a one-sided
    test is sure or `max_rounds` is spent) or a report.json from `bench` (weaker: the saved samples, scaled
    by a reference workload timed now; `subject` names the report's model). `texts` is the workload file
    (default: built-in sentences); `block` inputs per round, each gone through `repeats` times. `summary`
    (Markdown, appended to, e.g. $GITHUB_STEP_SUMMARY) and `junit` (XML) are written when given.
    `threads=0` is the backend's choice; `clock="cpu"` needs one thread.
    """
    try:
        policy = GatePolicy(max_slowdown=parse_slowdown(str(max_slowdown)), min_rounds=min_rounds,
                            max_rounds=max_rounds)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if block < 1 or repeats < 1:
        raise InputError("`block` and `repeats` must be at least 1")
    candidate, baseline = Path(candidate), Path(baseline)
    chosen_threads = threads or None
    chosen_clock = choose_clock(clock, chosen_threads)
    workload_texts = workload.load_texts(Path(texts) if texts is not None else None)
    if baseline.is_file() and baseline.suffix == ".json":
        run = gate_against_report(candidate, baseline, subject, workload_texts, policy, block, chosen_threads,
                                  backend, repeats, chosen_clock)
    else:
        run = gate_interleaved(candidate, baseline, workload_texts, policy, block, chosen_threads, backend,
                               repeats, chosen_clock)
    if summary:
        Path(summary).parent.mkdir(parents=True, exist_ok=True)
        with open(summary, "a", encoding="utf-8") as fh:  # GITHUB_STEP_SUMMARY is appended to
            fh.write(markdown_summary(run))
    if junit:
        Path(junit).parent.mkdir(parents=True, exist_ok=True)
        Path(junit).write_text(junit_xml(run), encoding="utf-8")
    for w in run.warnings:
        log.warning("warning: %s", w)
    return run


def choose_clock(name: str, threads: int | None) -> str:
    """'wall' or 'cpu'. CPU time leaves out the time a call waits for a core, but with several intra-op
    threads it would count their spinning and miss nothing else, so it is refused for them. Measured on
    this project's shared 2-core machine under heavy load, CPU time also compressed a real 14% slowdown
    to 7-11% (neighbours' cache and memory traffic adds the same cost to every call), so wall time is
    the default: the block structure and fastest-call cost already absorb most of what waiting adds."""
    if name == "cpu" and threads != 1:
        raise InputError("`clock` cpu needs `threads` 1: other threads' spinning would count as the model's time")
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
                         f"choose one with `subject` ({', '.join(s.name for s in saved_subjects)})")
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
                         "pass the same `texts`, `block`, `repeats`, `threads` and `clock` as the bench run, "
                         "or re-run it")
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
