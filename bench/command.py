"""What every bench subcommand shares: one-line errors with exit code 2, logging set up by the CLI only."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import NoReturn

from bench.progress import interactive
from runtimes.common.cli_boundary import ExitCodes, run_boundary
from runtimes.common.errors import EdgeError

EXIT_USAGE, EXIT_INTERNAL = 2, 3


class UsageError(EdgeError):
    """A bad command line: reported as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line on stderr (its usage stays on --help)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if (verbose or interactive()) else logging.WARNING,
                        format="%(message)s", force=True)


def run_command(prog: str, body: Callable[[], int], verbose: bool) -> int:
    """Run `body` inside the shared boundary: an expected error is `prog: error: ...` and exit 2, a bug
    `prog: internal error: ...` and exit 3 (1 means a regression or a missed budget here)."""
    return run_boundary(prog, body, verbose, ExitCodes(internal=EXIT_INTERNAL))


def parse(parser: Parser, argv: list[str] | None) -> argparse.Namespace | int:
    """Parse, or return the exit code when parsing already answered (--help: 0, bad input: 2)."""
    try:
        return parser.parse_args(argv)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help prints and exits 0
        return int(exc.code or 0)
