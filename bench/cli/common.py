"""What every `optimise` subcommand shares: the one parser class, logging set up here (never by the
library), and the error boundary with the documented exit codes (runtimes.common.cli_boundary)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable

from bench.progress import interactive
from runtimes.common.cli_boundary import (
    EXIT_BAD_INPUT,
    EXIT_FINDING,
    EXIT_INTERNAL,
    EXIT_OK,
    Parser,
    UsageError,
    option_names,
    parse,
    run_boundary,
    speak_options,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FINDING", "EXIT_INTERNAL", "EXIT_OK", "Parser", "UsageError",
           "configure_logging", "parse", "run_cli", "run_command"]


def configure_logging(verbose: bool, narrate: Iterable[str] = ()) -> None:
    """INFO on a terminal (or with -v), WARNING in CI logs; the loggers in `narrate` tell their story at
    INFO everywhere (a long search's progress lines belong in a CI log too)."""
    logging.basicConfig(level=logging.INFO if (verbose or interactive()) else logging.WARNING,
                        format="%(message)s", force=True)
    for name in ("toolchain", "runtimes", "bench"):  # what an earlier command in this process set is not ours
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name in narrate:
        logging.getLogger(name).setLevel(logging.INFO)


class _SpeakOptions(logging.Filter):
    """Log lines name the library's parameters (`test_data`); on a command line they read --test-data."""

    def __init__(self, options: dict[str, str]):
        super().__init__()
        self.options = options

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "`" in message:
            record.msg, record.args = speak_options(message, self.options), ()
        return True


def run_command(parser: argparse.ArgumentParser, body: Callable[[], int], verbose: bool,
                on_stop: Callable[[BaseException], str] | None = None) -> int:
    """Run `body` inside the shared boundary: an expected error is `prog: error: ...` (its parameter names
    spelled as this command's options, in log lines too) and exit 2, a bug `prog: internal error: ...`, exit 3."""
    options = option_names(parser)
    speaker = _SpeakOptions(options)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(speaker)
    try:
        return run_boundary(parser.prog, body, verbose, on_stop=on_stop, options=options)
    finally:
        for handler in handlers:
            handler.removeFilter(speaker)


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None, body: Callable[[argparse.Namespace], int],
            narrate: Iterable[str] = (), on_stop: Callable[[BaseException], str] | None = None) -> int:
    """A subcommand's whole `main`: parse (--help: 0, a usage error: 2), set up logging, run `body(args)`
    inside the boundary."""
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    configure_logging(args.verbose, narrate)
    return run_command(parser, lambda: body(args), args.verbose, on_stop)
