"""Progress bars that show on a terminal and stay silent in CI or when output is piped."""

from __future__ import annotations

import os
import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"), disable=not interactive(), transient=False,
    )
