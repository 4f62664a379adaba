"""Token classification (NER) with "simple" aggregation, like the transformers pipeline."""

from __future__ import annotations

from runtimes.common.errors import InputError
from runtimes.common.manifest import Task
from runtimes.embedded.pipelines.base import Pipeline, softmax
from runtimes.embedded.text import as_text_list


def _string_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class TokenClassificationPipeline(Pipeline):
    task = Task.TOKEN_CLASSIFICATION
    per_token = True
    outputs = ("logits",)
    request_options = (("ignore_labels", _string_list, "a list of label strings"),)

    def __call__(self, texts, ignore_labels: tuple[str, ...] = ("O",)):
        """Entities per text: `entity_group`, `score`, `word`, and `start`/`end` character offsets.

        Consecutive tokens with the same entity type are merged unless a token starts a new entity
        (`B-`); the group's score is the mean of its tokens' scores.
        """
        if isinstance(ignore_labels, str) or not isinstance(ignore_labels, (tuple, list, set, frozenset)) \
                or not all(isinstance(label, str) for label in ignore_labels):
            raise InputError(f"ignore_labels must be a tuple of label names, got {ignore_labels!r}")
        items, single = as_text_list(texts, max_chars=self.max_chars)
        encodings = self.encoder.encode(items)
        results = [
            self._entities(text, enc, out["logits"], ignore_labels)
            for text, enc, out in zip(items, encodings, self._forward(encodings))
        ]
        return results[0] if single else results

    def _entities(self, text: str, enc, logits, ignore_labels) -> list[dict]:
        scores = softmax(logits)
        tokens = []
        for i, (token_id, special) in enumerate(zip(enc.ids, enc.special_tokens_mask)):
            if special:
                continue
            start, end = enc.offsets[i]
            best = int(scores[i].argmax())
            word = text[start:end] if token_id == self.encoder.unk_id else self.encoder.id_to_token(token_id)
            tokens.append({"entity": self.id2label[best], "score": float(scores[i, best]),
                           "word": word, "start": start, "end": end})
        groups = [self._merge(g) for g in _group(tokens)]
        return [g for g in groups if g["entity_group"] not in ignore_labels]

    def _merge(self, tokens: list[dict]) -> dict:
        return {
            "entity_group": tokens[0]["entity"].split("-", 1)[-1],
            "score": sum(t["score"] for t in tokens) / len(tokens),
            "word": self.encoder.tokens_to_string([t["word"] for t in tokens]),
            "start": tokens[0]["start"],
            "end": tokens[-1]["end"],
        }


def _tag(label: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER"; labels without a B-/I- prefix count as inside ("I", "O")."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _group(tokens: list[dict]) -> list[list[dict]]:
    groups: list[list[dict]] = []
    for token in tokens:
        bi, tag = _tag(token["entity"])
        if groups and bi != "B" and _tag(groups[-1][-1]["entity"])[1] == tag:
            groups[-1].append(token)
        else:
            groups.append([token])
    return groups
