"""Progress bars on a terminal; in CI or when output is piped, a plain line at each tenth of a task."""

from __future__ import annotations

import os
import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


class _Progress(Progress):
    """A rich bar where it can show. Where it cannot (an hour-long fine-tune under nohup, or a CI log),
    a task that has run for a while reports a line on stderr as it passes each tenth of its total,
    at most one line every `every` seconds of the task's own clock; short tasks stay silent."""

    def __init__(self, *columns, every: float = 30.0, **kwargs):
        super().__init__(*columns, **kwargs)
        self._every = every
        self._reported: dict[TaskID, tuple[int, float]] = {}  # task -> (last tenth reported, its elapsed s)

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        if self.disable:
            self._report(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self.disable:
            self._report(task_id)

    def _report(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        elapsed = task.elapsed
        if not task.total or elapsed is None:
            return
        tenth = min(10, int(10 * task.completed / task.total))
        reported, when = self._reported.get(task_id, (0, 0.0))
        if tenth <= reported or elapsed - when < self._every:
            return
        self._reported[task_id] = (tenth, elapsed)
        left = elapsed * (task.total - task.completed) / max(task.completed, 1e-9)
        info = task.fields.get("info") or ""
        print(f"{task.description}: {task.completed:.0f}/{task.total:.0f} ({10 * tenth}%), "
              f"{elapsed:.0f} s so far, about {left:.0f} s left{'; ' + info if info else ''}",
              file=sys.stderr, flush=True)


def progress_bar() -> Progress:
    return _Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"), disable=not interactive(), transient=False,
    )
