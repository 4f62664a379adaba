"""The command line and the Python API agree on every default: `optimise search` is `search()`, `optimise
bench` is `bench()`, `optimise gate` is `gate()`, whichever a user calls."""

import dataclasses
import inspect

import pytest

from bench.cli import bench as bench_cli
from bench.cli import gate as gate_cli
from bench.cli import search as search_cli
from bench.gate.run import gate
from bench.search.run import SearchOptions
from bench.suite import BenchOptions


def _api_defaults(source) -> dict:
    if dataclasses.is_dataclass(source):
        return {f.name: f.default for f in dataclasses.fields(source) if f.default is not dataclasses.MISSING}
    return {name: p.default for name, p in inspect.signature(source).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("cli, api, renamed", [
    (search_cli, SearchOptions, {"no_students": ("students", lambda v: not v),
                                 "student_starts": ("student_starts", lambda v: tuple(v or ()))}),
    (bench_cli, BenchOptions, {}),
    (gate_cli, gate, {}),
])
def test_every_option_defaults_to_the_apis_default(cli, api, renamed):
    parser, defaults = cli.build_parser(), _api_defaults(api)
    checked = 0
    for action in parser._actions:
        if action.dest in ("help", "verbose") or not action.option_strings:
            continue
        name, convert = renamed.get(action.dest, (action.dest, lambda v: v))
        if name not in defaults:
            continue  # a CLI-only option (--out's default folder, --no-plot)
        assert convert(action.default) == defaults[name], f"{action.option_strings[0]}: {action.default!r} " \
                                                         f"on the command line, {defaults[name]!r} in the API"
        checked += 1
    assert checked >= 8
