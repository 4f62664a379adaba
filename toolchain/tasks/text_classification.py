"""Sequence classification: one label per text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

from runtimes.embedded.pipelines import TextClassificationPipeline
from toolchain.data import Columns, TextDataset, check_path, labelled_rows, read_rows
from toolchain.errors import InputError
from toolchain.tasks.base import IGNORE, GoldExamples, TaskAdapter, common_encoding, sampled_cross_entropy, soft_loss


class TextClassification(TaskAdapter):
    pipeline = TextClassificationPipeline
    auto_class = "AutoModelForSequenceClassification"
    architecture_suffix = "ForSequenceClassification"
    agreement_kind = "top-1 label"
    accuracy_budget_needs = "a label column"
    transformers_pipeline: dict[str, Any] = {}  # noqa: RUF012 (read only)
    transformers_call: dict[str, Any] = {"truncation": True}  # noqa: RUF012 (read only)

    # -- data ----------------------------------------------------------------------------------------
    def read_dataset(self, path: Path, label_names: Sequence[str], columns: Columns) -> TextDataset:
        return labelled_rows(read_rows(check_path(path)), path, columns.text, columns.label, label_names)

    def is_supervised(self, data: TextDataset) -> bool:
        return data.labels is not None

    def gold_examples(self, data: TextDataset, labels: Sequence[str]) -> GoldExamples | None:
        return None if data.labels is None else GoldExamples(list(data.texts), list(data.labels))

    def read_gold_examples(self, path: Path, labels: Sequence[str]) -> GoldExamples:
        data = self.read_dataset(path, labels, Columns())
        if data.labels is None:
            raise InputError(f"{path} has no label column: quality needs labelled data")
        bad = sorted({y for y in data.labels if not 0 <= y < len(labels)})
        if bad:
            raise InputError(f"{path} has labels {bad[:5]} outside the model's {len(labels)} classes")
        return GoldExamples(list(data.texts), list(data.labels))

    def gold_row(self, request: Any, gold: Any, words: list[str] | None) -> dict[str, Any]:
        return {"text": request, "label": gold}

    def soak_request(self, kind: int, text: Callable[..., str], rng: Random) -> tuple[tuple, dict, bool]:
        if kind == 3:
            return (text(),), {"top_k": None}, False
        return super().soak_request(kind, text, rng)

    # -- quality and parity ----------------------------------------------------------------------------
    def answers(self, predictions: list[Any], labels: Sequence[str], words: list[list[str]] | None) -> list[Any]:
        index = {name: i for i, name in enumerate(labels)}
        return [index[p["label"]] for p in predictions]

    def quality(self, gold: list[Any], guess: list[Any]) -> dict[str, float]:
        from runtimes.measure.quality import classification_scores

        return classification_scores(gold, guess)

    def agreement(self, expected: dict[str, np.ndarray], actual: dict[str, np.ndarray],
                  mask: np.ndarray) -> tuple[int, int]:
        same = expected["logits"].argmax(-1) == actual["logits"].argmax(-1)
        return int(same.sum()), same.size

    # -- training, distillation, importance -----------------------------------------------------------
    def teacher_rows(self, out, enc, batch) -> list[tuple[np.ndarray, ...]]:
        return [(out.logits[row].float().numpy(),) for row in range(len(batch))]

    def teacher_arrays(self, rows, examples) -> dict[str, np.ndarray]:
        return {"logits": np.stack([out[0] for out in rows])}

    def transfer_item(self, example, enc, row, targets, index, offset) -> tuple[dict[str, Any], int]:
        item = {"teacher": targets["logits"][index], "label": IGNORE if example.label is None else example.label}
        return item, offset

    def distillation_losses(self, out, inputs: dict, temperature: float):
        import torch.nn.functional as F

        soft = soft_loss(out.logits, inputs["teacher"], temperature)
        labels = inputs["label"]
        known = labels != IGNORE
        hard = F.cross_entropy(out.logits[known], labels[known]) if known.any() else None
        return soft, hard

    def predictions(self, out, enc, batch) -> list[Any]:
        return out.logits.argmax(-1).tolist()

    def validation_metric(self, validation) -> str | None:
        return "accuracy" if all(ex.label is not None for ex in validation) else None

    def score(self, validation, predictions: list[Any], id2label: dict) -> float:
        from runtimes.measure.quality import accuracy

        return accuracy([ex.label for ex in validation], predictions)

    def encode_dataset(self, tokenizer, data: TextDataset, max_length: int):
        import torch

        enc = tokenizer(list(data.texts), **common_encoding(max_length, "pt"))
        labels = torch.tensor(data.labels, dtype=torch.long) if data.labels is not None else None
        return enc, labels

    def importance_loss(self, config, out, attention_mask, labels, generator):
        import torch
        import torch.nn.functional as F

        logits = out["logits"]
        problem = getattr(config, "problem_type", None)
        if problem == "regression":  # a unit-variance Gaussian around the model's own output
            noise = torch.randn(logits.shape, generator=generator)
            return 0.5 * (logits - (logits.detach() + noise)).pow(2).sum()
        if problem == "multi_label_classification" or logits.shape[-1] == 1:
            drawn = torch.bernoulli(torch.sigmoid(logits.detach()), generator=generator)
            return F.binary_cross_entropy_with_logits(logits, drawn, reduction="sum")
        if labels is not None:
            return F.cross_entropy(logits, labels, reduction="sum")
        return sampled_cross_entropy(logits, generator)

    def fine_tune_predictions(self, logits, labels_in, data: TextDataset, labels: Sequence[str]) -> list[Any]:
        return logits.argmax(-1).tolist()

    def fine_tune_score(self, data: TextDataset, predicted: list[Any], labels: Sequence[str]) -> float:
        from runtimes.measure.quality import accuracy

        return accuracy(list(data.labels), predicted)
