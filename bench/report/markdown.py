"""`report.md`: the report as tables a person reads, with every figure's ratio against the baseline."""

from __future__ import annotations

from bench.report.schema import PRIMARY_METRIC, Report, Subject
from runtimes.common.cpu import same_int8_class


def _ratio(base: float | None, value: float | None, invert: bool = False) -> str:
    """'2.31x': how many times faster / smaller / more than the baseline (invert for 'lower is better')."""
    if base is None or value is None or value == 0 or base == 0:
        return "-"
    return f"{(base / value) if invert else (value / base):.2f}x"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _p50(s: Subject, attr: str) -> float | None:
    stats = getattr(s, attr)
    return None if stats is None else stats.p50_ms


def _cost(s: Subject, attr: str) -> float | None:
    stats = getattr(s, attr)
    return None if stats is None else stats.cost_ms


def report_markdown(report: Report) -> str:
    """The quality / speed table, the fixed-shape and footprint tables, and the machine."""
    base = report.subject(report.baseline)
    task = base.task
    metric = PRIMARY_METRIC.get(task, "quality")
    st = report.settings
    lines = [f"# Benchmark: {len(report.subjects)} models, baseline `{base.name}`", ""]
    lines += [f"| model | {metric} | drop (points) | e2e p50 ms | p90 | p99 | IQR | e2e speed-up | model p50 ms | "
              f"model speed-up | throughput/s (batch {st.throughput_batch}) | vs baseline | size MB | smaller |",
              "| --- |" + " --- |" * 13]
    for s in report.subjects:
        q, bq = s.primary, base.primary
        drop = None if q is None or bq is None else 100 * (bq - q)  # every metric is a fraction
        tp = s.throughput.items_per_s if s.throughput else None
        btp = base.throughput.items_per_s if base.throughput else None
        lat = s.latency
        name = f"**{s.name}** (baseline)" if s.name == base.name else s.name
        lines.append(
            f"| {name} | {_num(q, '.4f')} | {_num(drop, '+.2f')} | {_num(_p50(s, 'latency'), '.2f')} | "
            f"{_num(lat and lat.p90_ms, '.2f')} | {_num(lat and lat.p99_ms, '.2f')} | "
            f"{_num(lat and lat.iqr_ms, '.2f')} | "
            f"{_ratio(_cost(base, 'latency'), _cost(s, 'latency'), invert=True)} | "
            f"{_num(_p50(s, 'model_latency'), '.2f')} | "
            f"{_ratio(_cost(base, 'model_latency'), _cost(s, 'model_latency'), invert=True)} | "
            f"{_num(tp, '.0f')} | {_ratio(btp, tp)} | {s.size_mb:.1f} | "
            f"{_ratio(base.size_mb, s.size_mb, invert=True)} |")
    here = report.machine.int8_isa
    made_for = [f"`{s.name}` cpu:{s.int8_target}" + ("" if not here or same_int8_class(s.int8_target, here)
                                                      else " (**not this machine's class: its speed here is not "
                                                           "the target's**)")
                for s in report.subjects if s.int8_target]
    if made_for:
        lines += ["", f"Int8 made for: {'; '.join(made_for)}. This machine: cpu:{here or 'unknown'}."]
    extra = sorted({k for s in report.subjects for k in s.quality} - {metric})
    if extra:
        lines += ["", "| model | " + " | ".join(extra) + " |", "| --- |" + " --- |" * len(extra)]
        lines += [f"| {s.name} | " + " | ".join(_num(s.quality.get(k), ".4f") for k in extra) + " |"
                  for s in report.subjects]
    if any(s.shapes for s in report.subjects):
        shapes = [(x.batch, x.sequence) for x in next(s for s in report.subjects if s.shapes).shapes]
        lines += ["", "Network alone on fixed shapes, p50 ms (speed-up against the baseline):", "",
                  "| model | " + " | ".join(f"{b} x {n}" for b, n in shapes) + " |", "| --- |" + " --- |" * len(shapes)]
        base_shapes = {(x.batch, x.sequence): x.latency.cost_ms for x in base.shapes}
        for s in report.subjects:
            p50 = {(x.batch, x.sequence): x.latency.p50_ms for x in s.shapes}
            cost = {(x.batch, x.sequence): x.latency.cost_ms for x in s.shapes}
            lines.append(f"| {s.name} | " + " | ".join(
                f"{_num(p50.get(k), '.2f')} ({_ratio(base_shapes.get(k), cost.get(k), invert=True)})"
                for k in shapes) + " |")
    if any(s.footprint for s in report.subjects):
        lines += ["", f"Fresh process: import, load, first prediction, then {st.footprint_requests} requests in all "
                  "(imports included):", "",
                  "| model | first prediction s | spawn to exit s | peak RSS MB | vs baseline |",
                  "| --- |" + " --- |" * 4]
        bf = base.footprint
        for s in report.subjects:
            f = s.footprint
            if f is None:
                lines.append(f"| {s.name} | - | - | - | - |")
                continue
            lines.append(f"| {s.name} | {_num(f.first_prediction_s, '.2f')} | {f.wall_s:.2f} | {f.peak_rss_mb:.0f} | "
                         f"{_ratio(bf.peak_rss_mb if bf else None, f.peak_rss_mb, invert=True)} smaller |")
    lines += ["", f"Batch-1 latency over {st.latency_texts} texts, {st.rounds} rounds in which every model takes its "
              f"turn on the same block, going through it {st.passes} time(s) (warm-up {st.warmup} calls per block), "
              f"{_threads(st.threads)}. e2e = tokenise + model + decode; model = the network alone on the same token "
              "ids. Milliseconds are per-call percentiles as an app sees them on this machine, disturbances "
              "included; speed-ups compare what the computation costs: each input's fastest call (each shape's "
              "fastest call per round), measured in one process. Compare ratios, not milliseconds across runs.",
              f"Quality on {base.quality_examples} labelled examples" + (f" from `{st.data}`" if st.data else "") + ".",
              "", f"Machine: {report.machine.summary()}.", f"Created {report.created} by edge-toolchain "
              f"{report.tool_version}; report schema {report.schema_version}.", ""]
    return "\n".join(lines)


def _threads(threads: int | None) -> str:
    return "backend's default threads" if threads is None else f"{threads} thread" + ("s" if threads > 1 else "")
