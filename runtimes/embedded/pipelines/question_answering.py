"""Extractive question answering, decoded the way the (removed) transformers QA pipeline did."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tokenizers import Encoding

from runtimes.common.errors import InputError
from runtimes.common.manifest import Task
from runtimes.embedded.backends.base import check_int
from runtimes.embedded.pipelines.base import POSITIVE_INT, Pipeline, positive_int, softmax
from runtimes.embedded.text import DEFAULT_MAX_CHARS, TextEncoder, as_text_list


class QuestionAnsweringPipeline(Pipeline):
    task = Task.QUESTION_ANSWERING
    per_token = True
    outputs = ("start_logits", "end_logits")
    labelled = False
    takes_pairs = True
    request_options = (("top_k", positive_int, POSITIVE_INT), ("max_answer_len", positive_int, POSITIVE_INT))
    example_body = '{"inputs": {"question": "Who wrote it?", "context": "Ada wrote it."}}'

    def _make_encoder(self, files: dict[str, Path]) -> TextEncoder:
        self.stride = qa_stride(self.manifest.max_length)
        return TextEncoder(files, self.manifest.max_length, pairs=True, stride=self.stride)

    def warmup(self) -> None:
        self(question="warm-up?", context="warm-up")

    def __call__(self, question, context, top_k: int = 1, max_answer_len: int = 15):
        """Answer `question` from `context` (two strings, or two lists of the same length).

        Returns `{"answer", "score", "start", "end"}` per question (a list of `top_k` of them when
        `top_k > 1`); `start`/`end` are character offsets into the context. The score is
        p(start) * p(end) over the context tokens of the best window.
        """
        return answer_questions(self.encoder, self._forward, question, context, top_k, max_answer_len,
                                self.max_chars)


def qa_stride(window: int) -> int:
    """Long contexts are cut into windows that overlap by this many tokens."""
    return min(128, window // 4)


def answer_questions(encoder: TextEncoder, forward: Callable[[list[Encoding]], list[dict[str, np.ndarray]]],
                     question, context, top_k: int = 1, max_answer_len: int = 15,
                     max_chars: int | None = DEFAULT_MAX_CHARS):
    """The QA pipeline's work with any `forward` (encodings -> each one's start/end logits, cut to its
    length): the runtime passes its session, `bench` a PyTorch model, so both decode alike."""
    check_int("top_k", top_k, 1, 1 << 20)
    check_int("max_answer_len", max_answer_len, 1, encoder.max_length)
    questions, single_q = as_text_list(question, "question", max_chars)
    contexts, single_c = as_text_list(context, "context", max_chars)
    if len(questions) != len(contexts):
        raise InputError(f"got {len(questions)} questions but {len(contexts)} contexts")
    encodings = encoder.encode_pairs(questions, contexts)
    windows = [[enc, *enc.overflowing] for enc in encodings]
    flat = [w for group in windows for w in group]
    outputs = iter(forward(flat))
    answers = []
    for ctx, group in zip(contexts, windows):
        candidates = []
        for window in group:
            out = next(outputs)
            candidates += _best_spans(window, out["start_logits"], out["end_logits"], top_k, max_answer_len,
                                      encoder.cls_id)
        candidates.sort(key=lambda c: -c[0])
        found = [{"answer": ctx[s:e], "score": score, "start": s, "end": e} for score, s, e in candidates[:top_k]]
        if not found:  # an empty context has no span to offer
            found = [{"answer": "", "score": 0.0, "start": 0, "end": 0}]
        answers.append(found[0] if top_k == 1 else found)
    return answers[0] if single_q and single_c else answers


def _best_spans(window, start_logits, end_logits, top_k, max_answer_len, cls_id) -> list[tuple[float, int, int]]:
    """Top spans (score, start_char, end_char) of one window, start <= end, both inside the context."""
    in_context = np.array([s == 1 for s in window.sequence_ids])
    if not in_context.any():
        return []
    # As transformers did: the [CLS] token takes part in the softmax (it stands for "no answer"),
    # but never in a span.
    keep = in_context.copy()
    if cls_id is not None and window.ids and window.ids[0] == cls_id:
        keep[0] = True
    p_start = _masked_softmax(start_logits, keep) * in_context
    p_end = _masked_softmax(end_logits, keep) * in_context
    pairs = np.triu(np.outer(p_start, p_end))
    pairs = np.tril(pairs, max_answer_len - 1)
    best = np.argsort(-pairs, axis=None, kind="stable")[:top_k]
    spans = []
    for flat_index in best:
        s, e = np.unravel_index(flat_index, pairs.shape)
        if pairs[s, e] <= 0:
            break
        spans.append((float(pairs[s, e]), int(window.offsets[s][0]), int(window.offsets[e][1])))
    return spans


def _masked_softmax(logits: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return softmax(np.where(keep, logits.astype(np.float64), -np.inf))
