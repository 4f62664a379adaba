"""What a search returns to Python: the chosen artifact, every trial with its figures and reason, the reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Trial:
    """One candidate (or peer) and what the search measured on it.

    `status`: "passed" (within the budget), "missed", "failed" (could not be built or measured) or
    "skipped" (ruled out by a finished one, or the time budget); peers are "measured" or "missing".
    Quality and drops are in points on the validation split; `speedup` is batch-1 end to end against
    PyTorch, timed side by side; `window` is the token window it was scored at.
    """

    name: str
    status: str
    reason: str | None = None
    quality: float | None = None
    drop: float | None = None
    drop_bound: float | None = None
    speedup: float | None = None
    latency_ms: float | None = None
    size_mb: float | None = None
    window: int | None = None
    truncation: str | None = None
    artifact: Path | None = None
    details: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Trial:
        artifact = row.get("artifact")
        return cls(name=row["name"], status=row["status"], reason=row.get("reason"), quality=row.get("quality"),
                   drop=row.get("drop"), drop_bound=row.get("drop_bound"), speedup=row.get("speedup"),
                   latency_ms=row.get("latency_ms"), size_mb=row.get("size_mb"), window=row.get("window"),
                   truncation=row.get("truncation"), artifact=Path(artifact) if artifact else None, details=row)


@dataclass(frozen=True)
class SearchResult:
    """The outcome of `bench.api.search`.

    `chosen` is None when nothing met the budget (`message` names the closest) or for a worker, which
    only runs trials. `report` is search.md (beside it search.json and, when anything was measured,
    the plot search.png); `test` holds the test split's scores when `test_data` was given.
    """

    met_budget: bool
    chosen: Trial | None
    trials: list[Trial]
    peers: list[Trial]
    budget_points: float
    baseline_quality: float
    message: str | None = None
    artifact: Path | None = None
    report: Path | None = None
    report_json: Path | None = None
    plot: Path | None = None
    test: dict[str, Any] | None = None
    worker: bool = False

    @property
    def exit_code(self) -> int:
        """The CLI's code for this outcome: 0 when a candidate met the budget (or a worker finished), 1 if none."""
        return 0 if self.met_budget or self.worker else 1
