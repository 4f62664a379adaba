"""Token classification (NER): a tag per word, scored by entity F1."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.embedded.pipelines import TokenClassificationPipeline
from toolchain.data import Columns, TextDataset, check_path, read_conll, read_rows, tagged_rows
from toolchain.errors import InputError
from toolchain.tasks.base import (
    IGNORE,
    GoldExamples,
    TaskAdapter,
    common_encoding,
    first_subtokens,
    sampled_cross_entropy,
    soft_loss,
)


class TokenClassification(TaskAdapter):
    pipeline = TokenClassificationPipeline
    auto_class = "AutoModelForTokenClassification"
    architecture_suffix = "ForTokenClassification"
    agreement_kind = "per-token label"
    accuracy_budget_needs = "tags for every word"
    transformers_pipeline: dict[str, Any] = {"aggregation_strategy": "simple"}  # noqa: RUF012 (read only)

    # -- data ----------------------------------------------------------------------------------------
    def read_dataset(self, path: Path, label_names: Sequence[str], columns: Columns) -> TextDataset:
        if path.suffix.lower() in (".conll", ".txt"):
            if path.is_dir():
                raise InputError(f"{path} is a folder; a CoNLL file is a text file with a `word tag` pair per line")
            return read_conll(check_path(path), label_names)
        return tagged_rows(read_rows(check_path(path)), path, columns.tokens, columns.tags, label_names)

    def read_transfer(self, path: Path, columns: Columns) -> TextDataset:
        """Words per example: a table's list-of-words column where it has one, else texts split at whitespace."""
        if path.suffix.lower() == ".conll":  # read_rows would call it an unsupported format, and suggest CoNLL
            raise InputError(f"{path}: transfer data is unlabelled text; a CoNLL file carries tags, so give it as "
                             "training data, or give a .txt file with a text per line")
        if path.suffix.lower() != ".txt" and not path.is_dir():
            rows = read_rows(check_path(path))
            if columns.tokens in rows[0]:
                words = []
                for i, row in enumerate(rows, 1):
                    value = row[columns.tokens]
                    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
                        raise InputError(f"{path}: row {i} needs a non-empty list of words in {columns.tokens!r}")
                    words.append(tuple(value))
                return TextDataset(tuple(" ".join(w) for w in words), words=tuple(words), source=path)
        texts = super().read_transfer(path, columns)
        words = tuple(tuple(text.split()) for text in texts.texts)
        return TextDataset(tuple(" ".join(w) for w in words), words=words, source=path)

    def is_supervised(self, data: TextDataset) -> bool:
        return data.tags is not None

    def gold_examples(self, data: TextDataset, labels: Sequence[str]) -> GoldExamples | None:
        if data.tags is None:
            return None
        words = [list(w) for w in data.words]
        return GoldExamples([" ".join(w) for w in words], [[labels[t] for t in ts] for ts in data.tags], words)

    def read_gold_examples(self, path: Path, labels: Sequence[str]) -> GoldExamples:
        # CoNLL or JSONL, tags checked against the model's
        examples = self.gold_examples(self.read_dataset(path, labels, Columns()), labels)
        if examples is None:
            raise InputError(f"{path} has no tags: quality needs labelled data")
        return examples

    def gold_row(self, request: Any, gold: Any, words: list[str] | None) -> dict[str, Any]:
        return {"tokens": words, "tags": gold}

    # -- quality and parity ----------------------------------------------------------------------------
    def answers(self, predictions: list[Any], labels: Sequence[str], words: list[list[str]] | None) -> list[Any]:
        from runtimes.measure.quality import words_to_tags

        assert words is not None
        return [words_to_tags(w, entities) for w, entities in zip(words, predictions)]

    def quality(self, gold: list[Any], guess: list[Any]) -> dict[str, float]:
        from runtimes.measure.quality import entity_scores

        return entity_scores(gold, guess)

    def agreement(self, expected: dict[str, np.ndarray], actual: dict[str, np.ndarray],
                  mask: np.ndarray) -> tuple[int, int]:
        same = (expected["logits"].argmax(-1) == actual["logits"].argmax(-1))[mask.astype(bool)]
        return int(same.sum()), same.size

    # -- training, distillation, importance -----------------------------------------------------------
    def encode_examples(self, tokenizer, examples, max_length: int):
        return tokenizer([list(ex.words) for ex in examples], is_split_into_words=True,
                         **common_encoding(max_length, "np"))

    def teacher_rows(self, out, enc, batch) -> list[tuple[np.ndarray, ...]]:
        return [word_logits(out.logits[row].float().numpy(), enc.word_ids(row), len(ex.words))
                for row, ex in enumerate(batch)]

    def teacher_arrays(self, rows, examples) -> dict[str, np.ndarray]:
        return {"logits": np.concatenate([out[0] for out in rows]),
                "covered": np.concatenate([out[1] for out in rows]),
                "lengths": np.array([len(ex.words) for ex in examples])}

    def transfer_item(self, example, enc, row, targets, index, offset) -> tuple[dict[str, Any], int]:
        n = len(example.words)
        item = {"teacher": targets["logits"][offset:offset + n], "covered": targets["covered"][offset:offset + n],
                "first": first_subtokens(enc.word_ids(row), n),
                "tags": np.array(example.tags if example.tags is not None else [IGNORE] * n)}
        return item, offset + n

    def distillation_losses(self, out, inputs: dict, temperature: float):
        import torch
        import torch.nn.functional as F

        first, covered = inputs["first"], inputs["covered"]
        present = (first >= 0) & covered
        gathered = torch.gather(out.logits, 1, first.clamp(min=0).unsqueeze(-1).expand(-1, -1, out.logits.shape[-1]))
        soft = soft_loss(gathered[present], inputs["teacher"][present], temperature)
        tags = inputs["tags"]
        known = (first >= 0) & (tags != IGNORE)
        hard = F.cross_entropy(gathered[known], tags[known]) if known.any() else None
        return soft, hard

    def predictions(self, out, enc, batch) -> list[Any]:
        best = out.logits.argmax(-1).cpu().numpy()
        found = []
        for row, ex in enumerate(batch):
            first = first_subtokens(enc.word_ids(row), len(ex.words))
            found.append([int(best[row, p]) if p >= 0 else 0 for p in first])
        return found

    def validation_metric(self, validation) -> str | None:
        return "entity F1" if all(ex.tags is not None for ex in validation) else None

    def score(self, validation, predictions: list[Any], id2label: dict) -> float:
        from runtimes.measure.quality import entity_scores

        names = {int(k): v for k, v in id2label.items()}
        gold = [[names[t] for t in ex.tags] for ex in validation]
        guess = [[names[t] for t in p] for p in predictions]
        return entity_scores(gold, guess)["entity_f1"]

    def encode_dataset(self, tokenizer, data: TextDataset, max_length: int):
        import torch

        common = common_encoding(max_length, "pt")
        if data.words is None:
            return tokenizer(list(data.texts), **common), None
        enc = tokenizer([list(w) for w in data.words], is_split_into_words=True, **common)
        labels = None
        if data.tags is not None:  # the first sub-token of each word carries its tag
            labels = torch.full(enc["input_ids"].shape, IGNORE, dtype=torch.long)
            for row, tags in enumerate(data.tags):
                seen = set()
                for position, word in enumerate(enc.word_ids(row)):
                    if word is not None and word not in seen:
                        seen.add(word)
                        labels[row, position] = tags[word]
        return enc, labels

    def importance_loss(self, config, out, attention_mask, labels, generator):
        import torch.nn.functional as F

        logits = out["logits"]
        real = attention_mask.bool() if labels is None else labels != IGNORE
        flat = logits[real]
        return F.cross_entropy(flat, labels[real], reduction="sum") if labels is not None else \
            sampled_cross_entropy(flat, generator)

    def fine_tune_predictions(self, logits, labels_in, data: TextDataset, labels: Sequence[str]) -> list[Any]:
        best = logits.argmax(-1)
        predicted = []
        for row, words in enumerate(data.words):
            firsts = [p for p, label in enumerate(labels_in[row].tolist()) if label != IGNORE]
            tags = [labels[int(best[row, p])] for p in firsts]
            predicted.append(tags + ["O"] * (len(words) - len(tags)))  # words past the window
        return predicted

    def fine_tune_score(self, data: TextDataset, predicted: list[Any], labels: Sequence[str]) -> float:
        from runtimes.measure.quality import entity_scores

        gold = [[labels[t] for t in tags] for tags in data.tags]
        return entity_scores(gold, predicted)["entity_f1"]


def word_logits(logits: np.ndarray, word_ids: list, n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-word logits (each word's first sub-token), and which words the window covered at all."""
    out = np.zeros((n_words, logits.shape[-1]), dtype=np.float32)
    seen = np.zeros(n_words, dtype=bool)
    for position, word in enumerate(word_ids):
        if word is not None and not seen[word]:
            seen[word] = True
            out[word] = logits[position]
    return out, seen
