"""Task quality of a subject on a labelled file, scored by `runtimes.measure.quality`.

    text classification  CSV / JSONL / Parquet with `text` and `label` (index or label name)
    NER                  JSONL, one sentence per line: {"tokens": [...], "tags": ["B-PER", "O", ...]}
    question answering   JSONL: {"question": ..., "context": ..., "answers": ["...", ...]}
                         (SQuAD's {"answers": {"text": [...]}} is read too)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes.common.errors import InputError
from runtimes.common.manifest import Task
from toolchain.tasks import adapter_for


@dataclass(frozen=True)
class LabelledData:
    task: Task
    requests: list[Any]  # what the pipeline is called with: texts, or {"question", "context"}
    gold: list[Any]  # class indices, tag lists, or answer lists
    words: list[list[str]] | None = None  # NER: the words the texts were joined from
    path: str = ""
    sha256: str = ""

    def head(self, n: int) -> LabelledData:
        return self.select(range(min(n, len(self.requests))))

    def select(self, rows) -> LabelledData:
        """The examples at `rows`, in that order (the digest is of the file they came from)."""
        rows = list(rows)
        words = [self.words[i] for i in rows] if self.words is not None else None
        return LabelledData(self.task, [self.requests[i] for i in rows], [self.gold[i] for i in rows], words,
                            self.path, self.sha256)


def labelled_from(dataset, task: Task, labels: tuple[str, ...]) -> LabelledData:
    """A toolchain `TextDataset` (any format `optimise` reads, CoNLL included) as scoring data.
    Question answering needs the gold answers, which only `load_labelled` reads."""
    adapter = adapter_for(task)
    source = str(dataset.source or "")
    examples = adapter.gold_examples(dataset, labels)
    if examples is None:
        raise InputError(f"{source or 'the data'} has no {adapter.gold_name} to score {task.value} with")
    return LabelledData(task, examples.requests, examples.gold, examples.words, source, dataset.sha256)


def load_labelled(path: Path, task: Task, labels: tuple[str, ...]) -> LabelledData:
    if not path.exists():
        raise InputError(f"data file {path} does not exist")
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    examples = adapter_for(task).read_gold_examples(path, labels)
    return LabelledData(task, examples.requests, examples.gold, examples.words, str(path), digest)


def score(subject, data: LabelledData) -> dict[str, float]:
    """Run the subject over the data (batches of 32) and score its predictions."""
    return score_outputs(data, outputs(subject, data))


def outputs(subject, data: LabelledData) -> list[Any]:
    """The subject's answer per example in the form its task is scored in: a class index, a tag list, an answer."""
    predictions = subject.predict(data.requests)
    return adapter_for(data.task).answers(predictions, subject.labels, data.words)


def score_outputs(data: LabelledData, predicted: list[Any], rows: Sequence[int] | None = None) -> dict[str, float]:
    """Score `outputs(...)` against the gold answers, on the examples at `rows` (default: all)."""
    picked = range(len(predicted)) if rows is None else rows
    gold, guess = [data.gold[i] for i in picked], [predicted[i] for i in picked]
    return adapter_for(data.task).quality(gold, guess)
