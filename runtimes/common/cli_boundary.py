"""What every command of ours shares (`optimise`, `optimise search`, `optimise bench`, `optimise gate`,
`optimise serve`): the argument parser, the exit codes, and the error boundary that gives one line on
stderr and a documented exit code for whatever goes wrong, a traceback only with -v.

Exit codes, the same for every command: 0 done; 1 the command's finding (a latency regression, nothing
within the accuracy budget); 2 bad input; 3 internal error (our bug); 130 interrupted; 143 terminated.

- an expected error (`EdgeError`: bad input, a broken checkpoint, a missing backend) -> `expected` (2);
- the machine refusing (disk full, no permission, read-only, too many open files) -> `expected` too, with
  the system's own words: nothing in our code to fix;
- Ctrl-C -> 130; SIGTERM / SIGHUP -> 143 (raised as `Terminated` in the main thread, so that work folders
  are removed on the way out exactly as for Ctrl-C);
- anything else is our bug -> `internal`, named with its type.
"""

from __future__ import annotations

import argparse
import errno
import logging
import re
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from runtimes.common.errors import EdgeError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FINDING, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


class UsageError(EdgeError):
    """A bad command line: reported as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line on stderr (its usage stays on --help)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """Parse, or return the exit code when parsing already answered (--help: 0, bad input: 2)."""
    try:
        return parser.parse_args(argv)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SystemExit as exc:  # --help and --version print and exit 0
        return int(exc.code or 0)


def option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Parameter name -> the option that sets it (`eval_data` -> `--eval-data`), for `speak_options`."""
    names: dict[str, str] = {}
    for action in parser._actions:  # argparse has no public accessor for its actions
        if isinstance(action, argparse._SubParsersAction):  # every subcommand's options too
            for sub in action.choices.values():
                names.update(option_names(sub))
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and action.dest != "help":
            names[action.dest] = longs[0]
        elif not action.option_strings:
            metavar = action.metavar if isinstance(action.metavar, str) else None  # a tuple names nargs parts
            names.setdefault(action.dest, metavar or action.dest.upper())
    return names


def speak_options(message: str, options: Mapping[str, str]) -> str:
    """The library names parameters in backticks (`max_length`); a command line says --max-length instead."""
    return re.sub(r"`(\w+)`", lambda m: options.get(m.group(1), m.group(0)), message)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived. A BaseException, so that only the boundary catches it, like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class ExitCodes:
    expected: int = EXIT_BAD_INPUT
    internal: int = EXIT_INTERNAL
    interrupted: int = EXIT_INTERRUPTED
    terminated: int = EXIT_TERMINATED


ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                                errno.ENAMETOOLONG, errno.EFBIG, errno.EMFILE, errno.ENFILE})


def one_line(exc: BaseException) -> str:
    """The message's lines joined, so the error stays one line (parity failures list several)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def run_boundary(prog: str, body: Callable[[], int], verbose: bool, codes: ExitCodes = ExitCodes(),
                 on_stop: Callable[[BaseException], str] | None = None, handle_signals: bool = True,
                 options: Mapping[str, str] | None = None) -> int:
    """Run `body` and return its exit code, or the boundary's for what it raised (see the module).

    `options` (from `option_names`) turns the parameter names in an error message into the command's options.

    `on_stop(exc)` says what an interrupted run left behind ("nothing was written ..."). With
    `handle_signals`, SIGTERM and SIGHUP unwind like Ctrl-C while `body` runs (main thread only).
    """
    previous = _catch_termination() if handle_signals else {}
    try:
        return body()
    except EdgeError as exc:
        if verbose:
            log.exception("failed")
        print(f"{prog}: error: {speak_options(one_line(exc), options or {})}", file=sys.stderr)
        return codes.expected
    except (KeyboardInterrupt, Terminated) as exc:
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped by {exc}"
        print(f"{prog}: {what}" + (f"; {on_stop(exc)}" if on_stop else ""), file=sys.stderr)
        return codes.interrupted if isinstance(exc, KeyboardInterrupt) else codes.terminated
    except OSError as exc:
        if verbose:
            raise
        if exc.errno in ENVIRONMENT_ERRNOS:
            print(f"{prog}: error: {exc.strerror}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
            return codes.expected
        return _internal(prog, exc, codes)
    except Exception as exc:
        if verbose:
            raise
        return _internal(prog, exc, codes)
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _internal(prog: str, exc: Exception, codes: ExitCodes) -> int:
    print(f"{prog}: internal error: {type(exc).__name__}: {one_line(exc)} (rerun with -v for the traceback)",
          file=sys.stderr)
    return codes.internal


def _catch_termination() -> dict:
    previous = {}
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            try:
                previous[signum] = signal.signal(signum, _raise_terminated)
            except ValueError:  # not the main thread: leave the host's handlers alone
                break
    return previous


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)
