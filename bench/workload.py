"""What the latency gate and the reference timing feed a model: texts, read from a file or built in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from runtimes.common.errors import InputError
from runtimes.common.manifest import Task
from toolchain.tasks import adapter_for

# A built-in set of review-like sentences from 3 to about 60 words, so that a gate run without
# data still sees the spread of lengths real traffic has. Written for this project.
BUILTIN_TEXTS = (
    "Loved it.",
    "Not worth the ticket.",
    "A quiet, patient film that rewards attention.",
    "The plot wanders, but the two leads hold it together with real warmth.",
    "Too long by half an hour.",
    "Every scene looks like a painting, and the score knows exactly when to keep quiet.",
    "I laughed, then I felt bad for laughing, then I laughed again.",
    "A sequel nobody asked for, made by people who clearly did not want to make it.",
    "The first act is sharp and funny; the second loses its nerve; the third finds it again just in time "
    "for an ending that earns every tear it asks for.",
    "Dull.",
    "Smart writing, clumsy direction, and a supporting cast that steals the film from its star.",
    "If you liked the book you will forgive the changes; if you did not, nothing here will convert you.",
    "It is rare for a children's film to trust its audience this much, and rarer still for the trust to pay off "
    "so completely in the final minutes.",
    "Handsome, earnest and almost entirely forgettable.",
    "The documentary asks hard questions of its subjects and, to its credit, of itself.",
    "A thriller without thrills.",
    "What begins as a familiar romantic comedy turns, somewhere around the hour mark, into something stranger, "
    "sadder and much more interesting than its trailer lets on, though the tonal shift will lose some viewers.",
    "Great fun from start to finish.",
    "The effects have aged, the jokes have not.",
    "A cold, clever puzzle box that forgets to give us a reason to care whether anyone solves it.",
    "Gorgeous to look at and a chore to sit through.",
    "The cast is clearly having a wonderful time, and for ninety minutes so are we.",
    "An ambitious misfire that is still more alive than most of the safe films released this year, and its "
    "best sequence, a long single take through a flooded house at night, is worth the price on its own.",
    "Skip it.",
)
BUILTIN_QUESTION = "What does the reviewer think?"


def load_texts(path: Path | None, limit: int | None = None) -> tuple[str, ...]:
    """Texts from a .txt file (one per line), or the text column of a CSV / JSONL / Parquet file."""
    if path is None:
        texts: Sequence[str] = BUILTIN_TEXTS
    elif path.suffix.lower() == ".txt":
        if not path.is_file():
            raise InputError(f"text file {path} does not exist")
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        from toolchain.data import load_text_dataset

        texts = load_text_dataset(path).texts
    if not texts:
        raise InputError(f"{path} holds no texts")
    return tuple(texts[:limit] if limit else texts)


def requests_for(task: Task, texts: Sequence[str]) -> list[object]:
    """One request per text: the text itself, or a question about it for question answering."""
    return adapter_for(task).requests_from_texts(texts, BUILTIN_QUESTION)


def runner_for(pipe) -> Callable[[object], object]:
    """Call a runtimes pipeline (or anything shaped like one) with one request."""
    def run(request):
        if isinstance(request, dict):
            return pipe(question=request["question"], context=request["context"])
        return pipe(request)

    return run


def digest(requests: Sequence[object], **settings) -> str:
    """A short hash of the workload and its settings: two runs compare only if these match."""
    blob = json.dumps({"requests": list(requests), **settings}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
