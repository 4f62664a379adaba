"""Structural rules the code base keeps, checked on its source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolchain", "runtimes", "bench", "tools", "examples")
# Where per-task knowledge belongs: the adapters, the runtime pipelines, and the Task enum itself.
TASK_HOMES = ("toolchain/tasks/", "runtimes/embedded/pipelines/", "runtimes/common/manifest.py")
_COMPARISONS = (ast.Is, ast.IsNot, ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def _is_task_member(node: ast.AST) -> bool:
    """`Task.TEXT_CLASSIFICATION` and the like (an attribute of the name `Task`)."""
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Task" \
        and node.attr.isupper()


def _is_task_value(node: ast.AST) -> bool:
    """`task.value` or `<anything>.task.value`."""
    if not (isinstance(node, ast.Attribute) and node.attr == "value"):
        return False
    inner = node.value
    return (isinstance(inner, ast.Name) and inner.id == "task") or \
        (isinstance(inner, ast.Attribute) and inner.attr == "task")


def _contains(node: ast.AST, test) -> bool:
    return any(test(n) for n in ast.walk(node))


def _is_string(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(_is_string(e) for e in node.elts)


def _task_branches(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, _COMPARISONS) for op in node.ops):
            operands = [node.left, *node.comparators]
            if any(_contains(o, _is_task_member) for o in operands):
                found.append((node.lineno, "compares a Task member"))
            elif any(_is_task_value(o) for o in operands) and any(_is_string(o) for o in operands):
                found.append((node.lineno, "compares task.value to a string"))
        elif isinstance(node, ast.Dict) and any(k is not None and _is_task_member(k) for k in node.keys):
            found.append((node.lineno, "a dict keyed by Task members"))
    return sorted(found)


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_task_branching_only_in_adapters():
    """Code outside the task adapters asks an adapter; it never branches on which task it has."""
    offences = []
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(TASK_HOMES):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        offences += [f"{relative}:{line}: {what}" for line, what in _task_branches(tree)]
    assert not offences, "branch on the task outside its adapter:\n" + "\n".join(offences)


def test_the_rule_catches_what_it_names():
    code = ("if task is Task.QUESTION_ANSWERING: pass\n"
            "x = ckpt.task.value == 'text-classification'\n"
            "y = {Task.TEXT_CLASSIFICATION: 1}\n"
            "z = task in (Task.TOKEN_CLASSIFICATION,)\n"
            "f(Task.TEXT_CLASSIFICATION)\n"
            "w = task.value\n")
    assert [line for line, _ in _task_branches(ast.parse(code))] == [1, 2, 3, 4]
