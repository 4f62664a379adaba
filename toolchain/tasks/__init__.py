"""One adapter per task, registered by `Task`: the rest of the code asks `adapter_for(task)` instead of
branching on the task (see docs/architecture-tasks.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runtimes.common.manifest import Task
from toolchain.data import Columns, TextDataset
from toolchain.errors import UnsupportedModelError
from toolchain.tasks.base import GoldExamples, TaskAdapter
from toolchain.tasks.question_answering import QuestionAnswering
from toolchain.tasks.text_classification import TextClassification
from toolchain.tasks.token_classification import TokenClassification

ADAPTERS: dict[Task, TaskAdapter] = {
    adapter.task: adapter for adapter in (TextClassification(), TokenClassification(), QuestionAnswering())
}


def adapter_for(task: Task) -> TaskAdapter:
    """The adapter of `task`."""
    return ADAPTERS[task]


def load_dataset(
    path: Path | str,
    task: Task = Task.TEXT_CLASSIFICATION,
    label_names: Sequence[str] = (),
    text_column: str = "text",
    label_column: str = "label",
    tokens_column: str = "tokens",
    tags_column: str = "tags",
    question_column: str = "question",
    context_column: str = "context",
) -> TextDataset:
    """Read a data file for `task`.

    - text classification: CSV, JSONL, Parquet or a `datasets.save_to_disk` folder with a text column
      and, optionally, a label column (class ids or the model's label names);
    - token classification: a CoNLL file (`.conll`, `.txt`: `word tag` per line, a blank line between
      sentences) or a table with a list-of-words column and a list-of-tags column;
    - question answering: a table with a question column and a context column.
    """
    columns = Columns(text_column, label_column, tokens_column, tags_column, question_column, context_column)
    return ADAPTERS[task].read_dataset(Path(path), label_names, columns)


def load_transfer_data(path: Path | str, task: Task, text_column: str = "text", tokens_column: str = "tokens",
                       question_column: str = "question", context_column: str = "context", **_: str) -> TextDataset:
    """Unlabelled inputs a student learns from beside its training data, labelled by the teacher: a text per
    line of a `.txt` file or a table's text column (token classification: its list-of-words column where it
    has one, else the texts split at whitespace; question answering: question and context columns). Labels
    in the file are not read."""
    columns = Columns(text=text_column, tokens=tokens_column, question=question_column, context=context_column)
    return ADAPTERS[task].read_transfer(Path(path), columns)


def load_text_dataset(
    path: Path | str,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] = (),
) -> TextDataset:
    """Texts (and optional labels) for sequence classification; see `load_dataset`."""
    return load_dataset(path, Task.TEXT_CLASSIFICATION, label_names, text_column=text_column, label_column=label_column)


def parse_task(name: str) -> Task:
    try:
        return Task(name)
    except ValueError:
        allowed = ", ".join(t.value for t in Task)
        raise UnsupportedModelError(f"unknown task {name!r}; choose one of: {allowed}") from None


def task_from_architecture(architecture: str) -> Task | None:
    for adapter in ADAPTERS.values():
        if architecture.endswith(adapter.architecture_suffix):
            return adapter.task
    return None


__all__ = ["ADAPTERS", "GoldExamples", "TaskAdapter", "adapter_for", "load_dataset", "load_text_dataset",
           "load_transfer_data", "parse_task",
           "task_from_architecture"]
