"""What the gate writes: a Markdown summary (for a CI job summary) and a JUnit XML test report."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from bench.gate.decision import GatePolicy, Outcome, Verdict
from runtimes.measure import LatencyStats

WEAKER_MODE_NOTE = (
    "Weaker mode: the baseline was measured in another run (a saved report), so machine drift between "
    "the two runs is only corrected by a fixed reference workload timed beside each model; effects that "
    "hit the model and the reference differently (other CPU features, library versions, a noisy neighbour "
    "in one run only) are not. Prefer measuring both artifacts in the same run."
)


@dataclass(frozen=True)
class GateRun:
    """One decision with everything its summary reports."""

    verdict: Verdict
    policy: GatePolicy
    mode: str  # "interleaved" or "saved-report"
    baseline: str
    candidate: str
    block: int  # inputs per block
    repeats: int  # passes over them per block
    threads: int | None
    seconds: float  # wall time of the decision, loading included
    machine: str
    baseline_latency: LatencyStats | None = None  # per call (interleaved mode only)
    candidate_latency: LatencyStats | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    clock: str = "wall"  # "cpu": CPU time of the process per call; "wall": elapsed time

    @property
    def regressed(self) -> bool:
        """The candidate is slower than the baseline beyond the tolerance."""
        return self.verdict.outcome is not Outcome.PASS

    @property
    def exit_code(self) -> int:
        """The CLI's code: 0 pass, 1 regression."""
        return self.verdict.exit_code

    @property
    def headline(self) -> str:
        v = self.verdict
        word = "PASS" if v.outcome is Outcome.PASS else "REGRESSION"
        sure = "" if v.conclusive else " (not conclusive)"
        return (f"latency gate {word}{sure}: candidate/baseline = {v.ratio:.3f} "
                f"[{v.ci_low:.3f}, {v.ci_high:.3f}], tolerance {self.policy.max_slowdown:.0%}, "
                f"{v.rounds} rounds, {self.seconds:.1f} s")


def markdown_summary(run: GateRun) -> str:
    v, p = run.verdict, run.policy
    icon = "✅" if v.outcome is Outcome.PASS else "❌"
    lines = [f"## {icon} Latency gate: {'pass' if v.outcome is Outcome.PASS else 'regression'}"
             + ("" if v.conclusive else " (not conclusive)"), "",
             f"- candidate: `{run.candidate}`", f"- baseline: `{run.baseline}`"
             + (" (saved report)" if run.mode == "saved-report" else ""), "",
             "| | value |", "| --- | --- |",
             f"| ratio of medians, candidate / baseline | **{v.ratio:.3f}** ({(v.ratio - 1):+.1%}) |",
             f"| {p.confidence:.0%} bootstrap interval | {v.ci_low:.3f} - {v.ci_high:.3f} |",
             f"| Mann-Whitney U, one-sided p (candidate slower) | {v.p_value:.2g} |",
             f"| tolerance | +{p.max_slowdown:.0%} (fail above {v.threshold:.2f}) |",
             f"| rounds x (inputs x passes) per block and side | {v.rounds} x ({run.block} x {run.repeats}) |",
             f"| threads, clock | {run.threads if run.threads else 'backend default'}, "
             f"{'CPU time' if run.clock == 'cpu' else 'wall time'} |",
             f"| time for the decision | {run.seconds:.1f} s |"]
    if run.baseline_latency and run.candidate_latency:
        b, c = run.baseline_latency, run.candidate_latency
        lines += [f"| per-call p50 / p90 ms, baseline | {b.p50_ms:.2f} / {b.p90_ms:.2f} |",
                  f"| per-call p50 / p90 ms, candidate | {c.p50_ms:.2f} / {c.p90_ms:.2f} |"]
    lines += ["", f"Decision: {v.reason}. A sample is one round's workload cost: the sum over the inputs of "
              "each input's fastest call in that round.", ""]
    if run.mode == "interleaved":
        lines += ["Mode: both artifacts measured in this run, taking turns block by block, so machine noise "
                  "hits them alike.", ""]
    else:
        lines += [f"Mode: saved report. **{WEAKER_MODE_NOTE}**", ""]
    lines += [f"> warning: {w}" for w in run.warnings]
    lines += ["", f"Machine: {run.machine}", ""]
    return "\n".join(lines)


def junit_xml(run: GateRun) -> str:
    """One test case; a regression is a <failure> carrying the headline, the summary is its system-out."""
    failed = run.verdict.outcome is Outcome.REGRESSION
    suite = ET.Element("testsuite", name="latency-gate", tests="1", failures=str(int(failed)), errors="0",
                       skipped="0", time=f"{run.seconds:.3f}")
    case = ET.SubElement(suite, "testcase", classname="bench.gate.decision", name=f"{run.candidate} vs {run.baseline}",
                         time=f"{run.seconds:.3f}")
    if failed:
        failure = ET.SubElement(case, "failure", message=run.headline, type="LatencyRegression")
        failure.text = run.verdict.reason
    ET.SubElement(case, "system-out").text = markdown_summary(run)
    root = ET.Element("testsuites", tests="1", failures=str(int(failed)), errors="0", time=f"{run.seconds:.3f}")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
