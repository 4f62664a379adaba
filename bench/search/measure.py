"""How `optimise search` scores a candidate: quality on the validation split at each window, and batch-1
latency end to end, timed in turns with the PyTorch baseline so that every speed-up is a ratio taken
side by side (the machine's load moves both alike). Then the runtime settings of the finalists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from bench.quality import LabelledData, outputs, score_outputs
from bench.report.schema import PRIMARY_METRIC
from bench.subjects import ArtifactSubject
from bench.suite import measure_runners
from runtimes.common.manifest import HEAD_TAIL
from runtimes.measure import split_blocks
from runtimes.measure.quality import paired_drop_bound, paired_drop_interval

log = logging.getLogger(__name__)

STANDARD_WINDOWS = (512, 384, 256, 128, 64, 32)
MIN_TRUNCATED_SHARE = 0.02  # a window that cuts fewer texts than this changes nothing worth timing
WINDOW_GAIN = 1.10  # how much faster a cut window must be than the full one to be chosen over it


@dataclass(frozen=True)
class Timing:
    """How many texts, rounds and passes each side-by-side timing uses, and with how many threads."""

    texts: int = 100
    rounds: int = 5
    passes: int = 2
    threads: int | None = 1


class Window(NamedTuple):
    """A window the search tries: its length in tokens, and which tokens an overlong text keeps."""

    tokens: int
    truncation: str = "head"

    def label(self) -> str:
        return window_label(self.tokens, self.truncation)


def window_label(tokens: int, truncation: str = "head") -> str:
    return f"{tokens}" + ("" if truncation == "head" else f" {truncation}")


@dataclass
class WindowResult:
    window: int
    quality: float  # the task's primary metric on the validation split, 0..1
    drop: float  # points below the baseline (negative: better)
    drop_bound: float  # the drop's upper bound at the search's confidence (paired bootstrap): what must fit
    speedup: float  # baseline e2e cost / this one's, timed side by side
    latency_ms: float  # this one's e2e cost (mean of each text's fastest call)
    truncation: str = "head"  # "head+tail": an overlong text kept its start and its end


@dataclass
class Measured:
    size_mb: float
    windows: list[WindowResult] = field(default_factory=list)

    def best(self, budget: float) -> WindowResult:
        """The fastest window within the budget, but a cut window (shorter, or head+tail) only when it is at
        least `WINDOW_GAIN` times faster than the full one (measured first) that also fits: every window is
        judged on the same validation split, and the more of them are tried, the likelier one looks better
        there than it is. The most accurate window when none fits."""
        passing = [w for w in self.windows if fits(w.drop_bound, budget)]
        if not passing:
            return min(self.windows, key=lambda w: w.drop_bound)
        fastest, full = max(passing, key=lambda w: w.speedup), self.windows[0]
        if fits(full.drop_bound, budget) and fastest.speedup < WINDOW_GAIN * full.speedup:
            return full
        return fastest

    def to_dict(self) -> dict[str, Any]:
        return {"size_mb": self.size_mb, "windows": [asdict(w) for w in self.windows]}


def fits(drop: float, budget: float) -> bool:
    """Within the budget, forgiving float noise (1 - 0.99 is not quite 0.01)."""
    return drop <= budget + 1e-9


def primary(task_value: str, scores: dict[str, float]) -> float:
    return float(scores[PRIMARY_METRIC[task_value]])


def windows_for(token_lengths: list[int], model_window: int, cap: int | None = None,
                head_tail: bool = False) -> list[Window]:
    """The model's window (or `cap`), then shorter standard windows that truncate at least 2% of the
    validation texts (at most three): shorter windows only pay where texts are longer than them.
    With `head_tail` (text classification), every window that truncates that many texts is also tried
    keeping their start and end (long documents often say the most in their last lines)."""
    def cuts(w: int) -> bool:
        return sum(n > w for n in token_lengths) >= MIN_TRUNCATED_SHARE * max(1, len(token_lengths))

    top = min(cap or model_window, model_window)
    lengths = [top, *[w for w in STANDARD_WINDOWS if w < top and cuts(w)][:3]]
    found = []
    for w in lengths:
        found.append(Window(w))
        if head_tail and cuts(w):
            found.append(Window(w, HEAD_TAIL))
    return found


def token_lengths(checkpoint, requests: list[Any]) -> list[int]:
    """Tokens per validation request with the checkpoint's tokenizer, untruncated (QA: question + context)."""
    texts = [r["question"] + " " + r["context"] if isinstance(r, dict) else r for r in requests]
    return [len(ids) for ids in checkpoint.tokenizer(texts, truncation=False)["input_ids"]]


class Baseline:
    """The PyTorch checkpoint: its validation answers and quality, and its e2e runner that every candidate
    is timed against. `confidence` is how sure the search must be that a candidate's drop fits."""

    def __init__(self, subject, data: LabelledData, timing: Timing, confidence: float = 0.9):
        self.subject, self.data, self.timing, self.confidence = subject, data, timing, confidence
        self.outputs = outputs(subject, data)
        self.quality = primary(subject.task.value, score_outputs(data, self.outputs))
        self.requests = data.requests[: timing.texts]
        self.runner = subject.end_to_end()

    def drop_bound(self, answers: list[Any]) -> float:
        """The drop (points) that the candidate stays under with probability `confidence`, by a paired
        bootstrap over the validation examples: both models are scored on the same resampled examples, so
        what they agree on cancels out and only their disagreements carry uncertainty. A 1,000-example
        split moves a point estimate by about a point; the bound keeps a budget from being met by luck."""
        return paired_drop_bound(self._drop_on(answers), len(self.data.requests), self.confidence)

    def drop_interval(self, answers: list[Any]) -> tuple[float, float]:
        """The drop's two-sided interval (points) at `confidence`, from the same paired resamples."""
        return paired_drop_interval(self._drop_on(answers), len(self.data.requests), self.confidence)

    def _drop_on(self, answers: list[Any]):
        task = self.subject.task.value

        def drop_on(rows: list[int]) -> float:
            return 100 * (primary(task, score_outputs(self.data, self.outputs, rows))
                          - primary(task, score_outputs(self.data, answers, rows)))

        return drop_on


def measure_candidate(path: Path, baseline: Baseline, windows: list[Window], backend: str = "auto") -> Measured:
    """Quality and side-by-side speed of an artifact at each window (shorter than its own, never longer)."""
    timing = baseline.timing
    own = _window_of(path)
    measured = None
    for window, truncation in windows:
        subject = ArtifactSubject(path, timing.threads, backend, name="candidate",
                                  max_length=None if window >= own else window, truncation=truncation)
        if measured is None:
            measured = Measured(size_mb=subject.size_mb())
        answers = outputs(subject, baseline.data)
        quality = primary(subject.task.value, score_outputs(baseline.data, answers))
        base_ms, own_ms = _side_by_side(baseline, subject)
        measured.windows.append(WindowResult(window=min(window, own), quality=quality,
                                             drop=100 * (baseline.quality - quality),
                                             drop_bound=baseline.drop_bound(answers), speedup=base_ms / own_ms,
                                             latency_ms=own_ms, truncation=truncation))
    assert measured is not None
    return measured


def _window_of(path: Path) -> int:
    from runtimes.common.manifest import Manifest

    return Manifest.read(path).max_length


def _side_by_side(baseline: Baseline, subject: ArtifactSubject) -> tuple[float, float]:
    timing = baseline.timing
    runners = {"baseline": baseline.runner, "candidate": subject.end_to_end()}
    stats = measure_runners("side by side", runners, split_blocks(baseline.requests, timing.rounds), warmup=2,
                            passes=timing.passes)
    return stats["baseline"].cost_ms, stats["candidate"].cost_ms


@dataclass(frozen=True)
class Setting:
    threads: int
    spinning: bool | None  # None: the backend's default

    def label(self) -> str:
        spin = "" if self.spinning is None else (", spinning" if self.spinning else ", no spinning")
        return f"{self.threads} thread{'s' if self.threads > 1 else ''}{spin}"


def settings_grid(engine: str) -> list[Setting]:
    """Threads from 1 to the cores this process may use; ONNX Runtime also with and without spinning."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = sorted({1, min(2, cores), cores})
    spins = (None, False) if engine == "onnxruntime" else (None,)
    return [Setting(t, s) for t in threads for s in spins]


def time_settings(finalists: dict[str, tuple[Path, Window, str]], requests: list[Any], timing: Timing
                  ) -> dict[tuple[str, Setting], float]:
    """Every finalist (name -> (artifact, window, engine)) under every setting, all timed in turns."""
    runners, keys = {}, {}
    for name, (path, (window, truncation), engine) in finalists.items():
        own = _window_of(path)
        for setting in settings_grid(engine):
            subject = ArtifactSubject(path, setting.threads, name=name, spinning=setting.spinning,
                                      max_length=None if window >= own else window, truncation=truncation)
            label = f"{name} [{setting.label()}]"
            runners[label] = subject.end_to_end()
            keys[label] = (name, setting)
    stats = measure_runners("runtime settings", runners, split_blocks(requests[: timing.texts], timing.rounds),
                            warmup=2, passes=timing.passes)
    return {keys[label]: st.cost_ms for label, st in stats.items()}
