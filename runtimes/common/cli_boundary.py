"""The error boundary that every command of ours runs inside (`optimise`, `optimise search`, `optimise bench`,
`optimise gate`, `optimise serve`): one line on stderr and a documented exit code for whatever goes wrong,
a traceback only with -v.

- an expected error (`EdgeError`: bad input, a broken checkpoint, a missing backend) -> `expected` (2);
- the machine refusing (disk full, no permission, read-only, too many open files) -> `expected` too, with
  the system's own words: nothing in our code to fix;
- Ctrl-C -> 130; SIGTERM / SIGHUP -> 143 (raised as `Terminated` in the main thread, so that work folders
  are removed on the way out exactly as for Ctrl-C);
- anything else is our bug -> `internal`, named with its type.
"""

from __future__ import annotations

import errno
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from runtimes.common.errors import EdgeError

log = logging.getLogger(__name__)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived. A BaseException, so that only the boundary catches it, like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class ExitCodes:
    expected: int = 2
    internal: int = 1
    interrupted: int = 130
    terminated: int = 143


ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                                errno.ENAMETOOLONG, errno.EFBIG, errno.EMFILE, errno.ENFILE})


def one_line(exc: BaseException) -> str:
    """The message's lines joined, so the error stays one line (parity failures list several)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def run_boundary(prog: str, body: Callable[[], int], verbose: bool, codes: ExitCodes = ExitCodes(),
                 on_stop: Callable[[BaseException], str] | None = None, handle_signals: bool = True) -> int:
    """Run `body` and return its exit code, or the boundary's for what it raised (see the module).

    `on_stop(exc)` says what an interrupted run left behind ("nothing was written ..."). With
    `handle_signals`, SIGTERM and SIGHUP unwind like Ctrl-C while `body` runs (main thread only).
    """
    previous = _catch_termination() if handle_signals else {}
    try:
        return body()
    except EdgeError as exc:
        if verbose:
            log.exception("failed")
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
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
