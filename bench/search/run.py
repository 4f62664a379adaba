"""The accuracy-budget search: the fastest artifact for a target that loses at most a given accuracy on
validation. `search()` is the Python entry point; `optimise search` (bench.cli.search) calls it.

    search("ckpt", "model", max_accuracy_drop=1.0, train_data="train.csv", eval_data="validation.csv")

Candidates (`bench.search.space`) are built with the same API as `optimise`, cheapest first, each
one an Optuna trial (`bench.search.study`): fp32, int8 and its variants, OpenVINO, then students
from the largest down. Each is scored on the validation split at the windows worth trying and timed
in turns with the PyTorch model (`bench.search.measure`). The search does not stop at the first
candidate that fits: it runs them all, skipping only what finished ones rule out. The fastest few
that fit are timed side by side under each runtime setting; the winner is written to DIR with its
window and settings in the manifest (`runtimes.load` uses them). Beside DIR, in DIR-search/: the
candidates with their figures and reasons, a report and a plot, peers included. With `test_data`
the test split is scored once, for the chosen artifact, the baseline and the peers.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from bench.search.result import SearchResult, Trial
from bench.search.space import Candidate, Status, candidates_for, skip_reason
from bench.search.study import check_storage, enqueue, finished, open_study, outcomes, work
from runtimes.common.cli_boundary import one_line
from runtimes.common.cpu import CpuTarget, detect_isa
from runtimes.common.errors import EdgeError, InputError
from runtimes.common.manifest import Manifest, RuntimeSettings, StepRecord
from runtimes.embedded.pipelines import validated
from runtimes.measure import machine_info

log = logging.getLogger(__name__)
FINALISTS = 3


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """Every setting of a search but the checkpoint and `out` (see `search` for what each means)."""

    max_accuracy_drop: float | str
    eval_data: Path
    train_data: Path | None = None
    calibration_data: Path | None = None
    test_data: Path | None = None
    target: str = "cpu"
    task: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    question_column: str = "question"
    context_column: str = "context"
    max_length: int | None = None
    confidence: float = 0.9
    students: bool = True
    student_starts: Sequence[Path] = ()
    early_stopping_data: Path | None = None
    early_stopping_share: float = 0.1
    early_stopping_from: str = "train"
    transfer_data: Path | None = None
    augment: int | None = None
    quick: bool = False
    time_budget: float | str | None = None
    peers: str | Sequence[str] = "auto"
    threads: int = 1
    latency_texts: int = 100
    storage: str | None = None
    worker: bool = False
    work_dir: Path | None = None
    cache_dir: Path | None = None
    allow_pickle: bool = False
    overwrite: bool = False


def search(checkpoint: Path | str, out: Path | str, *, max_accuracy_drop: float | str,
           eval_data: Path | str, **options: Any) -> SearchResult:
    """The fastest artifact for `target` that loses at most `max_accuracy_drop` on `eval_data`, written to `out`.

    `max_accuracy_drop` is in points (1.0) or, as a string ending in "%", a share of the PyTorch model's
    figure ("1%"): accuracy for classification, F1 for NER and QA, checked on the drop's upper bound at
    `confidence` (paired bootstrap on the validation split). With `train_data`, students are distilled
    too (`students=False`: graph-only candidates). `test_data` is scored once at the end, for the chosen
    artifact, the baseline and the peers (never used to choose). The report goes to `OUT-search/`.

    Keyword options mirror `optimise search`'s (see `SearchOptions`): target ("cpu", "cpu:avx2",
    "openvino", "cuda", ...), task, calibration_data, the column names, max_length, confidence,
    students, student_starts (folders of small pretrained encoders to distil into, beside the students cut
    from the teacher's layers), early_stopping_share (the share of `train_data` held out to stop the students'
    training, 0.1: validation only chooses; early_stopping_from="validation" holds it out of `eval_data`
    instead) or early_stopping_data (a file for that instead), transfer_data
    (unlabelled inputs every student also learns from, labelled by the teacher), augment (augmented copies of
    each training text for every student; default by size), quick (one short-trained student instead of
    four: minutes, not an hour), time_budget (seconds, or "90m"), peers ("auto", "none", or names), threads,
    latency_texts, storage and worker (several processes on one study), work_dir, cache_dir, allow_pickle,
    overwrite. Returns a `SearchResult`; raises an `EdgeError` for bad input.
    Finished trials are kept in the work folder, so a stopped search resumes where it left off.
    """
    if "student_starts" in options:
        starts = options["student_starts"]
        options["student_starts"] = tuple(Path(p) for p in ([starts] if isinstance(starts, (str, Path)) else starts))
    paths = {name: Path(options[name]) for name in ("train_data", "calibration_data", "test_data",
                                                     "early_stopping_data", "transfer_data", "work_dir", "cache_dir")
             if options.get(name) is not None}
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(SearchOptions)})
    if unknown:
        raise TypeError(f"search() got unknown option(s): {', '.join(unknown)}")
    opts = SearchOptions(max_accuracy_drop=max_accuracy_drop, eval_data=Path(eval_data), **{**options, **paths})
    return run_search(Path(checkpoint), Path(out), opts)




def parse_budget(text: float | str) -> tuple[float, bool]:
    """1.0 or '1.0' -> (1.0, False) points; '1%' -> (1.0, True), a share of the baseline's figure."""
    raw = str(text).strip()
    relative = raw.endswith("%")
    try:
        value = float(raw.rstrip("%").strip())
    except ValueError:
        raise InputError(f"`max_accuracy_drop` {text!r} is not a number of points (1.0) or a percentage (1%)") \
            from None
    if not 0 <= value <= 100 or value != value:
        raise InputError(f"`max_accuracy_drop` {text!r} must be between 0 and 100")
    return value, relative


def parse_duration(text: float | str | None) -> float | None:
    """A number is seconds; a string is a duration with a unit (90m, 2h, 600s), or minutes without one."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        text = f"{text}s"
    raw = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    scale = units.get(raw[-1:])
    number = raw[:-1] if scale else raw
    try:
        seconds = float(number) * (scale or 60)
    except ValueError:
        raise InputError(f"`time_budget` {text!r} is not a duration such as 90m, 2h or 600s") from None
    if not seconds > 0:
        raise InputError(f"`time_budget` {text!r} must be positive")
    return seconds


def _peers(chosen: str | Sequence[str], target: str) -> list[str]:
    from bench.search.peers import PEERS

    if chosen == "none":
        return []
    if chosen == "auto":
        return list(PEERS) if target == "cpu" else ["openvino-nncf"] if target == "openvino" else []
    names = [n.strip() for n in (chosen.split(",") if isinstance(chosen, str) else chosen) if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise InputError(f"`peers`: unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}, none, auto")
    return names


@dataclasses.dataclass
class Context:
    """Everything a candidate's trial needs, loaded once per process."""

    opts: SearchOptions
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
    student_data: dict | None = None  # what students learn from and stop on (`data` with other roles)
    stopping: str | None = None  # where the students' early-stopping examples came from


def run_search(checkpoint: Path, out: Path, opts: SearchOptions) -> SearchResult:
    from bench.quality import labelled_from, load_labelled
    from bench.search.report import SEARCH_REPORT_FILES
    from bench.subjects import CheckpointSubject
    from toolchain.cache import StepCache, default_cache_dir
    from toolchain.checkpoint import inspect_checkpoint
    from toolchain.data import DataRole, resolve_roles
    from toolchain.errors import ConfigError
    from toolchain.output import check_existing, check_report_folder, plan_output
    from toolchain.recipe import Target, parse_target
    from toolchain.tasks import adapter_for, load_dataset, parse_task

    started = time.time()
    amount, relative = parse_budget(opts.max_accuracy_drop)
    time_budget = parse_duration(opts.time_budget)
    if not 0.5 <= opts.confidence < 1:
        raise InputError("`confidence` must be at least 0.5 and below 1")
    if opts.latency_texts < 10:
        raise InputError("`latency_texts` must be at least 10")
    if opts.threads < 0:
        raise InputError("`threads` must be 0 (the backend's choice) or more")
    if opts.augment is not None and not 0 <= opts.augment <= 64:
        raise InputError("`augment` must be between 0 and 64 copies of each training text")
    if opts.early_stopping_from not in ("train", "validation"):
        raise InputError(f"`early_stopping_from` {opts.early_stopping_from!r}: choose train or validation")
    if not 0 <= opts.early_stopping_share <= 0.5:
        raise InputError("`early_stopping_share` must be between 0 (stop on the validation split) and 0.5")
    if opts.max_length is not None and opts.max_length < 8:
        raise InputError("`max_length` must be at least 8 tokens")
    if opts.storage:
        check_storage(opts.storage)
    try:
        target, cpu = parse_target(opts.target)
    except ConfigError as exc:
        raise InputError(f"`target`: {exc}") from None
    peers = _peers(opts.peers, target.value)
    if not cpu.is_local:
        log.warning("int8 is made for cpu:%s but this machine is cpu:%s: the candidates' latencies are measured "
                    "here, on another instruction set, and may rank them differently from the target",
                    cpu.isa.value, detect_isa().value)
    if target is Target.CUDA:
        from runtimes.embedded.backends import get_backend

        if "cuda" not in [d.value for d in get_backend("onnxruntime").devices()]:
            raise InputError("`target` cuda needs ONNX Runtime with a CUDA device; none is usable here "
                             "(pip install onnxruntime-gpu on a machine with a GPU)")
    ckpt = inspect_checkpoint(checkpoint, task=parse_task(opts.task) if opts.task else None,
                              allow_pickle=opts.allow_pickle)
    inputs = [p for p in (opts.train_data, opts.eval_data, opts.calibration_data, opts.test_data,
                          opts.early_stopping_data, opts.transfer_data) if p]
    out = plan_output(out, [ckpt.path, *inputs])
    report_dir = out.with_name(out.name + "-search")
    if not opts.worker:  # refuse now, not after an hour of training
        check_existing(out, opts.overwrite)
        # an earlier report is replaced: with an artifact at OUT, check_existing has asked for `overwrite`;
        # without one, the earlier run chose nothing (or was stopped) and this run resumes it
        check_report_folder(report_dir, SEARCH_REPORT_FILES, "search report", [ckpt.path, *inputs],
                            flag="the report folder")
    columns = dict(text_column=opts.text_column, label_column=opts.label_column, tokens_column=opts.tokens_column,
                   tags_column=opts.tags_column, question_column=opts.question_column,
                   context_column=opts.context_column)
    files = {DataRole.TRAIN: opts.train_data, DataRole.VALIDATION: opts.eval_data,
             DataRole.CALIBRATION: opts.calibration_data or opts.eval_data}
    data = {role: load_dataset(path, ckpt.task, ckpt.labels, **columns) for role, path in files.items() if path}
    data = resolve_roles(data)
    adapter = adapter_for(ckpt.task)
    validation = (labelled_from(data[DataRole.VALIDATION], ckpt.task, ckpt.labels) if adapter.dataset_carries_gold
                  else load_labelled(opts.eval_data, ckpt.task, ckpt.labels))
    test = None
    if opts.test_data:
        test = (labelled_from(load_dataset(opts.test_data, ckpt.task, ckpt.labels, **columns), ckpt.task, ckpt.labels)
                if adapter.dataset_carries_gold else load_labelled(opts.test_data, ckpt.task, ckpt.labels))
    if opts.max_length is not None and opts.max_length > ckpt.max_length:
        raise InputError(f"`max_length` {opts.max_length} is longer than the model's window of {ckpt.max_length} "
                         "tokens")
    layers = int(ckpt.config.get("num_hidden_layers") or ckpt.config.get("n_layers") or 0)
    students = opts.students and DataRole.TRAIN in data and layers > 1
    if opts.students and DataRole.TRAIN not in data:
        log.warning("no `train_data`: the search tries graph-only candidates (no students)")
    starts = _starts(opts.student_starts, ckpt) if students else []
    held_validation = None
    if students and opts.early_stopping_from == "validation" and opts.early_stopping_data is None \
            and opts.early_stopping_share > 0:  # the teacher saw every training text: stop on unseen ones
        try:
            rest, held = data[DataRole.VALIDATION].split_indices(opts.early_stopping_share, salt="early stopping")
        except InputError as exc:
            raise InputError(f"`early_stopping_from` validation: {exc}") from None
        held_validation = data[DataRole.VALIDATION].select(held)
        data = {**data, DataRole.VALIDATION: data[DataRole.VALIDATION].select(rest)}
        validation = validation.select(rest)
    student_data, stopping = (_student_data(data, opts, ckpt, columns, held_validation) if students
                              else (data, None))
    if test is not None:
        test = _unseen(test, validation, [*data.values(), *student_data.values()])

    timing = Timing(texts=opts.latency_texts, threads=opts.threads or None)
    log.info(f"scoring the PyTorch model on {len(validation.requests)} validation examples")
    baseline = Baseline(CheckpointSubject(ckpt.path, timing.threads, name="PyTorch fp32"), validation, timing,
                        opts.confidence)
    budget = amount * baseline.quality if relative else amount  # relative: a share of the baseline, in points
    windows = windows_for(token_lengths(ckpt, validation.requests), ckpt.max_length, opts.max_length,
                          head_tail="head+tail" in adapter.truncations)
    candidates = candidates_for(target, layers, budget, students,
                                budgeted_int8=adapter.accuracy_budget_needs is not None, confidence=opts.confidence,
                                cpu=cpu, quick=opts.quick, starts=starts, augment=opts.augment)
    key = _study_key(ckpt, data, student_data, target, cpu, budget, candidates, windows, opts)
    work_dir = (opts.work_dir or default_cache_dir().parent / "search" / key).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    storage = opts.storage or f"sqlite:///{work_dir / 'study.db'}"
    study = open_study(storage, f"search-{key}", work_dir / "enqueue.lock")
    added = enqueue(study, candidates, work_dir / "enqueue.lock")
    log.info(f"search {key}: {len(candidates)} candidates ({added} to run), budget {budget:.2f} points below "
          f"{_pct(baseline.quality)} on validation, windows {', '.join(w.label() for w in windows)}; "
          f"work folder {work_dir}")
    if students and not opts.worker:
        # the baseline's checkpoint holds the teacher already loaded: timed as it is, not loaded again
        _announce_cost(candidates, baseline.subject.ckpt, student_data, starts, time_budget)
    ctx = Context(opts, ckpt, data, baseline, windows, budget, {c.name: c for c in candidates}, work_dir,
                  started + time_budget if time_budget else None,
                  StepCache(opts.cache_dir or default_cache_dir()), study, cpu, student_data, stopping)
    work(study, [c.name for c in candidates], lambda name: _trial(ctx, name),
         on_idle=lambda n: log.info("waiting for %d candidate(s) running elsewhere", n))
    if opts.worker:
        log.info("worker done: a run without `worker` chooses and reports")
        return SearchResult(met_budget=False, chosen=None, trials=[], peers=[], budget_points=budget,
                            baseline_quality=baseline.quality, worker=True)
    return _finish(ctx, outcomes(study), peers, test, out, report_dir, started)


def _starts(folders: Sequence[Path], teacher) -> list[tuple[str, str, bool]]:
    """(name, folder, hidden states matchable) for each pretrained student start; `InputError` for a bad folder."""
    from toolchain.checkpoint import inspect_checkpoint
    from toolchain.steps.distill import hidden_mismatch

    found = []
    for folder in folders:
        if not (folder / "config.json").is_file():
            raise InputError(f"`student_starts`: {folder} is not a model folder (no config.json)")
        try:
            start = inspect_checkpoint(folder, task=teacher.task)
        except EdgeError as exc:
            raise InputError(f"`student_starts`: {folder}: {one_line(exc)}") from None
        problem = hidden_mismatch(teacher, start)
        if problem:
            log.info("student start %s: soft targets only, no hidden-state matching (%s)", folder.name, problem)
        layers = start.config.get("num_hidden_layers") or start.config.get("n_layers")
        found.append((f"{folder.name} ({layers}-layer)" if layers else folder.name, str(folder.resolve()),
                      problem is None))
    return found


def _announce_cost(candidates, teacher, student_data: dict, starts, time_budget: float | None) -> None:
    """Say up front what the students will cost (texts to label, minutes to train), and whether the time budget
    will cut them short."""
    from bench.search.cost import estimate
    from toolchain.checkpoint import inspect_checkpoint
    from toolchain.data import DataRole

    train = student_data[DataRole.TRAIN]
    depths = {}
    for _name, folder, _hidden in starts:
        config = inspect_checkpoint(Path(folder), task=teacher.task).config
        depths[folder] = int(config.get("num_hidden_layers") or config.get("n_layers") or 1)
    found = estimate(candidates, teacher, train.texts, len(train), len(student_data.get(DataRole.TRANSFER) or ()),
                     depths)
    if found is None:
        return
    log.info("students: %s", found.describe())
    if time_budget is not None and found.total_s > time_budget:
        log.warning("the students' estimated %.1f h exceed the %.1f h time budget: the smallest may not start "
                    "(they are reported as skipped, and a later run resumes them)", found.total_s / 3600,
                    time_budget / 3600)


def _student_data(data: dict, opts: SearchOptions, teacher, columns: dict[str, str],
                  held_validation=None) -> tuple[dict, str]:
    """The data students learn from and stop their training on, and where the stopping examples came from.

    Validation chooses among the candidates; if it also stopped each student's training at its best
    epoch, a student's validation figure would be the best of many looks at the same examples, and the
    budget would hold on validation but not on test. So students stop on other examples: a share of the
    training data held out (by content, the same split on every run), `held_validation` (that share of the
    validation file, already held out of what chooses) or a file of their own. Held-out training texts were
    seen by the teacher's fine-tune, and a student cut from its layers inherits some of that memory: it
    scores high on them, which the stopping rule only uses to pick an epoch; held-out validation texts
    are unseen by both, at the cost of a smaller choosing split."""
    from toolchain.data import DataRole
    from toolchain.tasks import load_dataset, load_transfer_data

    train, validation = data[DataRole.TRAIN], data[DataRole.VALIDATION]
    extra = {}
    if opts.transfer_data is not None:
        transfer = load_transfer_data(opts.transfer_data, teacher.task, **columns)
        shared = len(set(transfer.texts) & set(validation.texts))
        if shared:
            raise InputError(f"`transfer_data`: {shared} of its {len(transfer)} texts are also in `eval_data`; a "
                             "student that learnt the teacher's answers there would look better than it is")
        extra[DataRole.TRANSFER] = transfer
    if opts.early_stopping_data is not None:
        stop = load_dataset(opts.early_stopping_data, teacher.task, teacher.labels, **columns)
        for other, role in ((validation, "`eval_data` (validation chooses, so it cannot stop training too)"),
                            (train, "`train_data`"), (extra.get(DataRole.TRANSFER), "`transfer_data`")):
            if other is None:
                continue
            shared = len(set(stop.texts) & set(other.texts))
            if shared:
                raise InputError(f"`early_stopping_data`: {shared} of its {len(stop)} examples are also in {role}; "
                                 "keep them apart")
        source = f"{len(stop)} examples of {opts.early_stopping_data.name}"
    elif held_validation is not None:
        stop = held_validation
        source = (f"{len(stop)} examples ({opts.early_stopping_share:.0%}) held out of `eval_data` (the other "
                  f"{len(validation)} choose)")
    elif opts.early_stopping_share > 0:
        try:
            train, stop = train.split_off(opts.early_stopping_share, salt="early stopping")
        except InputError as exc:
            raise InputError(f"`early_stopping_share`: {exc}; give `early_stopping_data` instead") from None
        source = f"{len(stop)} examples ({opts.early_stopping_share:.0%}) held out of `train_data`"
    else:
        log.warning("early_stopping_share is 0: the students stop training on the validation split that also "
                    "chooses among them, so their validation figures are optimistic")
        return {**data, **extra}, f"the {len(validation)} validation examples (early_stopping_share 0: optimistic)"
    if DataRole.TRANSFER in extra:
        held = set(stop.texts)
        kept = [i for i, text in enumerate(extra[DataRole.TRANSFER].texts) if text not in held]
        if not kept:
            raise InputError("`transfer_data`: every text is also among the early-stopping examples")
        extra[DataRole.TRANSFER] = extra[DataRole.TRANSFER].select(kept)  # never learn what stops the training
    log.info("students learn from %d training examples%s and stop on %s; the %d validation examples only choose",
             len(train), f" and {len(extra[DataRole.TRANSFER])} transfer texts" if extra else "", source,
             len(validation))
    return {**data, **extra, DataRole.TRAIN: train, DataRole.VALIDATION: stop}, source


def _unseen(test, validation, data: Sequence) -> Any:
    """The test split without the examples that training, validation or calibration data also hold: a score
    on what the search learnt from or chose on is not a test score. All of them seen: an error."""
    def key(request: Any) -> str:
        return json.dumps(request, sort_keys=True) if isinstance(request, dict) else request

    seen = {key(r) for r in validation.requests}
    for dataset in data:
        seen.update(dataset.texts if dataset.questions is None
                    else (key({"question": q, "context": c}) for q, c in zip(dataset.questions, dataset.texts)))
    keep = [i for i, request in enumerate(test.requests) if key(request) not in seen]
    if not keep:
        raise InputError("every `test_data` example is also in the training, validation or calibration data; "
                         "the test split must be unseen")
    if len(keep) < len(test.requests):
        log.warning("%d of %d `test_data` examples are also in the training, validation or calibration data; "
                    "the test score leaves them out", len(test.requests) - len(keep), len(test.requests))
    return test.select(keep)


def _study_key(ckpt, data, student_data, target, cpu: CpuTarget, budget, candidates, windows,
               opts: SearchOptions) -> str:
    from toolchain import __version__

    # the machine's int8 class too: a study run on another kind of CPU holds another format and other latencies
    parts = [ckpt.sha256, target.value, f"int8 for {cpu.isa.value} timed on {detect_isa().value}", f"{budget:.4f}",
             json.dumps([c.recipe().to_dict() for c in candidates]),
             json.dumps(windows), str(opts.threads), str(opts.confidence), str(opts.latency_texts), __version__,
             *sorted(f"{r.value}:{d.sha256}" for r, d in data.items()),
             *sorted(f"students {r.value}:{d.sha256}" for r, d in student_data.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _pct(quality: float) -> str:
    return f"{100 * quality:.2f}"


def _trial(ctx: Context, name: str) -> dict[str, Any]:
    """Build and measure one candidate; its outcome (never raises for an expected failure)."""
    from toolchain.api import optimise

    cand = ctx.candidates[name]
    outcome: dict[str, Any] = {"name": name, "size_rank": cand.size_rank, "lineage": cand.lineage,
                               "engine": cand.engine.value,
                               "trains": cand.trains, "recipe": cand.recipe().to_dict()}
    left = None if ctx.deadline is None else ctx.deadline - time.time()
    reason = skip_reason(cand, finished(ctx.study), ctx.budget, left)
    if reason:
        log.info(f"  {name}: skipped ({reason})")
        # a candidate the clock stopped is tried again by the next run; one that a finished one ruled out is not
        return {**outcome, "status": Status.SKIPPED.value, "reason": reason, "retry": left is not None and left <= 0}
    log.info(f"  {name}: building{' (trains: can take tens of minutes)' if cand.trains else ''}")
    art = ctx.work / "candidates" / cand.slug
    t0 = time.perf_counter()
    try:
        data = ctx.student_data if cand.trains and ctx.student_data else ctx.data
        optimise(ctx.checkpoint.path, art, task=ctx.checkpoint.task, recipe=cand.recipe(), data=data,
                 allow_pickle=ctx.opts.allow_pickle, overwrite=True, cache=ctx.cache)
        build_s = time.perf_counter() - t0
        measured: Measured = measure_candidate(art, ctx.baseline, ctx.windows)
    except EdgeError as exc:
        log.info(f"  {name}: failed: {one_line(exc)}")
        return {**outcome, "status": Status.FAILED.value, "reason": f"{type(exc).__name__}: {one_line(exc)}"}
    best = measured.best(ctx.budget)
    status = Status.PASSED if fits(best.drop_bound, ctx.budget) else Status.MISSED
    cached = [r.step for r in Manifest.read(art).lineage if r.cached]
    log.info(f"  {name}: {status.value}: {_pct(best.quality)} ({best.drop:+.2f} points, at most {best.drop_bound:+.2f} "
          f"with {ctx.baseline.confidence:.0%} confidence) at {window_label(best.window, best.truncation)} tokens, "
          f"{best.speedup:.2f}x PyTorch, {measured.size_mb:.1f} MB ({build_s:.0f} s"
          f"{', cached: ' + ', '.join(cached) if cached else ''})")
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
        "checkpoint": str(ctx.checkpoint.path), "task": ctx.checkpoint.task.value, "target": ctx.opts.target,
        "cpu": {"int8_target": ctx.cpu.isa.value, "measured_on": detect_isa().value,
                "measured_on_target": ctx.cpu.is_local},
        "machine_cpu": machine_info().cpu_model,
        "budget_points": ctx.budget, "max_accuracy_drop": ctx.opts.max_accuracy_drop,
        "confidence": ctx.baseline.confidence,
        "baseline_quality": ctx.baseline.quality, "validation_examples": len(ctx.baseline.data.requests),
        "students_data": None if not ctx.stopping or ctx.student_data is None else {
            "train_examples": len(ctx.student_data[DataRole.TRAIN]), "early_stopping": ctx.stopping,
            "transfer_examples": len(ctx.student_data.get(DataRole.TRANSFER) or ())},
        "windows": ctx.windows, "threads": ctx.opts.threads, "work_dir": str(ctx.work),
        "candidates": rows, "peers": peer_rows, "chosen": None, "settings": [], "test": None,
    }
    if not passing:
        measured_rows = [r for r in rows if r.get("drop") is not None]
        best = min(measured_rows, key=lambda r: r["drop_bound"]) if measured_rows else None
        summary["message"] = (f"nothing met the {ctx.budget:.2f}-point budget on validation; the closest was "
                              f"{best['name']} ({best['drop']:+.2f} points, at most {best['drop_bound']:+.2f})"
                              if best else
                              f"nothing met the {ctx.budget:.2f}-point budget: no candidate could be measured")
    else:
        finalists = {r["name"]: (Path(r["artifact"]), Window(r["window"], r["truncation"]), r["engine"])
                     for r in passing[:FINALISTS]}
        costs = time_settings(finalists, ctx.baseline.requests, ctx.baseline.timing)
        (name, setting), _cost = min(costs.items(), key=lambda kv: kv[1])
        summary["settings"] = [{"name": n, "threads": s.threads, "spinning": s.spinning, "latency_ms": c}
                               for (n, s), c in sorted(costs.items(), key=lambda kv: kv[1])]
        chosen = next(r for r in passing if r["name"] == name)
        _publish(ctx, chosen, setting, out)
        summary["chosen"] = {**chosen, "threads": setting.threads, "spinning": setting.spinning, "artifact": str(out)}
        log.info(f"chose {name} at {window_label(chosen['window'], chosen['truncation'])} tokens, {setting.label()}: "
              f"validation {_pct(chosen['quality'])} "
              f"({chosen['drop']:+.2f} points), {chosen['speedup']:.2f}x PyTorch; wrote {out}")
        if test is not None:
            summary["test"] = _score_test(ctx, out, peers, test, report_dir)
    summary["search_s"] = time.time() - started
    written = write_search_report(summary, report_dir)
    plot = report_dir / "search.png"
    chosen_row = summary["chosen"]
    return SearchResult(
        met_budget=chosen_row is not None, chosen=Trial.from_row(chosen_row) if chosen_row else None,
        trials=[Trial.from_row(r) for r in rows], peers=[Trial.from_row(r) for r in peer_rows],
        budget_points=ctx.budget, baseline_quality=ctx.baseline.quality, message=summary.get("message"),
        artifact=out if chosen_row else None, report=report_dir / "search.md", report_json=report_dir / "search.json",
        plot=plot if plot in written else None, test=summary["test"])


def _publish(ctx: Context, chosen: dict[str, Any], setting, out: Path) -> None:
    """Copy the chosen candidate to `out` with its window, runtime settings and the search in the manifest."""
    from toolchain.output import claim_output, publish

    source = Path(chosen["artifact"])
    manifest = Manifest.read(source)
    with claim_output(out, ctx.opts.overwrite) as workspace:
        folder = workspace.path / "artifact"
        shutil.copytree(source, folder)
        info = machine_info(setting.threads)
        record = StepRecord("search", manifest.lineage[-1].stage,
                            {"max_accuracy_drop": ctx.opts.max_accuracy_drop, "budget_points": ctx.budget,
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
        validated(updated).write(folder)
        publish(folder, out)


def _score_test(ctx: Context, out: Path, peers, test, report_dir: Path) -> dict[str, Any]:
    """The test split, scored once: the chosen artifact, the baseline and the peers, all timed side by side."""
    from bench.suite import BenchOptions, run_bench

    name = f"ours: {Manifest.read(out).lineage[-1].config['candidate']}"
    artifacts = {name: out, **{p.name: p.path for p in peers if p.path is not None}}
    specs = [f"{n}={path}" for n, path in artifacts.items()]
    test_file = report_dir.parent / f".{report_dir.name}-test.jsonl"
    _write_test(test, test_file)
    try:
        report = run_bench(BenchOptions(artifacts=specs, baseline=f"PyTorch fp32={ctx.checkpoint.path}",
                                        data=test_file, threads=ctx.opts.threads or 0, gate_rounds=0,
                                        footprint_requests=0, shapes=""))
    finally:
        test_file.unlink(missing_ok=True)
    from bench.report.markdown import report_markdown
    from runtimes.common.manifest import write_text_atomically

    bench_dir = report_dir / "test-bench"
    report.write(bench_dir)
    write_text_atomically(bench_dir / "report.md", report_markdown(report))
    base = report.subject(report.baseline)
    intervals = _test_intervals(ctx, test, artifacts)
    rows = []
    for s in report.subjects:
        e2e = base.latency.cost_ms / s.latency.cost_ms if (s.latency and base.latency) else None
        rows.append({"name": s.name, "quality": s.primary, "drop": 100 * (base.primary - s.primary),
                     "drop_interval": intervals.get(s.name), "e2e_speedup": e2e,
                     "model_speedup": base.model_latency.cost_ms / s.model_latency.cost_ms,
                     "e2e_ms": s.latency.cost_ms if s.latency else None, "model_ms": s.model_latency.cost_ms,
                     "size_mb": s.size_mb, "smaller": base.size_mb / s.size_mb})
    return {"examples": base.quality_examples, "confidence": ctx.baseline.confidence, "rows": rows,
            "report": str(bench_dir / "report.md")}


def _test_intervals(ctx: Context, test, artifacts: dict[str, Path]) -> dict[str, tuple[float, float]]:
    """Each artifact's test drop as a two-sided paired-bootstrap interval at the search's confidence: a test split
    of a thousand examples moves a point estimate by about a point, so the figure alone says little."""
    from bench.quality import outputs
    from bench.subjects import ArtifactSubject, CheckpointSubject

    log.info("test split: the drops' %.0f%% intervals (paired bootstrap)", 100 * ctx.baseline.confidence)
    threads = ctx.baseline.timing.threads
    base = Baseline(CheckpointSubject(ctx.checkpoint.path, threads, name="PyTorch fp32"), test,
                    ctx.baseline.timing, ctx.baseline.confidence)
    return {name: base.drop_interval(outputs(ArtifactSubject(path, threads, name=name), test))
            for name, path in artifacts.items()}


def _write_test(test, path: Path) -> None:
    """The test split as JSONL the bench reads (whatever format it came in)."""
    from toolchain.tasks import adapter_for

    adapter = adapter_for(test.task)
    with open(path, "w", encoding="utf-8") as fh:
        for i, request in enumerate(test.requests):
            row = adapter.gold_row(request, test.gold[i], test.words[i] if test.words is not None else None)
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
