"""Task quality metrics: classification, entity-level NER and extractive QA.

scikit-learn and seqeval are imported inside the functions that need them: an app that imports
`runtimes` never loads them, and the toolchain's accuracy check needs numpy only.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Sequence

import numpy as np


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Share of exact matches (what `sklearn.metrics.accuracy_score` computes), numpy only."""
    _same_length(y_true, y_pred)
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def classification_scores(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1 (scikit-learn): macro-F1 weighs every class alike, so a model that
    gives up on a rare class cannot hide behind accuracy."""
    from sklearn.metrics import f1_score

    _same_length(y_true, y_pred)
    return {"accuracy": accuracy(y_true, y_pred),
            "macro_f1": float(f1_score(list(y_true), list(y_pred), average="macro", zero_division=0))}


def entity_scores(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 over IOB2 tag sequences (seqeval, CoNLL rules)."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    _same_length(true_tags, pred_tags)
    for i, (t, p) in enumerate(zip(true_tags, pred_tags)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted")
    true_lists, pred_lists = [list(s) for s in true_tags], [list(s) for s in pred_tags]
    return {"entity_precision": float(precision_score(true_lists, pred_lists)),
            "entity_recall": float(recall_score(true_lists, pred_lists)),
            "entity_f1": float(f1_score(true_lists, pred_lists))}


def words_to_tags(words: Sequence[str], entities: Sequence[dict]) -> list[str]:
    """IOB2 tags per word of `" ".join(words)` from grouped entities (`entity_group`, `start`, `end`).

    This is how a pipeline's character spans are scored against word-level gold tags: a word takes
    the type of the entity that overlaps it; the first word of each entity is B-, the rest I-.
    """
    tags, position, spans = [], 0, []
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + 1
    previous = None
    for start, end in spans:
        hit = next((e for e in entities if e["start"] < end and e["end"] > start), None)
        if hit is None:
            tags.append("O")
            previous = None
            continue
        tags.append(("I-" if hit is previous else "B-") + hit["entity_group"])
        previous = hit
    return tags


def qa_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """SQuAD exact match and token F1 (fractions, 0 to 1), each the best over the gold answers of a question.

    Answers are compared after SQuAD's normalisation: lower case, no punctuation, no articles,
    single spaces. A question without gold answers expects an empty prediction (SQuAD 2.0).
    """
    _same_length(predictions, answers)
    if not predictions:
        raise ValueError("no predictions to score")
    em = f1 = 0.0
    for predicted, gold in zip(predictions, answers):
        gold = list(gold) or [""]
        em += max(float(_normalise(predicted) == _normalise(g)) for g in gold)
        f1 += max(_token_f1(predicted, g) for g in gold)
    return {"exact_match": em / len(predictions), "f1": f1 / len(predictions)}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def _normalise(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(predicted: str, gold: str) -> float:
    p, g = _normalise(predicted).split(), _normalise(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} references but {len(b)} predictions")


BOOTSTRAP_ROUNDS = 200


def paired_drop_bound(drop_on: Callable[[Sequence[int]], float], n: int, confidence: float,
                      rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> float:
    """The drop that a candidate stays under with probability `confidence`, by a paired bootstrap.

    `drop_on(rows)` scores the baseline and the candidate on the same examples (`rows`, indices with
    repeats) and returns the candidate's drop. Resampling both together cancels what they agree on,
    so only their disagreements carry uncertainty. The resamples are seeded: every candidate of one
    search is judged on the same ones.
    """
    drops = _resampled_drops(drop_on, n, rounds, seed)
    return drops[min(len(drops) - 1, int(confidence * len(drops)))]


def paired_drop_interval(drop_on: Callable[[Sequence[int]], float], n: int, confidence: float,
                         rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> tuple[float, float]:
    """The drop's two-sided percentile interval at `confidence`, from the same paired, seeded resamples as
    `paired_drop_bound` (what a reader of a test score needs: how far the point estimate may be off)."""
    drops = _resampled_drops(drop_on, n, rounds, seed)
    tail = (1 - confidence) / 2
    return drops[int(tail * len(drops))], drops[min(len(drops) - 1, int((1 - tail) * len(drops)))]


def _resampled_drops(drop_on: Callable[[Sequence[int]], float], n: int, rounds: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return sorted(drop_on(rng.integers(0, n, size=n).tolist()) for _ in range(rounds))
