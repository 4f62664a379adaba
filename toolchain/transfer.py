"""The transfer set a student learns from: the training texts, augmented copies, and the teacher's outputs.

Augmentation follows TinyBERT's idea (replace words by plausible neighbours, let the teacher label
the result), but no masked language model ships offline here, so the neighbours come from the
teacher's own token-embedding table: a whole-word token is replaced by one of its nearest whole-word
tokens by cosine similarity. The teacher labels every text, original or augmented, with soft targets.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.common.manifest import Task
from toolchain.data import TextDataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One text of the transfer set: its words (token classification) and its hard label, if any."""

    text: str
    words: tuple[str, ...] | None = None
    question: str | None = None
    label: int | None = None  # sequence classification
    tags: tuple[int, ...] | None = None  # token classification, one per word


def examples_of(data: TextDataset, hard_labels: bool = True) -> list[Example]:
    """The dataset as a list of examples, whatever its task (without its labels unless `hard_labels`)."""
    out = []
    for i, text in enumerate(data.texts):
        out.append(Example(
            text=text,
            words=data.words[i] if data.words is not None else None,
            question=data.questions[i] if data.questions is not None else None,
            label=data.labels[i] if data.labels is not None and hard_labels else None,
            tags=data.tags[i] if data.tags is not None and hard_labels else None,
        ))
    return out


class NeighbourAugmenter:
    """Replace words by their nearest whole-word neighbours in a token-embedding table."""

    def __init__(self, tokenizer, embeddings: np.ndarray, top_k: int = 8, share: float = 0.3, seed: int = 0):
        self.tokenizer = tokenizer
        self.top_k, self.share = top_k, share
        self.rng = random.Random(seed)
        vocab = tokenizer.get_vocab()
        special = set(tokenizer.all_special_ids)
        # whole-word, alphabetic tokens only: replacing "##ing" or punctuation makes noise, not paraphrase
        self._words = {t: i for t, i in vocab.items() if i not in special and t.isalpha() and i < len(embeddings)}
        ids = np.array(sorted(self._words.values()))
        self._ids = ids
        table = embeddings[ids].astype(np.float32)
        self._table = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-6)
        self._row = {int(i): r for r, i in enumerate(ids)}
        self._id_to_word = {i: t for t, i in self._words.items()}
        self._neighbours: dict[int, list[str]] = {}

    def neighbours(self, word: str) -> list[str]:
        token_id = self._words.get(word) or self._words.get(word.lower())
        if token_id is None:
            return []
        if token_id not in self._neighbours:
            similarity = self._table @ self._table[self._row[token_id]]
            best = np.argpartition(-similarity, self.top_k + 1)[: self.top_k + 1]
            best = best[np.argsort(-similarity[best])]
            self._neighbours[token_id] = [self._id_to_word[int(self._ids[b])] for b in best
                                          if int(self._ids[b]) != token_id][: self.top_k]
        return self._neighbours[token_id]

    def words(self, words: Sequence[str]) -> tuple[str, ...]:
        """A copy of `words` with about `share` of them replaced (the same number of words: tags still align)."""
        out = []
        for word in words:
            options = self.neighbours(word) if self.rng.random() < self.share else []
            out.append(self.rng.choice(options) if options else word)
        return tuple(out)

    def augment(self, examples: Sequence[Example], copies: int) -> list[Example]:
        """`copies` new examples per example; hard labels are dropped (the teacher labels them)."""
        new = []
        for _ in range(copies):
            for ex in examples:
                words = self.words(ex.words if ex.words is not None else ex.text.split())
                new.append(Example(" ".join(words), words if ex.words is not None else None, ex.question))
        return new


def transfer_key(teacher_sha256: str, task: Task, examples: Sequence[Example], max_length: int) -> str:
    digest = hashlib.sha256(f"{teacher_sha256}|{task.value}|{max_length}\n".encode())
    for ex in examples:
        digest.update(repr((ex.text, ex.words, ex.question)).encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()[:32]


def load_cached_arrays(folder: Path | None, key: str) -> dict[str, np.ndarray] | None:
    if folder is None:
        return None
    path = folder / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cached teacher outputs %s are unreadable (%s); computing them again", path, exc)
        return None


def store_arrays(folder: Path | None, key: str, arrays: dict[str, Any]) -> None:
    """Write atomically (a hidden file renamed into place), so a killed run leaves nothing half-written."""
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, folder / f"{key}.npz")
    except OSError as exc:
        log.warning("could not cache teacher outputs in %s: %s", folder, exc)
