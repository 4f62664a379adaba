"""The lock files agree with what they were resolved from, and every pin satisfies pyproject.toml's ranges."""

import importlib.util
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _lock_module():
    spec = importlib.util.spec_from_file_location("lock_tool", ROOT / "tools" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pins(name: str) -> dict[str, Version]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        if line and not line.startswith(("#", " ")):
            package, _, version = line.partition("==")
            found[canonicalize_name(package)] = Version(version)
    return found


def test_every_lock_matches_its_inputs():
    lock = _lock_module()
    assert lock.stale() == [], "a lock file is out of date with pyproject.toml or constraints.txt: run ./run.sh lock"


def test_every_requirement_of_the_dev_install_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    locked = pins("requirements.lock")
    wanted, todo, seen = [], ["dev"], set()
    wanted += [Requirement(r) for r in project["dependencies"]]
    while todo:  # dev names the other extras through edge-toolchain[...]
        extra = todo.pop()
        seen.add(extra)
        for text in extras[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "edge-toolchain":
                todo += [e for e in req.extras if e not in seen]
            else:
                wanted.append(req)
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is required by pyproject.toml but not pinned in requirements.lock"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={locked[name]}, outside pyproject.toml's {req}")
    assert str(locked["torch"]).endswith("+cpu")  # the CPU wheel: a CUDA build would pull gigabytes
