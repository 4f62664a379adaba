"""`optimise search`: the fastest artifact for a target that loses at most a given accuracy on validation.

    optimise CKPT --max-accuracy-drop 1.0 --train-data T --eval-data V --target cpu --out DIR [--test-data TEST]

Candidates (`bench.search.space`) are built with the same API as `optimise`, cheapest first, each
one an Optuna trial (`bench.search.study`): fp32, int8 and its variants, OpenVINO, then students
from the largest down. Each is scored on the validation split at the windows worth trying and timed
in turns with the PyTorch model (`bench.search.measure`). The search does not stop at the first
candidate that fits: it runs them all, skipping only what finished ones rule out. The fastest few
that fit are timed side by side under each runtime setting; the winner is written to DIR with its
window and settings in the manifest (`runtimes.load` uses them). Beside DIR, in DIR-search/: the
candidates with their figures and reasons, a report and a plot, peers included. With --test-data
the test split is scored once, for the chosen artifact, the baseline and the peers.

Exit codes: 0 a candidate met the budget; 1 none did (the best is named); 2 bad input; 3 internal error.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.command import Parser, configure_logging, parse
from bench.search.measure import (
    Baseline,
    Measured,
    Timing,
    Window,
    fits,
    measure_candidate,
    time_settings,
    token_lengths,
    window_label,
    windows_for,
)
from bench.search.space import Candidate, Status, candidates_for, skip_reason
from bench.search.study import check_storage, enqueue, finished, open_study, outcomes, work
from runtimes.common.cli_boundary import ExitCodes, one_line, run_boundary
from runtimes.common.cpu import CpuTarget, detect_isa
from runtimes.common.errors import EdgeError, InputError
from runtimes.common.manifest import Manifest, RuntimeSettings, StepRecord
from runtimes.measure import machine_info

log = logging.getLogger(__name__)
PROG = "optimise search"
EXIT_NOTHING_MET, EXIT_INTERNAL = 1, 3
FINALISTS = 3


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
    for name, default in (("text", "text"), ("label", "label"), ("tokens", "tokens"), ("tags", "tags"),
                          ("question", "question"), ("context", "context")):
        data.add_argument(f"--{name}-column", default=default, help=argparse_help(name, default))
    p.add_argument("--max-length", type=int, metavar="TOKENS", help="the longest window to consider (default: the "
                                                                    "model's); shorter ones are tried below it")
    p.add_argument("--confidence", type=float, default=0.9,
                   help="how sure the search must be that a candidate's drop fits the budget (paired bootstrap on "
                        "the validation split; default 0.9; 0.5 checks roughly the point estimate)")
    p.add_argument("--no-students", action="store_true", help="graph-only candidates: no training")
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


def argparse_help(name: str, default: str) -> str:
    return f"{name} column (default: {default})"


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    configure_logging(args.verbose)
    from toolchain.compat import quiet_transformers

    if not args.verbose:
        quiet_transformers()
    return run_boundary(PROG, lambda: _run(args), args.verbose, ExitCodes(internal=EXIT_INTERNAL),
                        on_stop=lambda exc: "finished candidates are kept: run the same command again to resume")


def parse_budget(text: str) -> tuple[float, bool]:
    """'1.0' -> (1.0, False) points; '1%' -> (1.0, True), a share of the baseline's figure."""
    raw = text.strip()
    relative = raw.endswith("%")
    try:
        value = float(raw.rstrip("%").strip())
    except ValueError:
        raise InputError(f"--max-accuracy-drop {text!r} is not a number of points (1.0) or a percentage (1%)") \
            from None
    if not 0 <= value <= 100 or value != value:
        raise InputError(f"--max-accuracy-drop {text!r} must be between 0 and 100")
    return value, relative


def parse_duration(text: str | None) -> float | None:
    if text is None:
        return None
    raw = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    scale = units.get(raw[-1:])
    number = raw[:-1] if scale else raw
    try:
        seconds = float(number) * (scale or 60)
    except ValueError:
        raise InputError(f"--time-budget {text!r} is not a duration such as 90m, 2h or 600s") from None
    if not seconds > 0:
        raise InputError(f"--time-budget {text!r} must be positive")
    return seconds


def _peers(text: str, target: str) -> list[str]:
    from bench.search.peers import PEERS

    if text == "none":
        return []
    if text == "auto":
        return list(PEERS) if target == "cpu" else ["openvino-nncf"] if target == "openvino" else []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise InputError(f"--peers: unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}, none, auto")
    return names


@dataclasses.dataclass
class Context:
    """Everything a candidate's trial needs, loaded once per process."""

    args: Any
    checkpoint: Any
    data: dict
    baseline: Baseline
    windows: list[Window]
    budget: float
    candidates: dict[str, Candidate]
    work: Path
    deadline: float | None
    cache: Any
    study: Any
    cpu: CpuTarget = dataclasses.field(default_factory=CpuTarget)


def _run(args) -> int:
    from bench.quality import labelled_from, load_labelled
    from bench.search.report import SEARCH_REPORT_FILES
    from bench.subjects import CheckpointSubject
    from toolchain.cache import StepCache, default_cache_dir
    from toolchain.checkpoint import inspect_checkpoint
    from toolchain.data import DataRole, load_dataset, resolve_roles
    from toolchain.errors import ConfigError
    from toolchain.output import check_existing, check_report_folder, plan_output
    from toolchain.recipe import Target, parse_target
    from toolchain.tasks import parse_task

    started = time.time()
    amount, relative = parse_budget(args.max_accuracy_drop)
    time_budget = parse_duration(args.time_budget)
    if not 0.5 <= args.confidence < 1:
        raise InputError("--confidence must be at least 0.5 and below 1")
    if args.latency_texts < 10:
        raise InputError("--latency-texts must be at least 10")
    if args.threads < 0:
        raise InputError("--threads must be 0 (the backend's choice) or more")
    if args.max_length is not None and args.max_length < 8:
        raise InputError("--max-length must be at least 8 tokens")
    if args.storage:
        check_storage(args.storage)
    try:
        target, cpu = parse_target(args.target)
    except ConfigError as exc:
        raise InputError(f"--target: {exc}") from None
    peers = _peers(args.peers, target.value)
    if not cpu.is_local:
        log.warning("int8 is made for cpu:%s but this machine is cpu:%s: the candidates' latencies are measured "
                    "here, on another instruction set, and may rank them differently from the target",
                    cpu.isa.value, detect_isa().value)
    if target is Target.CUDA:
        from runtimes.embedded.backends import get_backend

        if "cuda" not in [d.value for d in get_backend("onnxruntime").devices()]:
            raise InputError("--target cuda needs ONNX Runtime with a CUDA device; none is usable here "
                             "(pip install onnxruntime-gpu on a machine with a GPU)")
    ckpt = inspect_checkpoint(args.checkpoint, task=parse_task(args.task) if args.task else None,
                              allow_pickle=args.allow_pickle)
    inputs = [p for p in (args.train_data, args.eval_data, args.calibration_data, args.test_data) if p]
    out = plan_output(args.out, [ckpt.path, *inputs])
    report_dir = out.with_name(out.name + "-search")
    if not args.worker:  # refuse now, not after an hour of training
        check_existing(out, args.overwrite)
        # an earlier report is replaced: with an artifact at OUT, check_existing has asked for --overwrite;
        # without one, the earlier run chose nothing (or was stopped) and this run resumes it
        check_report_folder(report_dir, SEARCH_REPORT_FILES, "search report", [ckpt.path, *inputs],
                            flag="the report folder")
    columns = dict(text_column=args.text_column, label_column=args.label_column, tokens_column=args.tokens_column,
                   tags_column=args.tags_column, question_column=args.question_column,
                   context_column=args.context_column)
    files = {DataRole.TRAIN: args.train_data, DataRole.VALIDATION: args.eval_data,
             DataRole.CALIBRATION: args.calibration_data or args.eval_data}
    data = {role: load_dataset(path, ckpt.task, ckpt.labels, **columns) for role, path in files.items() if path}
    data = resolve_roles(data)
    validation = (load_labelled(args.eval_data, ckpt.task, ckpt.labels) if ckpt.task.value == "question-answering"
                  else labelled_from(data[DataRole.VALIDATION], ckpt.task, ckpt.labels))
    test = None
    if args.test_data:
        test = (load_labelled(args.test_data, ckpt.task, ckpt.labels) if ckpt.task.value == "question-answering"
                else labelled_from(load_dataset(args.test_data, ckpt.task, ckpt.labels, **columns), ckpt.task,
                                   ckpt.labels))
        test = _unseen(test, validation, data)
    if args.max_length is not None and args.max_length > ckpt.max_length:
        raise InputError(f"--max-length {args.max_length} is longer than the model's window of {ckpt.max_length} "
                         "tokens")

    timing = Timing(texts=args.latency_texts, threads=args.threads or None)
    print(f"scoring the PyTorch model on {len(validation.requests)} validation examples", file=sys.stderr)
    baseline = Baseline(CheckpointSubject(ckpt.path, timing.threads, name="PyTorch fp32"), validation, timing,
                        args.confidence)
    budget = amount * baseline.quality if relative else amount  # relative: a share of the baseline, in points
    windows = windows_for(token_lengths(ckpt, validation.requests), ckpt.max_length, args.max_length,
                          head_tail=ckpt.task.value == "text-classification")
    layers = int(ckpt.config.get("num_hidden_layers") or ckpt.config.get("n_layers") or 0)
    students = not args.no_students and DataRole.TRAIN in data and layers > 1
    if not args.no_students and DataRole.TRAIN not in data:
        log.warning("no --train-data: the search tries graph-only candidates (no students)")
    candidates = candidates_for(target, layers, budget, students,
                                budgeted_int8=ckpt.task.value != "question-answering", confidence=args.confidence,
                                cpu=cpu)
    key = _study_key(ckpt, data, target, cpu, budget, candidates, windows, args)
    work_dir = (args.work_dir or default_cache_dir().parent / "search" / key).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{work_dir / 'study.db'}"
    study = open_study(storage, f"search-{key}", work_dir / "enqueue.lock")
    added = enqueue(study, candidates, work_dir / "enqueue.lock")
    print(f"search {key}: {len(candidates)} candidates ({added} to run), budget {budget:.2f} points below "
          f"{_pct(baseline.quality)} on validation, windows {', '.join(w.label() for w in windows)}; "
          f"work folder {work_dir}", file=sys.stderr)
    ctx = Context(args, ckpt, data, baseline, windows, budget, {c.name: c for c in candidates}, work_dir,
                  started + time_budget if time_budget else None,
                  StepCache(args.cache_dir or default_cache_dir()), study, cpu)
    work(study, [c.name for c in candidates], lambda name: _trial(ctx, name),
         on_idle=lambda n: log.info("waiting for %d candidate(s) running elsewhere", n))
    if args.worker:
        print(f"{PROG}: worker done; run without --worker to choose and report", file=sys.stderr)
        return 0
    return _finish(ctx, outcomes(study), peers, test, out, report_dir, started)


def _unseen(test, validation, data) -> Any:
    """The test split without the examples that training, validation or calibration data also hold: a score
    on what the search learnt from or chose on is not a test score. All of them seen: an error."""
    def key(request: Any) -> str:
        return json.dumps(request, sort_keys=True) if isinstance(request, dict) else request

    seen = {key(r) for r in validation.requests}
    for dataset in data.values():
        seen.update(dataset.texts if dataset.questions is None
                    else (key({"question": q, "context": c}) for q, c in zip(dataset.questions, dataset.texts)))
    keep = [i for i, request in enumerate(test.requests) if key(request) not in seen]
    if not keep:
        raise InputError("every --test-data example is also in the training, validation or calibration data; "
                         "the test split must be unseen")
    if len(keep) < len(test.requests):
        log.warning("%d of %d --test-data examples are also in the training, validation or calibration data; "
                    "the test score leaves them out", len(test.requests) - len(keep), len(test.requests))
    return test.select(keep)


def _study_key(ckpt, data, target, cpu: CpuTarget, budget, candidates, windows, args) -> str:
    from toolchain import __version__

    # the machine's int8 class too: a study run on another kind of CPU holds another format and other latencies
    parts = [ckpt.sha256, target.value, f"int8 for {cpu.isa.value} timed on {detect_isa().value}", f"{budget:.4f}",
             json.dumps([c.recipe().to_dict() for c in candidates]),
             json.dumps(windows), str(args.threads), str(args.confidence), str(args.latency_texts), __version__,
             *sorted(f"{r.value}:{d.sha256}" for r, d in data.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _pct(quality: float) -> str:
    return f"{100 * quality:.2f}"


def _trial(ctx: Context, name: str) -> dict[str, Any]:
    """Build and measure one candidate; its outcome (never raises for an expected failure)."""
    from toolchain.api import optimise

    cand = ctx.candidates[name]
    outcome: dict[str, Any] = {"name": name, "size_rank": cand.size_rank, "engine": cand.engine.value,
                               "trains": cand.trains, "recipe": cand.recipe().to_dict()}
    left = None if ctx.deadline is None else ctx.deadline - time.time()
    reason = skip_reason(cand, finished(ctx.study), ctx.budget, left)
    if reason:
        print(f"  {name}: skipped ({reason})", file=sys.stderr)
        # a candidate the clock stopped is tried again by the next run; one that a finished one ruled out is not
        return {**outcome, "status": Status.SKIPPED.value, "reason": reason, "retry": left is not None and left <= 0}
    print(f"  {name}: building{' (trains: can take tens of minutes)' if cand.trains else ''}", file=sys.stderr)
    art = ctx.work / "candidates" / cand.slug
    t0 = time.perf_counter()
    try:
        optimise(ctx.checkpoint.path, art, task=ctx.checkpoint.task, recipe=cand.recipe(), data=ctx.data,
                 allow_pickle=ctx.args.allow_pickle, overwrite=True, cache=ctx.cache)
        build_s = time.perf_counter() - t0
        measured: Measured = measure_candidate(art, ctx.baseline, ctx.windows)
    except EdgeError as exc:
        print(f"  {name}: failed: {one_line(exc)}", file=sys.stderr)
        return {**outcome, "status": Status.FAILED.value, "reason": f"{type(exc).__name__}: {one_line(exc)}"}
    best = measured.best(ctx.budget)
    status = Status.PASSED if fits(best.drop_bound, ctx.budget) else Status.MISSED
    cached = [r.step for r in Manifest.read(art).lineage if r.cached]
    print(f"  {name}: {status.value}: {_pct(best.quality)} ({best.drop:+.2f} points, at most {best.drop_bound:+.2f} "
          f"with {ctx.baseline.confidence:.0%} confidence) at {window_label(best.window, best.truncation)} tokens, "
          f"{best.speedup:.2f}x PyTorch, {measured.size_mb:.1f} MB ({build_s:.0f} s"
          f"{', cached: ' + ', '.join(cached) if cached else ''})", file=sys.stderr)
    return {**outcome, "status": status.value, "artifact": str(art), "build_s": build_s, "cached_steps": cached,
            "quality": best.quality, "drop": best.drop, "drop_bound": best.drop_bound, "speedup": best.speedup,
            "latency_ms": best.latency_ms,
            "window": best.window, "truncation": best.truncation, **measured.to_dict()}




def _finish(ctx: Context, found: dict[str, dict[str, Any]], peer_names: list[str], test, out: Path,
            report_dir: Path, started: float) -> int:
    """Measure the peers, time the finalists' runtime settings, publish the winner, score test, report."""
    from bench.search.peers import build_peers
    from bench.search.report import write_search_report
    from toolchain.data import DataRole

    rows = [found[c] for c in ctx.candidates if c in found]
    peers = build_peers(peer_names, ctx.checkpoint, ctx.data[DataRole.CALIBRATION], ctx.work / "peers",
                        ctx.work.parent.parent / "peers", cpu=ctx.cpu.isa)
    peer_rows = []
    for peer in peers:
        row: dict[str, Any] = {"name": peer.name, "peer": True, "reason": peer.reason, **peer.details}
        if peer.path is None:
            row["status"] = "missing"
        else:
            try:
                measured = measure_candidate(peer.path, ctx.baseline, ctx.windows[:1])
            except EdgeError as exc:
                row.update(status="missing", reason=f"could not be measured: {exc}")
            else:
                best = measured.windows[0]
                row.update(status="measured", artifact=str(peer.path), quality=best.quality, drop=best.drop,
                           drop_bound=best.drop_bound,
                           speedup=best.speedup, latency_ms=best.latency_ms, window=best.window, **measured.to_dict())
        peer_rows.append(row)
    passing = sorted((r for r in rows if r["status"] == Status.PASSED.value), key=lambda r: -r["speedup"])
    summary: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(ctx.checkpoint.path), "task": ctx.checkpoint.task.value, "target": ctx.args.target,
        "cpu": {"int8_target": ctx.cpu.isa.value, "measured_on": detect_isa().value,
                "measured_on_target": ctx.cpu.is_local},
        "machine_cpu": machine_info().cpu_model,
        "budget_points": ctx.budget, "max_accuracy_drop": ctx.args.max_accuracy_drop,
        "confidence": ctx.baseline.confidence,
        "baseline_quality": ctx.baseline.quality, "validation_examples": len(ctx.baseline.data.requests),
        "windows": ctx.windows, "threads": ctx.args.threads, "work_dir": str(ctx.work),
        "candidates": rows, "peers": peer_rows, "chosen": None, "settings": [], "test": None,
    }
    code = 0
    if not passing:
        measured_rows = [r for r in rows if r.get("drop") is not None]
        best = min(measured_rows, key=lambda r: r["drop_bound"]) if measured_rows else None
        summary["message"] = (f"nothing met the {ctx.budget:.2f}-point budget on validation; the closest was "
                              f"{best['name']} ({best['drop']:+.2f} points, at most {best['drop_bound']:+.2f})"
                              if best else
                              f"nothing met the {ctx.budget:.2f}-point budget: no candidate could be measured")
        print(f"{PROG}: {summary['message']}; nothing was written to {out}", file=sys.stderr)
        code = EXIT_NOTHING_MET
    else:
        finalists = {r["name"]: (Path(r["artifact"]), Window(r["window"], r["truncation"]), r["engine"])
                     for r in passing[:FINALISTS]}
        costs = time_settings(finalists, ctx.baseline.requests, ctx.baseline.timing)
        (name, setting), cost = min(costs.items(), key=lambda kv: kv[1])
        summary["settings"] = [{"name": n, "threads": s.threads, "spinning": s.spinning, "latency_ms": c}
                               for (n, s), c in sorted(costs.items(), key=lambda kv: kv[1])]
        chosen = next(r for r in passing if r["name"] == name)
        _publish(ctx, chosen, setting, out)
        summary["chosen"] = {**chosen, "threads": setting.threads, "spinning": setting.spinning, "artifact": str(out)}
        print(f"chose {name} at {window_label(chosen['window'], chosen['truncation'])} tokens, {setting.label()}: "
              f"validation {_pct(chosen['quality'])} "
              f"({chosen['drop']:+.2f} points), {chosen['speedup']:.2f}x PyTorch; wrote {out}", file=sys.stderr)
        if test is not None:
            summary["test"] = _score_test(ctx, out, peers, test, report_dir)
    summary["search_s"] = time.time() - started
    written = write_search_report(summary, report_dir)
    print(f"report: {written[0]}; plot: {written[1] if len(written) > 1 else 'none'}", file=sys.stderr)
    print((report_dir / "search.md").read_text())
    return code


def _publish(ctx: Context, chosen: dict[str, Any], setting, out: Path) -> None:
    """Copy the chosen candidate to `out` with its window, runtime settings and the search in the manifest."""
    from toolchain.output import claim_output, publish

    source = Path(chosen["artifact"])
    manifest = Manifest.read(source)
    with claim_output(out, ctx.args.overwrite) as workspace:
        folder = workspace.path / "artifact"
        shutil.copytree(source, folder)
        info = machine_info(setting.threads)
        record = StepRecord("search", manifest.lineage[-1].stage,
                            {"max_accuracy_drop": ctx.args.max_accuracy_drop, "budget_points": ctx.budget,
                             "candidate": chosen["name"], "window": chosen["window"],
                             "truncation": chosen["truncation"], "threads": setting.threads,
                             "spinning": setting.spinning},
                            manifest.model_sha256, manifest.model_sha256,
                            datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), 0.0,
                            {"validation_quality": chosen["quality"], "validation_drop_points": chosen["drop"],
                             "speedup_vs_pytorch": chosen["speedup"], "work_dir": str(ctx.work)})
        updated = dataclasses.replace(
            manifest, max_length=min(chosen["window"], manifest.max_length), lineage=(*manifest.lineage, record),
            truncation=chosen["truncation"],
            runtime=RuntimeSettings(threads=setting.threads, spinning=setting.spinning,
                                    measured_on=f"{info.cpu_model}, {info.logical_cpus} logical CPUs"),
            metrics={**manifest.metrics, "validation_quality": chosen["quality"],
                     "validation_drop_points": chosen["drop"], "speedup_vs_pytorch": chosen["speedup"]})
        updated.validate().write(folder)
        publish(folder, out)


def _score_test(ctx: Context, out: Path, peers, test, report_dir: Path) -> dict[str, Any]:
    """The test split, scored once: the chosen artifact, the baseline and the peers, all timed side by side."""
    from bench.suite import build_parser as bench_parser
    from bench.suite import run_bench

    name = f"ours: {Manifest.read(out).lineage[-1].config['candidate']}"
    specs = [f"{name}={out}"] + [f"{p.name}={p.path}" for p in peers if p.path is not None]
    test_file = report_dir.parent / f".{report_dir.name}-test.jsonl"
    _write_test(test, test_file)
    try:
        args = bench_parser().parse_args([*specs, "--baseline", f"PyTorch fp32={ctx.checkpoint.path}", "--data",
                                          str(test_file), "--threads", str(ctx.args.threads or 0),
                                          "--gate-rounds", "0", "--footprint-requests", "0", "--shapes", ""])
        report = run_bench(args)
    finally:
        test_file.unlink(missing_ok=True)
    from bench.report.markdown import report_markdown
    from runtimes.common.manifest import write_text_atomically

    bench_dir = report_dir / "test-bench"
    report.write(bench_dir)
    write_text_atomically(bench_dir / "report.md", report_markdown(report))
    base = report.subject(report.baseline)
    rows = []
    for s in report.subjects:
        e2e = base.latency.cost_ms / s.latency.cost_ms if (s.latency and base.latency) else None
        rows.append({"name": s.name, "quality": s.primary, "drop": 100 * (base.primary - s.primary),
                     "e2e_speedup": e2e, "model_speedup": base.model_latency.cost_ms / s.model_latency.cost_ms,
                     "size_mb": s.size_mb, "smaller": base.size_mb / s.size_mb})
    return {"examples": base.quality_examples, "rows": rows, "report": str(bench_dir / "report.md")}


def _write_test(test, path: Path) -> None:
    """The test split as JSONL the bench reads (whatever format it came in)."""
    with open(path, "w", encoding="utf-8") as fh:
        for i, request in enumerate(test.requests):
            if test.task.value == "text-classification":
                row = {"text": request, "label": test.gold[i]}
            elif test.task.value == "token-classification":
                row = {"tokens": test.words[i], "tags": test.gold[i]}
            else:
                row = {**request, "answers": test.gold[i]}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
