"""The search's report: search.json (every candidate, peer and setting), search.md and search.png."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bench.search.measure import window_label

log = logging.getLogger(__name__)


# what a search report folder holds: an earlier report is the only thing the next search may replace there
SEARCH_REPORT_FILES = ("search.md", "search.json", "search.png", "test-bench")


def write_search_report(summary: dict[str, Any], folder: Path) -> list[Path]:
    """Write the three files (the plot only when something was measured); return their paths."""
    from runtimes.common.manifest import write_text_atomically

    folder.mkdir(parents=True, exist_ok=True)
    paths = [write_text_atomically(folder / "search.md", search_markdown(summary)),
             write_text_atomically(folder / "search.json", json.dumps(summary, indent=2, default=str) + "\n")]
    measured = [r for r in summary["candidates"] + summary["peers"] if r.get("speedup")]
    if measured:
        paths.insert(1, plot_search(summary, folder / "search.png"))
    return paths


def _num(value: Any, fmt: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{fmt}}{suffix}"


def search_markdown(summary: dict[str, Any]) -> str:
    chosen = summary.get("chosen") or {}
    lines = [
        f"# optimise search: {summary['task']} on {summary['target']}",
        "",
        f"Checkpoint `{summary['checkpoint']}`; budget {summary['budget_points']:.2f} points "
        f"(`--max-accuracy-drop {summary['max_accuracy_drop']}`) below the PyTorch model's "
        f"{100 * summary['baseline_quality']:.2f} on {summary['validation_examples']} validation examples, "
        f"checked on the drop's upper bound at {summary['confidence']:.0%} confidence (paired bootstrap); "
        f"windows tried: {', '.join(window_label(*w) for w in summary['windows'])} tokens; search took "
        f"{summary.get('search_s', 0) / 60:.1f} min.",
        "",
    ]
    students = summary.get("students_data")
    if students:
        transfer = (f" and {students['transfer_examples']} transfer texts" if students.get("transfer_examples")
                    else "")
        lines += [f"Students learnt from {students['train_examples']} training examples{transfer} (and the teacher's "
                  f"labels on their augmented copies) and stopped training on {students['early_stopping']}; the "
                  "validation examples only chose.", ""]
    cpu = summary.get("cpu")
    if cpu:
        machine = summary.get("machine_cpu", "this machine")
        verdict = ("." if cpu["measured_on_target"] else ": **not the target's instruction set: the speed-ups say "
                   "how the candidates run here, not there**.")
        lines += [f"Int8 made for cpu:{cpu['int8_target']}; latencies measured on {machine} "
                  f"(cpu:{cpu['measured_on']}){verdict}", ""]
    if summary.get("message"):
        lines += [f"**{summary['message']}.**", ""]
    if chosen:
        spin = {None: "default spinning", True: "spinning", False: "no spinning"}[chosen.get("spinning")]
        lines += [f"**Chosen: {chosen['name']}** at a {window_label(chosen['window'], chosen['truncation'])}-token "
                  f"window, {chosen['threads']} "
                  f"thread(s), {spin}: written to `{chosen['artifact']}` (the window and settings are in its "
                  "manifest and are `runtimes.load`'s defaults for it).", ""]
    lines += ["Validation figures (what the search chose on); speed-up is batch-1 end to end against PyTorch fp32, "
              f"timed in turns with it, {summary['threads']} thread(s).", "",
              "| candidate | status | quality | drop (points) | drop bound | window | speed-up | size MB | build s "
              "| notes |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary["candidates"] + summary["peers"]:
        status = ("peer" if r.get("peer") and r["status"] == "measured" else r["status"])
        name = f"**{r['name']}**" if chosen and r["name"] == chosen.get("name") else r["name"]
        notes = r.get("reason") or ""
        others = [w for w in r.get("windows", [])
                  if (w["window"], w.get("truncation")) != (r.get("window"), r.get("truncation"))]
        if others:
            notes = (notes + "; " if notes else "") + "; ".join(
                f"at {window_label(w['window'], w['truncation'])} tokens {100 * w['quality']:.2f} "
                f"({w['drop']:+.2f}, bound {w['drop_bound']:+.2f}), "
                f"{w['speedup']:.2f}x"
                for w in others)
        if r.get("cached_steps"):
            notes = (notes + "; " if notes else "") + "cached: " + ", ".join(r["cached_steps"])
        notes = " ".join(notes.replace("|", "/").split())  # one table row, whatever the reason's lines
        lines.append(f"| {name} | {status} | {_num(r.get('quality') and 100 * r['quality'], '.2f')} | "
                     f"{_num(r.get('drop'), '+.2f')} | {_num(r.get('drop_bound'), '+.2f')} | "
                     f"{window_label(r['window'], r.get('truncation', 'head')) if r.get('window') else ''} | "
                     f"{_num(r.get('speedup'), '.2f', 'x')} | "
                     f"{_num(r.get('size_mb'), '.1f')} | {_num(r.get('build_s'), '.0f')} | {notes} |")
    if summary.get("settings"):
        lines += ["", "Runtime settings of the finalists, timed side by side (batch-1 e2e, mean of each text's fastest "
                  "call):", "", "| finalist | threads | spinning | ms |", "| --- | --- | --- | --- |"]
        for s in summary["settings"]:
            spin = {None: "default", True: "on", False: "off"}[s["spinning"]]
            lines.append(f"| {s['name']} | {s['threads']} | {spin} | {s['latency_ms']:.2f} |")
    test = summary.get("test")
    if test:
        level = f"{test.get('confidence', summary['confidence']):.0%}"
        lines += ["", f"Test split ({test['examples']} examples), scored once after the choice; every model timed in "
                  f"turns in one run with the search's {summary['threads'] or 'default'} thread(s), so the speed-ups "
                  f"compare models, not settings (full report: `{test['report']}`). The drop's interval is a {level} "
                  "paired bootstrap; *outside the model* is batch-1 end-to-end time less the network's own "
                  "(tokenising, padding, post-processing):", "",
                  f"| model | quality | drop (points) | {level} interval | e2e speed-up | model speed-up | e2e ms "
                  "| outside the model ms | size MB | smaller |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in test["rows"]:
            interval = r.get("drop_interval")
            outside = r["e2e_ms"] - r["model_ms"] if r.get("e2e_ms") is not None and r.get("model_ms") else None
            lines.append(f"| {r['name']} | {_num(r['quality'] and 100 * r['quality'], '.2f')} | "
                         f"{_num(r['drop'], '+.2f')} | "
                         f"{f'{interval[0]:+.2f} to {interval[1]:+.2f}' if interval else ''} | "
                         f"{_num(r['e2e_speedup'], '.2f', 'x')} | {_num(r['model_speedup'], '.2f', 'x')} | "
                         f"{_num(r.get('e2e_ms'), '.2f')} | {_num(outside, '.2f')} | "
                         f"{r['size_mb']:.1f} | {r['smaller']:.2f}x |")
    return "\n".join(lines) + "\n"


def plot_search(summary: dict[str, Any], path: Path) -> Path:
    """Validation quality against speed-up: candidates, peers, the Pareto front and the budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.report.plot import pareto_front

    rows = [r for r in summary["candidates"] if r.get("speedup")]
    peers = [r for r in summary["peers"] if r.get("speedup")]
    fig, ax = plt.subplots(figsize=(10, 6))
    points = [(-r["speedup"], 100 * r["quality"]) for r in rows]  # pareto_front prefers small x
    front = sorted(pareto_front(points), key=lambda i: -points[i][0]) if points else []
    chosen = (summary.get("chosen") or {}).get("name")
    for i, r in enumerate(rows):
        colour = {"passed": "tab:green", "missed": "tab:gray"}.get(r["status"], "tab:gray")
        ax.scatter(r["speedup"], 100 * r["quality"], s=140 if r["name"] == chosen else 50,
                   marker="*" if r["name"] == chosen else "o", color=colour, zorder=3)
        ax.annotate(r["name"], (r["speedup"], 100 * r["quality"]), textcoords="offset points",
                    xytext=(6, 8 if i % 2 else -12), fontsize=7)
    for r in peers:
        ax.scatter(r["speedup"], 100 * r["quality"], marker="s", color="tab:blue", s=60, zorder=3)
        ax.annotate(r["name"], (r["speedup"], 100 * r["quality"]), textcoords="offset points", xytext=(6, -14),
                    fontsize=7, color="tab:blue")
    if front:
        ax.plot([rows[i]["speedup"] for i in front], [100 * rows[i]["quality"] for i in front], color="tab:red",
                alpha=0.6, label="Pareto front")
    base = 100 * summary["baseline_quality"]
    ax.axhline(base, color="black", lw=0.8, ls=":", label=f"PyTorch fp32 {base:.2f}")
    ax.axhline(base - summary["budget_points"], color="tab:red", lw=1, ls="--",
               label=f"budget: {summary['budget_points']:.2f} points")
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 end-to-end speed-up over PyTorch fp32 (validation texts, timed in turns)")
    ax.set_ylabel(f"validation quality ({summary['validation_examples']} examples)")
    ax.set_title("optimise search: green passed, gray missed, blue squares are peers, the star is chosen")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
