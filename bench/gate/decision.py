"""The latency gate's decision: is the candidate slower than the baseline beyond a tolerance?

Samples are one value per round and per side: the round's workload cost, the sum over the
block's inputs of each input's fastest call (`runtimes.measure.timing.workload_cost`). Two tests,
as asv and Chromium's Pinpoint combine them:

- a one-sided Mann-Whitney U test says whether the candidate is slower at all (rank based, so a
  few preempted blocks do not move it);
- a bootstrap interval of the ratio of medians (candidate / baseline) says by how much.

The gate passes when the whole interval lies within the tolerance, fails when the whole interval
lies beyond it and the U test agrees, and otherwise asks for more rounds. When the round budget is
spent it decides on the point estimate and says the decision was not conclusive.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)


class Outcome(str, enum.Enum):
    PASS = "pass"
    REGRESSION = "regression"


@dataclass(frozen=True)
class GatePolicy:
    """How sure the gate must be, and how many rounds it may spend getting there."""

    max_slowdown: float = 0.10  # candidate may be this much slower (0.10: 10%)
    alpha: float = 0.01  # Mann-Whitney significance needed to call a regression
    confidence: float = 0.99  # level of the bootstrap interval of the ratio
    min_rounds: int = 10
    step_rounds: int = 10
    max_rounds: int = 60
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.max_slowdown < 10:
            raise ValueError(f"max_slowdown must be a fraction such as 0.10, got {self.max_slowdown}")
        if not 0 < self.alpha < 0.5 or not 0.5 < self.confidence < 1:
            raise ValueError("alpha must be in (0, 0.5) and confidence in (0.5, 1)")
        if not 3 <= self.min_rounds <= self.max_rounds or self.step_rounds < 1:
            raise ValueError("need 3 <= min_rounds <= max_rounds and step_rounds >= 1")

    @property
    def threshold(self) -> float:
        return 1 + self.max_slowdown


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    conclusive: bool  # False: the round budget ran out and the point estimate decided
    ratio: float  # median(candidate) / median(baseline)
    ci_low: float
    ci_high: float
    p_value: float  # one-sided Mann-Whitney U: candidate slower
    rounds: int
    threshold: float
    reason: str

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome is Outcome.PASS else 1

    def to_dict(self) -> dict:
        return {**asdict(self), "outcome": self.outcome.value}


def parse_slowdown(text: str) -> float:
    """'10%' -> 0.10; '0.1' -> 0.10. A bare number above 1 is refused: 10 could mean 10% or 10x."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"`max_slowdown` {text!r} is not a number; write e.g. 10% or 0.10") from None
    if not raw.endswith("%") and value >= 1:
        raise ValueError(f"`max_slowdown` {text!r} is ambiguous; write 10% or 0.10")
    if not 0 < value < 10 or math.isnan(value):
        raise ValueError(f"`max_slowdown` must be above 0%, got {text!r}")
    return value


def slower_p_value(baseline: Sequence[float], candidate: Sequence[float]) -> float:
    """One-sided Mann-Whitney U p-value for 'candidate times are larger than baseline times'."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(candidate, baseline, alternative="greater").pvalue)


def ratio_interval(baseline: Sequence[float], candidate: Sequence[float], confidence: float, paired: bool,
                   resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Ratio of medians (candidate / baseline) and its percentile bootstrap interval.

    `paired=True` resamples whole rounds, keeping each round's baseline and candidate together: a
    round disturbed by another job is then disturbed on both sides, which is why the samples were
    interleaved. Unpaired samples (a saved report against today's run) are resampled separately.
    """
    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least two samples per side")
    if paired and len(a) != len(b):
        raise ValueError(f"paired samples differ in length ({len(a)} vs {len(b)})")
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a), size=(resamples, len(a)))
    ib = ia if paired else rng.integers(0, len(b), size=(resamples, len(b)))
    ratios = np.median(b[ib], axis=1) / np.median(a[ia], axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(np.median(b) / np.median(a)), float(low), float(high)


def decide(baseline: Sequence[float], candidate: Sequence[float], policy: GatePolicy, paired: bool = True) -> Verdict:
    """Judge the samples. An uncertain answer comes back with `conclusive=False`, decided on the
    point estimate: the caller takes more rounds if it still may, or reports it as it is."""
    ratio, low, high = ratio_interval(baseline, candidate, policy.confidence, paired, policy.resamples, policy.seed)
    p = slower_p_value(baseline, candidate)
    t = policy.threshold
    interval = f"ratio {ratio:.3f} ({policy.confidence:.0%} CI {low:.3f}-{high:.3f}), Mann-Whitney p={p:.2g}"
    common = dict(ratio=ratio, ci_low=low, ci_high=high, p_value=p, rounds=len(candidate), threshold=t)
    if high <= t:
        return Verdict(Outcome.PASS, True, reason=f"{interval}: within the {t - 1:.0%} tolerance", **common)
    if low > t and p < policy.alpha:
        return Verdict(Outcome.REGRESSION, True, reason=f"{interval}: slower beyond the {t - 1:.0%} tolerance",
                       **common)
    slower = ratio > t and p < policy.alpha
    outcome = Outcome.REGRESSION if slower else Outcome.PASS
    why = (f"{interval}: the interval straddles the {t - 1:.0%} tolerance; "
           f"decided on the point estimate after {len(candidate)} rounds (not conclusive)")
    return Verdict(outcome, False, reason=why, **common)


# Returns every sample so far (baseline, candidate) after taking `n` more rounds.
Sampler = Callable[[int], tuple[Sequence[float], Sequence[float]]]


def run_sequential(sample: Sampler, policy: GatePolicy, paired: bool = True) -> Verdict:
    """Take `min_rounds`, then `step_rounds` more at a time while the answer is uncertain.

    Uncertain means the interval straddles the tolerance; an identical or clearly slower
    candidate is decided after the first batch, a borderline one spends up to `max_rounds`.
    """
    baseline, candidate = sample(policy.min_rounds)
    while True:
        out_of_budget = len(candidate) + policy.step_rounds > policy.max_rounds
        verdict = decide(baseline, candidate, policy, paired)
        if verdict.conclusive or out_of_budget:
            return verdict
        log.info("gate: uncertain after %d rounds (%s); taking %d more", len(candidate), verdict.reason,
                 policy.step_rounds)
        baseline, candidate = sample(policy.step_rounds)
