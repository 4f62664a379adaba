"""The `optimise` command line: the toolchain's optimise run by default, plus subcommands.

It lives in `bench` because bench is the top of the stack (bench may import toolchain and runtimes;
toolchain never imports bench), and subcommands such as `bench` and `gate` are bench's own.

    optimise CKPT --out ART ...        export and optimise a checkpoint (toolchain.cli)
    optimise export CKPT --out ART     the same, spelled out
    optimise SUBCOMMAND ...            one of SUBCOMMANDS below
"""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line description). Each function takes argv (without the
# subcommand) and returns an exit code. Imported only when chosen, so `optimise --help` stays fast.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "export": ("toolchain.cli:main", "export and optimise a checkpoint (the default; `optimise CKPT ...`)"),
    "bench": ("bench.suite:main", "measure artifacts (and a PyTorch baseline): quality, latency, memory, size; "
                                  "report.json, report.md and a plot"),
    "gate": ("bench.gate.run:main", "CI latency regression gate: exit 1 when a candidate is slower than its "
                                    "baseline beyond a tolerance"),
    "search": ("bench.search.run:main", "the fastest artifact within an accuracy budget (also `optimise CKPT "
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
        from bench.search.run import main as search_main  # `optimise CKPT --max-accuracy-drop 1 ...` is a search

        return search_main(argv)
    from toolchain.cli import main as optimise_main

    if argv[:1] in (["-h"], ["--help"]):
        print(_overview())
    return optimise_main(argv)


if __name__ == "__main__":
    sys.exit(main())
