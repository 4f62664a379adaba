"""The benchmark: measure artifacts (and a PyTorch baseline) side by side; report.json, report.md and a plot.

    bench(["out/cpu-fp32", "out/cpu-int8"], baseline="CHECKPOINT", data="test.csv", out="out/bench")
    optimise bench out/cpu-fp32 out/cpu-int8 --baseline CHECKPOINT --data test.csv --out out/bench  (bench.cli)

Every model is loaded in this process and timed by the same loop, taking turns block by block;
quality is scored on `data`; a fresh process per model gives cold start and peak memory.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import workload
from bench.footprint import checkpoint_footprint
from bench.gate.run import reference_samples
from bench.progress import progress_bar
from bench.quality import load_labelled, score
from bench.report.markdown import report_markdown
from bench.report.plot import plot_report
from bench.report.schema import (
    REPORT_NAME,
    Footprint,
    Latency,
    Machine,
    Phase,
    Report,
    Settings,
    ShapeLatency,
    Subject,
    Throughput,
)
from bench.subjects import fixed_feeds, open_subject, split_name
from runtimes import load
from runtimes.common.errors import InputError
from runtimes.measure import machine_info, split_blocks, time_interleaved
from runtimes.measure.footprint import runtime_footprint
from runtimes.measure.timing import workload_cost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchOptions:
    """What `bench` measures and how (`optimise bench`'s options, with underscores)."""

    artifacts: Sequence[str | Path]
    baseline: str | Path | None = None
    data: Path | None = None
    threads: int = 2
    backend: str = "auto"
    quality_limit: int = 0
    latency_texts: int = 300
    rounds: int = 10
    passes: int = 3
    warmup: int = 3
    shapes: str = "1x16,1x128,8x64"
    throughput_batch: int = 32
    footprint_requests: int = 100
    gate_rounds: int = 20
    texts: Path | None = None
    block: int = 16
    gate_threads: int = 1
    repeats: int = 3


def bench(artifacts: Sequence[str | Path] | Mapping[str, str | Path], *, out: Path | str | None = None,
          plot: bool = True, **options: Any) -> Report:
    """Measure artifacts (and checkpoints, e.g. the PyTorch `baseline`) side by side; return the report.

    `artifacts` are folders, or NAME=PATH strings, or a mapping of name to folder. With `data` (a labelled
    file), quality is scored too. With `out`, report.json, report.md and (with `plot`) the plot are
    written there; an existing folder is reused only if it holds nothing but an earlier report. The other
    options are `BenchOptions`' (threads, latency_texts, rounds, shapes, footprint_requests, ...).
    """
    from runtimes.common.manifest import write_text_atomically
    from toolchain.output import check_report_folder

    if isinstance(artifacts, Mapping):
        artifacts = [f"{name}={path}" for name, path in artifacts.items()]
    fields = {f.name for f in dataclasses.fields(BenchOptions)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"bench() got unknown option(s): {', '.join(unknown)}")
    for name in ("data", "texts"):  # paths may come as strings from Python
        if options.get(name) is not None:
            options[name] = Path(options[name])
    opts = BenchOptions(artifacts=[str(a) for a in artifacts], **options)
    folder = None
    if out is not None:  # before measuring: a report is never written over anyone's files, nor into a model's folder
        inputs = [split_name(str(spec))[1] for spec in [*opts.artifacts, *([opts.baseline] if opts.baseline else [])]]
        folder = check_report_folder(Path(out), (REPORT_NAME, "report.md", PLOT_NAME), "bench report",
                                     [*inputs, *([opts.data] if opts.data else [])])
    report = run_bench(opts)
    if folder is not None:
        written = [report.write(folder), write_text_atomically(folder / "report.md", report_markdown(report))]
        if plot and any(s.primary is not None for s in report.subjects):
            written.append(plot_report(report, folder / PLOT_NAME))
        log.info("wrote %s", ", ".join(str(p) for p in written))
    return report


def _shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        b, _, n = item.lower().partition("x")
        if not (b.isdigit() and n.isdigit() and int(b) > 0 and int(n) > 1):
            raise InputError(f"`shapes`: {item!r} is not BATCHxSEQUENCE (e.g. 1x128)")
        shapes.append((int(b), int(n)))
    return shapes


PLOT_NAME = "quality_vs_latency_size.png"


def run_bench(args: BenchOptions) -> Report:
    """Measure every model; return the report (nothing written)."""
    threads = args.threads or None
    shapes = _shapes(args.shapes)
    for name in ("latency_texts", "rounds", "passes", "throughput_batch", "block"):
        if getattr(args, name) < 1:
            raise InputError(f"`{name}` must be at least 1")
    specs = ([args.baseline] if args.baseline else []) + [p for p in args.artifacts if p != args.baseline]
    subjects = [open_subject(spec, threads, args.backend) for spec in specs]
    _unique_names(subjects)
    tasks = {s.task for s in subjects}
    if len(tasks) != 1:
        raise InputError(f"the models do not share one task: {', '.join(sorted(t.value for t in tasks))}")
    task = tasks.pop()
    base = subjects[0]
    data = load_labelled(args.data, task, base.labels) if args.data else None
    if data is not None and args.quality_limit:
        data = data.head(args.quality_limit)
    requests = data.requests[: args.latency_texts] if data else workload.requests_for(task, workload.BUILTIN_TEXTS)
    results = {s.name: {} for s in subjects}

    if data is not None:
        with progress_bar() as bar:
            t = bar.add_task("quality", total=len(subjects), info=f"{len(data.requests)} examples")
            for s in subjects:
                results[s.name]["quality"] = score(s, data)
                results[s.name]["quality_examples"] = len(data.requests)
                bar.advance(t)

    passes = args.passes
    e2e = measure_runners("batch-1 e2e", {s.name: s.end_to_end() for s in subjects},
                          split_blocks(requests, args.rounds), args.warmup, passes)
    feeds = {s.name: [s.encode(r) for r in requests] for s in subjects}
    network = {s.name: s.network() for s in subjects}
    bare = measure_runners("batch-1 network", {n: _indexed(r, feeds[n]) for n, r in network.items()},
                    split_blocks(list(range(len(requests))), args.rounds), args.warmup, passes)
    shape_results = {s.name: [] for s in subjects}
    # each model's own token ids for the same text: a trimmed vocabulary numbers its tokens differently
    seed_ids = {s.name: feeds[s.name][0]["input_ids"][0].tolist() for s in subjects}
    window = min(s.window for s in subjects)
    too_long = [f"{b}x{n}" for b, n in shapes if n > window]
    if too_long:
        log.warning("shapes %s skipped: longer than the shortest window among the models (%d tokens)",
                    ", ".join(too_long), window)
    shapes = [(b, n) for b, n in shapes if n <= window]
    for batch, seq in shapes:
        shaped = {s.name: fixed_feeds(s.input_names, batch, seq, seed_ids[s.name]) for s in subjects}
        # One input called `calls` times per round: its fastest call per round is the round's cost.
        calls = max(3, 32 // batch)
        stats = measure_runners(f"{batch}x{seq} network", {n: _fixed(r, shaped[n]) for n, r in network.items()},
                         [[0]] * args.rounds, 1, calls)
        for name, st in stats.items():
            shape_results[name].append(ShapeLatency(batch=batch, sequence=seq, latency=st))
    tb = args.throughput_batch
    chunks = [requests[i:i + tb] for i in range(0, len(requests) - tb + 1, tb)] or [requests]
    tput = measure_runners(f"batch-{tb} e2e", {s.name: s.batched(tb) for s in subjects},
                    split_blocks(chunks, min(args.rounds, len(chunks))), 1, passes)

    footprints = {}
    if args.footprint_requests:
        served = requests[: args.footprint_requests]
        with progress_bar() as bar:
            t = bar.add_task("fresh process", total=len(subjects), info=f"{len(served)} requests")
            for s in subjects:
                footprints[s.name] = _footprint(s, served, threads)
                bar.advance(t)

    gate_refs = {}
    if args.gate_rounds:
        gate_requests = workload.requests_for(task, workload.load_texts(args.texts))[: args.block]
        with progress_bar() as bar:
            artifacts = [s for s in subjects if s.kind == "artifact"]
            t = bar.add_task("gate samples", total=2 * args.gate_rounds * len(artifacts), info="model vs reference")
            for s in artifacts:
                gate_threads = args.gate_threads or None
                pipe = s.pipe if gate_threads == threads else load(s.path, backend=s.pipe.backend,
                                                                    threads=gate_threads, batch_size=1)
                gate_refs[s.name], _ = reference_samples(pipe, gate_requests, args.gate_rounds, gate_threads,
                                                         args.repeats, on_block=lambda *_: bar.advance(t))

    records = []
    for s in subjects:
        r = results[s.name]
        tp = tput.get(s.name)
        records.append(Subject(
            name=s.name, kind=s.kind, path=str(s.path), task=task.value, backend=s.backend, size_mb=s.size_mb(),
            int8_target=s.pipe.manifest.cpu.int8_target if s.kind == "artifact" else None,
            quality=r.get("quality", {}), quality_examples=r.get("quality_examples", 0),
            latency=e2e.get(s.name), model_latency=bare[s.name], shapes=shape_results[s.name],
            throughput=Throughput(batch=len(chunks[0]), items_per_s=len(chunks[0]) / (tp.cost_ms / 1e3), latency=tp)
            if tp else None,
            footprint=footprints.get(s.name), gate_reference=gate_refs.get(s.name)))
    from toolchain import __version__

    settings = Settings(threads=threads, latency_texts=len(requests), rounds=args.rounds, passes=passes,
                        warmup=args.warmup,
                        shapes=shapes, throughput_batch=tb, footprint_requests=args.footprint_requests,
                        data=data.path if data else None, data_sha256=data.sha256 if data else None)
    return Report(created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  tool_version=__version__, machine=Machine.of(machine_info(threads)), settings=settings,
                  baseline=base.name, subjects=records)


def _indexed(run, feeds):
    return lambda i: run(feeds[i])


def _fixed(run, feeds):
    return lambda _i: run(feeds)


def measure_runners(label: str, runners: dict, blocks: list, warmup: int, passes: int) -> dict[str, Latency]:
    """Time the runners in turns, each block gone through `passes` times; per-call percentiles plus
    `best_ms`, the mean over the inputs of each input's fastest call (see `Latency`)."""
    if not runners:
        return {}
    timed = [list(b) * passes for b in blocks]
    inputs = sum(len(b) for b in blocks)
    with progress_bar() as bar:
        t = bar.add_task(label, total=sum(len(b) for b in timed) * len(runners), info=", ".join(runners))
        times = time_interleaved(runners, timed, warmup=warmup, on_block=lambda _n, k: bar.advance(t, k))
    return {name: Latency.of(bt.stats(), best_ms=sum(workload_cost(calls, len(block))
                                                      for calls, block in zip(bt.blocks, blocks)) / inputs)
            for name, bt in times.items()}


def _footprint(subject, requests, threads) -> Footprint | None:
    if subject.kind == "artifact":
        fp = runtime_footprint(subject.path, requests, threads, backend=subject.pipe.backend)
    else:
        try:
            fp = checkpoint_footprint(subject.path, requests, threads, subject.task)
        except InputError as exc:
            log.warning("%s: no fresh-process figures: %s", subject.name, exc)
            return None
    first = next((p.seconds for p in fp.phases if p.phase == "first prediction"), None)
    return Footprint(requests=fp.requests, wall_s=fp.wall_s, first_prediction_s=first, peak_rss_mb=fp.peak_rss_mb,
                     phases=[Phase(phase=p.phase, seconds=p.seconds, rss_mb=p.rss_mb) for p in fp.phases])


def _unique_names(subjects) -> None:
    seen: dict[str, int] = {}
    for s in subjects:
        if s.name in seen:
            seen[s.name] += 1
            s.name = f"{s.name} ({seen[s.name]})"
        else:
            seen[s.name] = 1
