"""The one error boundary every command runs inside: one line and a documented exit code per kind of failure."""

import errno
import os
import signal

import pytest

from runtimes.common.cli_boundary import ExitCodes, run_boundary
from runtimes.common.errors import InputError


def _raise(exc):
    def body():
        raise exc
    return body


@pytest.mark.parametrize("exc, code, line", [
    (InputError("no such file: x.csv"), 2, "prog: error: no such file: x.csv"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/model.onnx"), 2,
     "prog: error: No space left on device: /out/model.onnx"),
    (OSError(errno.EIO, "Input/output error"), 3, "prog: internal error: OSError: [Errno 5] Input/output error"),
    (ValueError("first\nsecond"), 3, "prog: internal error: ValueError: first; second"),
    (KeyboardInterrupt(), 130, "prog: interrupted; kept what was done"),
])
def test_each_failure_is_one_line_with_its_exit_code(exc, code, line, capsys):
    stop = "kept what was done"
    assert run_boundary("prog", _raise(exc), False, ExitCodes(internal=3), on_stop=lambda e: stop) == code
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1


def test_sigterm_unwinds_like_ctrl_c_and_the_old_handler_comes_back(capsys):
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []

    def body():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()  # the handler raises before this returns
        finally:
            cleaned.append(True)
        return 0

    assert run_boundary("prog", body, False) == 143
    assert cleaned == [True] and "prog: stopped by SIGTERM" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_verbose_shows_the_traceback_of_a_bug():
    with pytest.raises(ValueError):
        run_boundary("prog", _raise(ValueError("bug")), True)


def test_library_parameter_names_become_the_commands_options(capsys):
    from runtimes.common.cli_boundary import Parser, option_names, parse, speak_options

    parser = Parser(prog="prog")
    parser.add_argument("checkpoint")
    parser.add_argument("--eval-data")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run").add_argument("--max-items", "-n")
    names = option_names(parser)
    assert names["eval_data"] == "--eval-data" and names["max_items"] == "--max-items"
    assert names["checkpoint"] == "CHECKPOINT"
    assert speak_options("`eval_data` is empty; `other` stays", names) == "--eval-data is empty; `other` stays"

    def bad_input() -> int:
        raise InputError("`eval_data` holds no rows")

    assert run_boundary("prog", bad_input, False, options=names) == 2
    assert capsys.readouterr().err.strip() == "prog: error: --eval-data holds no rows"
    assert parse(parser, ["x", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus (see prog --help)" in capsys.readouterr().err
