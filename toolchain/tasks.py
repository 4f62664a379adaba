"""Per-task facts: which transformers head, which outputs, which axes are dynamic."""

from __future__ import annotations

from dataclasses import dataclass

from runtimes.common.manifest import Task
from toolchain.errors import UnsupportedModelError


@dataclass(frozen=True)
class TaskSpec:
    task: Task
    auto_class: str
    architecture_suffix: str
    outputs: tuple[str, ...]
    per_token: bool  # outputs carry a sequence axis
    agreement_kind: str


TASKS: dict[Task, TaskSpec] = {
    Task.TEXT_CLASSIFICATION: TaskSpec(
        Task.TEXT_CLASSIFICATION, "AutoModelForSequenceClassification", "ForSequenceClassification",
        ("logits",), per_token=False, agreement_kind="top-1 label",
    ),
    Task.TOKEN_CLASSIFICATION: TaskSpec(
        Task.TOKEN_CLASSIFICATION, "AutoModelForTokenClassification", "ForTokenClassification",
        ("logits",), per_token=True, agreement_kind="per-token label",
    ),
    Task.QUESTION_ANSWERING: TaskSpec(
        Task.QUESTION_ANSWERING, "AutoModelForQuestionAnswering", "ForQuestionAnswering",
        ("start_logits", "end_logits"), per_token=True, agreement_kind="answer start and end",
    ),
}


def parse_task(name: str) -> Task:
    try:
        return Task(name)
    except ValueError:
        allowed = ", ".join(t.value for t in Task)
        raise UnsupportedModelError(f"unknown task {name!r}; choose one of: {allowed}") from None


def task_from_architecture(architecture: str) -> Task | None:
    for spec in TASKS.values():
        if architecture.endswith(spec.architecture_suffix):
            return spec.task
    return None
