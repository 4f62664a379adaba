"""The adapter interface: everything the toolchain, the bench and the tools need to know about one task.

An adapter pairs a task with its runtime pipeline class (the torch-free side: decoding, serving
options, manifest rules) and adds what only the toolchain needs: how its data is read and
tokenised, how parity is judged, how a student is trained and scored, how importance is measured.
Torch, transformers and the heavier toolchain modules are imported inside the methods that use them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from runtimes.common.manifest import Task
from runtimes.embedded.pipelines import Pipeline

if TYPE_CHECKING:
    from toolchain.data import Columns, TextDataset
    from toolchain.transfer import Example

IGNORE = -100  # the label id that losses skip (transformers' convention)


@dataclass(frozen=True)
class GoldExamples:
    """Examples as quality is scored on them: what the pipeline is called with, and the gold answers."""

    requests: list[Any]  # texts, or {"question", "context"} dicts
    gold: list[Any]  # class indices, tag lists, or answer lists
    words: list[list[str]] | None = None  # token classification: the words the texts were joined from


class TaskAdapter(abc.ABC):
    """One task's knowledge. Subclasses set the class attributes and implement the abstract methods."""

    pipeline: ClassVar[type[Pipeline]]  # the runtime's pipeline for the task
    auto_class: ClassVar[str]  # the transformers Auto class of the head
    architecture_suffix: ClassVar[str]  # how a config's architecture for this head ends
    agreement_kind: ClassVar[str]  # what parity's agreement counts, in words
    gold_name: ClassVar[str] = "labels"  # what scoring data must carry, in messages
    # what labelled validation data needs for an accuracy budget ("a label column"); None: no budgeted int8
    accuracy_budget_needs: ClassVar[str | None] = None
    dataset_carries_gold: ClassVar[bool] = True  # a `TextDataset` holds what quality is scored against
    student_may_change_tokenizer: ClassVar[bool] = True  # a distillation student may tokenise differently
    # kwargs of `transformers.pipeline(task.value, ...)` for the PyTorch baseline, and of its call;
    # None where transformers has no pipeline for the task
    transformers_pipeline: ClassVar[dict[str, Any] | None] = None
    transformers_call: ClassVar[dict[str, Any]] = {}

    # -- facts of the runtime side --------------------------------------------------------------------
    @property
    def task(self) -> Task:
        return self.pipeline.task

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model outputs the task reads, in export order."""
        return self.pipeline.outputs

    @property
    def per_token(self) -> bool:
        """Whether the outputs carry a sequence axis."""
        return self.pipeline.per_token

    @property
    def labelled(self) -> bool:
        """Whether the model has named labels (config.json id2label, manifest.labels)."""
        return self.pipeline.labelled

    @property
    def truncations(self) -> tuple[str, ...]:
        """The ways of cutting a long text the task allows."""
        return self.pipeline.truncations

    def head_size(self, labels: Sequence[str]) -> tuple[int, str]:
        """How many outputs the task head has, and what they are called in a message."""
        return len(labels), "labels (id2label / num_labels)"

    # -- data ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def read_dataset(self, path: Path, label_names: Sequence[str], columns: Columns) -> TextDataset:
        """Read a user's data file for the task (see `toolchain.data.load_dataset`)."""

    def read_transfer(self, path: Path, columns: Columns) -> TextDataset:
        """Unlabelled inputs that distillation adds to the training data (the teacher labels them): a text per
        line of a `.txt` file, or a table's text column."""
        from toolchain.data import TextDataset, plain_texts

        return TextDataset(tuple(plain_texts(path, columns.text)), source=path)

    @abc.abstractmethod
    def is_supervised(self, data: TextDataset) -> bool:
        """True when `data` has the labels the task is scored with."""

    @abc.abstractmethod
    def gold_examples(self, data: TextDataset, labels: Sequence[str]) -> GoldExamples | None:
        """`data` as scoring examples; None when it lacks the gold answers."""

    @abc.abstractmethod
    def read_gold_examples(self, path: Path, labels: Sequence[str]) -> GoldExamples:
        """Scoring examples read from a labelled file; `InputError` when it has no gold answers."""

    @abc.abstractmethod
    def gold_row(self, request: Any, gold: Any, words: list[str] | None) -> dict[str, Any]:
        """One scoring example as a JSONL row that `read_gold_examples` reads back."""

    def requests_from_texts(self, texts: Sequence[str], question: str) -> list[Any]:
        """One pipeline request per text (question answering asks `question` about each)."""
        return list(texts)

    def soak_request(self, kind: int, text: Callable[..., str], rng: Random) -> tuple[tuple, dict, bool]:
        """Request `kind` (0-9) of the soak mix: (args, kwargs, whether the pipeline must refuse it)."""
        if kind == 0:
            return ([text() for _ in range(rng.randint(2, 16))],), {}, False
        if kind == 1:
            return (text(300, 600),), {}, False  # longer than the window: truncated
        if kind == 2:
            return ("",), {}, False
        if kind == 8:
            return (["fine", 3],), {}, True
        if kind == 9:
            return ("broken \udcff text",), {}, True
        return (text(),), {}, False

    # -- quality -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def answers(self, predictions: list[Any], labels: Sequence[str], words: list[list[str]] | None) -> list[Any]:
        """The pipeline's outputs in the form the task is scored in: a class index, a tag list, an answer."""

    @abc.abstractmethod
    def quality(self, gold: list[Any], guess: list[Any]) -> dict[str, float]:
        """The task's quality figures of `guess` against `gold` (`runtimes.measure.quality`)."""

    # -- parity --------------------------------------------------------------------------------------
    @property
    def parity_inputs(self) -> tuple:
        """The realistic and awkward inputs parity is checked on."""
        from toolchain.parity_inputs import PARITY_TEXTS

        return PARITY_TEXTS

    def encode_parity(self, tokenizer, items: list, common: dict[str, Any]):
        """Tokenise parity inputs (numpy, right padding, truncation at the window)."""
        return tokenizer(list(items), **common)

    @abc.abstractmethod
    def agreement(self, expected: dict[str, np.ndarray], actual: dict[str, np.ndarray],
                  mask: np.ndarray) -> tuple[int, int]:
        """How many predictions of `actual` match `expected` on a parity batch, out of how many."""

    # -- training, distillation, importance -----------------------------------------------------------
    def encode_examples(self, tokenizer, examples: list[Example], max_length: int):
        """Tokenise examples as the student and teacher both see them (right padding, numpy)."""
        return tokenizer([ex.text for ex in examples], **common_encoding(max_length, "np"))

    @abc.abstractmethod
    def teacher_rows(self, out, enc, batch: list[Example]) -> list[tuple[np.ndarray, ...]]:
        """The teacher's targets for each example of a batch, from its outputs."""

    @abc.abstractmethod
    def teacher_arrays(self, rows: list[tuple[np.ndarray, ...]], examples: list[Example]) -> dict[str, np.ndarray]:
        """All examples' targets as the arrays cached and trained on."""

    @abc.abstractmethod
    def transfer_item(self, example: Example, enc, row: int, targets: dict[str, np.ndarray], index: int,
                      offset: int) -> tuple[dict[str, Any], int]:
        """The training fields of one example besides its inputs, and how far it moves the targets' offset."""

    @abc.abstractmethod
    def distillation_losses(self, out, inputs: dict, temperature: float):
        """The soft-target loss and the hard-label loss (None without labels) of a training batch."""

    @abc.abstractmethod
    def predictions(self, out, enc, batch: list[Example]) -> list[Any]:
        """A model's prediction per example of a batch, in the form `score` compares."""

    def validation_metric(self, validation: list[Example]) -> str | None:
        """The name of the metric labelled validation data is scored with; None when it has no labels."""
        return None

    def score(self, validation: list[Example], predictions: list[Any], id2label: dict) -> float:
        """The `validation_metric` of `predictions` (called only where there is one)."""
        raise NotImplementedError(f"{self.task.value} has no labelled validation metric")

    @abc.abstractmethod
    def encode_dataset(self, tokenizer, data: TextDataset, max_length: int):
        """Tokenise a batch (torch tensors) and its label ids where it has them, per example or on each
        word's first sub-token: (encoding, labels or None)."""

    @abc.abstractmethod
    def importance_loss(self, config, out, attention_mask, labels, generator):
        """The loss whose gradients score importance, summed over examples: against `labels`, or against
        outputs drawn from the model's own distribution with `generator` (a Monte Carlo Fisher)."""

    def fine_tune_predictions(self, logits, labels_in: Any, data: TextDataset, labels: Sequence[str]) -> list[Any]:
        """A fine-tuned model's predictions on a batch of `encode_dataset` whose label ids are `labels_in`."""
        raise NotImplementedError(f"bench does not fine-tune for {self.task.value}")

    def fine_tune_score(self, data: TextDataset, predicted: list[Any], labels: Sequence[str]) -> float:
        """The figure fine-tuning keeps the best epoch by."""
        raise NotImplementedError(f"bench does not fine-tune for {self.task.value}")


def common_encoding(max_length: int, tensors: str) -> dict[str, Any]:
    return dict(padding=True, truncation=True, max_length=max_length, return_tensors=tensors)


def soft_loss(student, teacher, t: float):
    """KL(teacher || student) at temperature t, scaled by t^2 as Hinton et al. do."""
    import torch
    import torch.nn.functional as F

    if student.numel() == 0:
        return student.sum() * 0.0
    log_p = F.log_softmax(student / t, dim=-1)
    q = F.softmax(teacher / t, dim=-1)
    kl = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(-1)
    return kl.mean() * t * t


def sampled_cross_entropy(logits, generator):
    """Cross-entropy against a class drawn from the model's own softmax: a Monte Carlo estimate of the Fisher."""
    import torch
    import torch.nn.functional as F

    drawn = torch.multinomial(torch.softmax(logits.detach().float(), -1), 1, generator=generator).squeeze(-1)
    return F.cross_entropy(logits, drawn, reduction="sum")


def first_subtokens(word_ids: list, n_words: int) -> np.ndarray:
    """Position of each word's first sub-token, or -1 for a word cut off by truncation."""
    first = np.full(n_words, -1, dtype=np.int64)
    for position, word in enumerate(word_ids):
        if word is not None and first[word] < 0:
            first[word] = position
    return first
