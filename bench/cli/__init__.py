"""The `optimise` command line: a thin layer that parses, calls the Python API (`bench.api`) and maps
the outcome to an exit code. One module per command, all built on `bench.cli.common`.

It lives in `bench` because bench is the top of the stack (bench may import toolchain and runtimes;
toolchain never imports bench). Exit codes, the same for every command: 0 done; 1 the command's
finding (a regression, nothing within the budget); 2 bad input; 3 internal error; 130/143 stopped.

    optimise CKPT --out ART ...        export and optimise a checkpoint (bench.cli.optimise)
    optimise export CKPT --out ART     the same, spelled out
    optimise SUBCOMMAND ...            one of SUBCOMMANDS below
"""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line description). Each function takes argv (without the
# subcommand) and returns an exit code. Imported only when chosen, so `optimise --help` stays fast.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "export": ("bench.cli.optimise:main", "export and optimise a checkpoint (the default; `optimise CKPT ...`)"),
    "bench": ("bench.cli.bench:main", "measure artifacts (and a PyTorch baseline): quality, latency, memory, size; "
                                  "report.json, report.md and a plot"),
    "gate": ("bench.cli.gate:main", "CI latency regression gate: exit 1 when a candidate is slower than its "
                                    "baseline beyond a tolerance"),
    "search": ("bench.cli.search:main", "the fastest artifact within an accuracy budget (also `optimise CKPT "
                                    "--max-accuracy-drop ...`): candidates, students, peers, report"),
    "serve": ("runtimes.serving.cli:main", "serve an artifact with Ray Serve (config / run), or export it to a "
                                           "Triton or OpenVINO Model Server repository (triton / ovms)"),
}


def _overview() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [f"  {name:<{width}}  {about}" for name, (_, about) in SUBCOMMANDS.items()]
    return ("subcommands (a checkpoint folder named like one: write ./NAME):\n" + "\n".join(lines)
            + "\n\n`optimise SUBCOMMAND --help` describes each.\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        target, _ = SUBCOMMANDS[argv[0]]
        module, function = target.split(":")
        return getattr(importlib.import_module(module), function)(argv[1:])
    if any(a == "--max-accuracy-drop" or a.startswith("--max-accuracy-drop=") for a in argv):
        from bench.cli.search import main as search_main  # `optimise CKPT --max-accuracy-drop 1 ...` is a search

        return search_main(argv)
    from bench.cli.optimise import main as optimise_main

    if argv[:1] in (["-h"], ["--help"]):
        print(_overview())
    return optimise_main(argv)


if __name__ == "__main__":
    sys.exit(main())
