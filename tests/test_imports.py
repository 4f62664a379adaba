"""The packages' import graph: arrows point one way (bench -> toolchain -> runtimes) and no module takes
part in a cycle, counting the imports inside functions too (a function-level import hides a cycle from
Python at start-up, not from the reader who has to untangle it)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runtimes", "toolchain", "bench")
# a package may import only itself and the packages after it
ALLOWED = {"bench": {"bench", "toolchain", "runtimes"}, "toolchain": {"toolchain", "runtimes"},
           "runtimes": {"runtimes"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(name: str, path: Path, files: dict) -> list[tuple[str, list[str]]]:
    """(module, names) for every import statement in the file, at any depth, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((base, [a.name for a in node.names]))
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    # what each package's __init__ re-exports, and from where: `from toolchain.steps import Distil`
    # depends on toolchain.steps.distill, not on every module the package's __init__ gathers
    reexports: dict[str, dict[str, str]] = {}
    for name, path in files.items():
        if path.name == "__init__.py":
            reexports[name] = {n: module for module, names in _imports(name, path, files) for n in names
                               if module.startswith(name + ".")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for module, names in _imports(name, path, files):
            targets = [module] if not names else [
                f"{module}.{n}" if f"{module}.{n}" in files  # `from pkg import mod`: the submodule
                else reexports.get(module, {}).get(n, module) for n in names]
            for target in targets:
                while target and target not in files:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] in PACKAGES:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_even_through_function_level_imports():
    graph = _graph()
    assert graph.get("toolchain.api"), "the import graph was not read"
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_packages_import_one_way():
    wrong = [f"{module} imports {target}" for module, targets in _graph().items() for target in targets
             if target.split(".")[0] not in ALLOWED[module.split(".")[0]]]
    assert not wrong, "; ".join(sorted(wrong))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
