"""Extractive question answering: a span of the context, as start and end token positions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

from runtimes.embedded.pipelines import QuestionAnsweringPipeline
from toolchain.data import Columns, TextDataset, check_path, column_texts, read_rows
from toolchain.errors import ConfigError, InputError
from toolchain.tasks.base import GoldExamples, TaskAdapter, common_encoding, sampled_cross_entropy, soft_loss

_SIDES = ("start_logits", "end_logits")


class QuestionAnswering(TaskAdapter):
    pipeline = QuestionAnsweringPipeline
    auto_class = "AutoModelForQuestionAnswering"
    architecture_suffix = "ForQuestionAnswering"
    agreement_kind = "answer start and end"
    gold_name = "answers"
    dataset_carries_gold = False  # the gold answers are read by `read_gold_examples` only
    student_may_change_tokenizer = False  # start/end are token positions

    def head_size(self, labels: Sequence[str]) -> tuple[int, str]:
        return 2, "outputs"

    # -- data ----------------------------------------------------------------------------------------
    def read_dataset(self, path: Path, label_names: Sequence[str], columns: Columns) -> TextDataset:
        rows = read_rows(check_path(path))
        questions = column_texts(rows, path, columns.question)
        return TextDataset(tuple(column_texts(rows, path, columns.context)), questions=tuple(questions), source=path)

    def read_transfer(self, path: Path, columns: Columns) -> TextDataset:
        if path.suffix.lower() == ".txt":
            raise InputError(f"{path}: question answering learns from question/context pairs; give a table with "
                             f"{columns.question!r} and {columns.context!r} columns")
        return self.read_dataset(path, (), columns)

    def is_supervised(self, data: TextDataset) -> bool:
        return False

    def gold_examples(self, data: TextDataset, labels: Sequence[str]) -> GoldExamples | None:
        return None

    def read_gold_examples(self, path: Path, labels: Sequence[str]) -> GoldExamples:
        """JSONL rows with a question, a context and an answers list (SQuAD's {"text": [...]} too)."""
        requests, answers = [], []
        for i, row in enumerate(read_rows(path), 1):
            gold = row.get("answers")
            if isinstance(gold, dict):
                gold = gold.get("text")
            if not isinstance(row.get("question"), str) or not isinstance(row.get("context"), str) or \
                    not isinstance(gold, list):
                raise InputError(f"{path}: line {i} needs 'question', 'context' and an 'answers' list")
            requests.append({"question": row["question"], "context": row["context"]})
            answers.append([str(a) for a in gold])
        return GoldExamples(requests, answers)

    def gold_row(self, request: Any, gold: Any, words: list[str] | None) -> dict[str, Any]:
        return {**request, "answers": gold}

    def requests_from_texts(self, texts: Sequence[str], question: str) -> list[Any]:
        return [{"question": question, "context": t} for t in texts]

    def soak_request(self, kind: int, text: Callable[..., str], rng: Random) -> tuple[tuple, dict, bool]:
        if kind == 9:
            return (), {"question": "who \ud800?", "context": text()}, True
        return (), {"question": text(2, 8) + "?", "context": text(5, 400 if kind == 0 else 80),
                    "top_k": 1 + kind % 3}, False

    # -- quality and parity ----------------------------------------------------------------------------
    def answers(self, predictions: list[Any], labels: Sequence[str], words: list[list[str]] | None) -> list[Any]:
        return [p["answer"] for p in predictions]

    def quality(self, gold: list[Any], guess: list[Any]) -> dict[str, float]:
        from runtimes.measure.quality import qa_scores

        return qa_scores(guess, gold)

    @property
    def parity_inputs(self) -> tuple:
        from toolchain.parity_inputs import PARITY_QA

        return PARITY_QA

    def encode_parity(self, tokenizer, items: list, common: dict[str, Any]):
        questions, contexts = zip(*items)
        return tokenizer(list(questions), list(contexts), **{**common, "truncation": "only_second"})

    def agreement(self, expected: dict[str, np.ndarray], actual: dict[str, np.ndarray],
                  mask: np.ndarray) -> tuple[int, int]:
        masked = {}
        for name in _SIDES:
            for source, out in (("expected", expected), ("actual", actual)):
                masked[source, name] = np.where(mask.astype(bool), out[name], -np.inf).argmax(-1)
        same = (masked["expected", "start_logits"] == masked["actual", "start_logits"]) & (
            masked["expected", "end_logits"] == masked["actual", "end_logits"]
        )
        return int(same.sum()), same.size

    # -- training, distillation, importance -----------------------------------------------------------
    def encode_examples(self, tokenizer, examples, max_length: int):
        return tokenizer([ex.question or "" for ex in examples], [ex.text for ex in examples],
                         **{**common_encoding(max_length, "np"), "truncation": "only_second"})

    def teacher_rows(self, out, enc, batch) -> list[tuple[np.ndarray, ...]]:
        masks = enc["attention_mask"].astype(bool)
        return [(out.start_logits[row].float().numpy()[masks[row]], out.end_logits[row].float().numpy()[masks[row]])
                for row in range(len(batch))]

    def teacher_arrays(self, rows, examples) -> dict[str, np.ndarray]:
        return {"start": np.concatenate([out[0] for out in rows]),
                "end": np.concatenate([out[1] for out in rows]),
                "lengths": np.array([len(out[0]) for out in rows])}

    def transfer_item(self, example, enc, row, targets, index, offset) -> tuple[dict[str, Any], int]:
        n = int(targets["lengths"][index])
        item = {"teacher_start": targets["start"][offset:offset + n], "teacher_end": targets["end"][offset:offset + n]}
        return item, offset + n

    def distillation_losses(self, out, inputs: dict, temperature: float):
        mask = inputs["attention_mask"].bool()
        soft = sum(soft_loss(_masked(getattr(out, f"{side}_logits"), mask), _masked(inputs[f"teacher_{side}"], mask),
                             temperature)
                   for side in ("start", "end")) / 2
        return soft, None

    def predictions(self, out, enc, batch) -> list[Any]:
        import torch

        mask = torch.as_tensor(enc["attention_mask"]).bool().to(out.start_logits.device)
        starts = out.start_logits.masked_fill(~mask, -1e9).argmax(-1).tolist()
        ends = out.end_logits.masked_fill(~mask, -1e9).argmax(-1).tolist()
        return list(zip(starts, ends))

    def encode_dataset(self, tokenizer, data: TextDataset, max_length: int):
        if data.questions is None:
            raise ConfigError("prune: question answering data needs questions with its contexts")
        return tokenizer(list(data.questions), list(data.texts), **common_encoding(max_length, "pt")), None

    def importance_loss(self, config, out, attention_mask, labels, generator):
        real = attention_mask.bool()
        return sum(sampled_cross_entropy(out[name].masked_fill(~real, float("-inf")), generator) for name in _SIDES)


def _masked(logits, mask):
    width = mask.shape[1]
    return logits[:, :width].masked_fill(~mask, -1e4)
