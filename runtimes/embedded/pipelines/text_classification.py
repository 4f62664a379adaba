"""Text classification, shaped like the transformers `text-classification` pipeline."""

from __future__ import annotations

import numpy as np

from runtimes.common.manifest import Task
from runtimes.embedded.backends.base import check_int
from runtimes.embedded.pipelines.base import POSITIVE_INT, Pipeline, positive_int, softmax
from runtimes.embedded.text import as_text_list


def _positive_int_or_none(value) -> bool:
    return value is None or positive_int(value)


class TextClassificationPipeline(Pipeline):
    task = Task.TEXT_CLASSIFICATION
    per_token = False
    outputs = ("logits",)
    truncations = ("head", "head+tail")
    request_options = (("top_k", _positive_int_or_none, f"{POSITIVE_INT} or null"),)
    labels_per_text = True

    def __call__(self, texts, top_k: int | None = 1):
        """Classify one text or a list of texts.

        `top_k=1` (default) gives one `{"label", "score"}` per text, as transformers does by
        default; another integer gives a list of the k best, and `None` a list of every label.
        """
        if top_k is not None:
            check_int("top_k", top_k, 1, 1 << 31)
        items, single = as_text_list(texts, max_chars=self.max_chars)
        results: list[dict[str, object] | list[dict[str, object]]] = []  # per text: the best, or the top k
        for out in self._forward(self.encoder.encode(items)):
            scores = self._scores(out["logits"])
            if top_k == 1:
                best = int(scores.argmax())
                results.append({"label": self.id2label[best], "score": float(scores[best])})
            else:
                ranked = np.argsort(-scores, kind="stable")[: top_k or len(scores)]
                results.append([{"label": self.id2label[int(i)], "score": float(scores[i])} for i in ranked])
        return results[0] if single else results

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        """Softmax, sigmoid or identity, chosen from the config as transformers chooses it."""
        problem = self.config.get("problem_type")
        if problem == "regression":
            return logits
        if problem == "multi_label_classification" or logits.shape[-1] == 1:
            return 1.0 / (1.0 + np.exp(-logits))
        return softmax(logits)
