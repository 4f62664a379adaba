"""Accuracy against latency and size, with the Pareto front marked (matplotlib, written to PNG)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from bench.report.schema import PRIMARY_METRIC, Report

log = logging.getLogger(__name__)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: cost (x) lower is better, quality (y) higher is better.

    A point is dominated when another is at least as good on both axes and strictly better on one.
    Ties (identical points) are all kept. Returned in order of increasing cost.
    """
    front = []
    for i, (cost, quality) in enumerate(points):
        dominated = any(c <= cost and q >= quality and (c < cost or q > quality)
                        for j, (c, q) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def plot_report(report: Report, path: Path) -> Path:
    """Two panels, quality against e2e p50 latency and against size; the Pareto front joined by a line."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window, never need a display
    import matplotlib.pyplot as plt

    base = report.subject(report.baseline)
    metric = PRIMARY_METRIC.get(base.task, "quality")
    subjects = [s for s in report.subjects if s.primary is not None]
    if not subjects:
        raise ValueError("no subject has a quality figure to plot; pass labelled `data`")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    panels = (("latency", "batch-1 end-to-end p50 latency (ms)"), ("size_mb", "model size (MB)"))
    for ax, (attr, label) in zip(axes, panels):
        rows = [(s, s.latency.p50_ms if attr == "latency" else s.size_mb) for s in subjects
                if attr != "latency" or s.latency is not None]
        points = [(x, s.primary) for s, x in rows]
        front = set(pareto_front(points))
        for i, (s, x) in enumerate(rows):
            on = i in front
            ax.scatter(x, s.primary, s=70 if on else 40, marker="o" if on else "x",
                       color="tab:red" if on else "tab:gray", zorder=3)
        # One label per spot (models of the same size and quality share it), alternating above and
        # below so that neighbours do not overwrite each other.
        for rank, (x, y, names) in enumerate(_label_groups(rows, base.name)):
            ax.annotate(", ".join(names), (x, y), textcoords="offset points",
                        xytext=(6, 8 if rank % 2 == 0 else -12), fontsize=8)
        ordered = sorted(front, key=lambda i: points[i][0])
        ax.step([points[i][0] for i in ordered], [points[i][1] for i in ordered], where="post",
                color="tab:red", alpha=0.6, label="Pareto front")
        xs = [x for x, _ in points]
        if min(xs) > 0 and max(xs) / min(xs) > 5:  # PyTorch against int8 spans orders of magnitude
            ax.set_xscale("log")
        ax.margins(x=0.3, y=0.25)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[0].set_ylabel(f"{metric} ({base.quality_examples} examples)")
    fig.suptitle(f"{metric} against speed and size; lower-left is cheaper, higher is better")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)
    return path


def _label_groups(rows, baseline: str) -> list[tuple[float, float, list[str]]]:
    """Points within 1% on x and equal on y, merged into one label; sorted by x."""
    groups: list[tuple[float, float, list[str]]] = []
    for s, x in sorted(rows, key=lambda r: r[1]):
        name = s.name + (" (baseline)" if s.name == baseline else "")
        for gx, gy, names in groups:
            if gy == s.primary and abs(gx - x) <= 0.01 * max(abs(gx), 1e-9):
                names.append(name)
                break
        else:
            groups.append((x, s.primary, [name]))
    return groups
