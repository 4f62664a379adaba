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
from runtimes.measure import quality


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
    source = str(dataset.source or "")
    if task is Task.TEXT_CLASSIFICATION and dataset.labels is not None:
        return LabelledData(task, list(dataset.texts), list(dataset.labels), path=source, sha256=dataset.sha256)
    if task is Task.TOKEN_CLASSIFICATION and dataset.tags is not None:
        words = [list(w) for w in dataset.words]
        return LabelledData(task, [" ".join(w) for w in words], [[labels[t] for t in ts] for ts in dataset.tags],
                            words, source, dataset.sha256)
    raise InputError(f"{source or 'the data'} has no {'answers' if task is Task.QUESTION_ANSWERING else 'labels'} "
                     f"to score {task.value} with")


def load_labelled(path: Path, task: Task, labels: tuple[str, ...]) -> LabelledData:
    if not path.exists():
        raise InputError(f"data file {path} does not exist")
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    if task is Task.TEXT_CLASSIFICATION:
        from toolchain.data import load_text_dataset

        data = load_text_dataset(path, label_names=labels)
        if data.labels is None:
            raise InputError(f"{path} has no label column: quality needs labelled data")
        bad = sorted({y for y in data.labels if not 0 <= y < len(labels)})
        if bad:
            raise InputError(f"{path} has labels {bad[:5]} outside the model's {len(labels)} classes")
        return LabelledData(task, list(data.texts), list(data.labels), path=str(path), sha256=digest)
    if task is Task.TOKEN_CLASSIFICATION:  # CoNLL or JSONL, tags checked against the model's, as `optimise` reads them
        from toolchain.data import load_dataset

        data = load_dataset(path, task, labels)
        if data.tags is None:
            raise InputError(f"{path} has no tags: quality needs labelled data")
        words = [list(w) for w in data.words]
        tags = [[labels[t] for t in row] for row in data.tags]
        return LabelledData(task, [" ".join(w) for w in words], tags, words, str(path), digest)
    from toolchain.data import read_rows

    rows = read_rows(path)
    requests, answers = [], []
    for i, row in enumerate(rows, 1):
        gold = row.get("answers")
        if isinstance(gold, dict):
            gold = gold.get("text")
        if not isinstance(row.get("question"), str) or not isinstance(row.get("context"), str) or \
                not isinstance(gold, list):
            raise InputError(f"{path}: line {i} needs 'question', 'context' and an 'answers' list")
        requests.append({"question": row["question"], "context": row["context"]})
        answers.append([str(a) for a in gold])
    return LabelledData(task, requests, answers, path=str(path), sha256=digest)


def score(subject, data: LabelledData) -> dict[str, float]:
    """Run the subject over the data (batches of 32) and score its predictions."""
    return score_outputs(data, outputs(subject, data))


def outputs(subject, data: LabelledData) -> list[Any]:
    """The subject's answer per example in the form its task is scored in: a class index, a tag list, an answer."""
    predictions = subject.predict(data.requests)
    if data.task is Task.TEXT_CLASSIFICATION:
        index = {name: i for i, name in enumerate(subject.labels)}
        return [index[p["label"]] for p in predictions]
    if data.task is Task.TOKEN_CLASSIFICATION:
        assert data.words is not None
        return [quality.words_to_tags(w, entities) for w, entities in zip(data.words, predictions)]
    return [p["answer"] for p in predictions]


def score_outputs(data: LabelledData, predicted: list[Any], rows: Sequence[int] | None = None) -> dict[str, float]:
    """Score `outputs(...)` against the gold answers, on the examples at `rows` (default: all)."""
    picked = range(len(predicted)) if rows is None else rows
    gold, guess = [data.gold[i] for i in picked], [predicted[i] for i in picked]
    if data.task is Task.TEXT_CLASSIFICATION:
        return quality.classification_scores(gold, guess)
    if data.task is Task.TOKEN_CLASSIFICATION:
        return quality.entity_scores(gold, guess)
    return quality.qa_scores(guess, gold)
