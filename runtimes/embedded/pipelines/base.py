"""What every task pipeline shares: batching by length, per-batch padding, the session call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from tokenizers import Encoding

from runtimes.common.errors import ArtifactError
from runtimes.common.manifest import Manifest, Task, parse_json, read_text_file
from runtimes.embedded.backends import Session
from runtimes.embedded.text import DEFAULT_MAX_CHARS, TextEncoder

T = TypeVar("T")
R = TypeVar("R")

_MAX_CONFIG_BYTES = 16 << 20
_PROBLEM_TYPES = (None, "single_label_classification", "multi_label_classification", "regression")


# One request option a served pipeline accepts: its name, a check of a JSON value, and what the check expects.
RequestOption = tuple[str, Callable[[Any], bool], str]
POSITIVE_INT = "a positive integer"


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON and Python both let True pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any) -> bool:
    return is_int(value) and value >= 1


class Pipeline:
    """A loaded artifact plus tokenizer. Callable from many threads at once."""

    task: ClassVar[Task]
    per_token: ClassVar[bool]  # outputs have a sequence axis
    outputs: ClassVar[tuple[str, ...]]  # the model outputs the pipeline decodes
    # What the manifest of an artifact for this task must say: label names (one per class) or none,
    # and which ways of cutting a long text the task's decoding can use.
    labelled: ClassVar[bool] = True
    truncations: ClassVar[tuple[str, ...]] = ("head",)
    # Serving: whether a request item is a (question, context) pair rather than a text, the options a
    # request may pass (name, check, what the check expects), whether the output is one label per text
    # (so an engine may name its classes), and a request body to show a user.
    takes_pairs: ClassVar[bool] = False
    request_options: ClassVar[tuple[RequestOption, ...]] = ()
    labels_per_text: ClassVar[bool] = False
    example_body: ClassVar[str] = '{"inputs": ["a gripping, beautifully shot film"]}'

    @classmethod
    def check_manifest(cls, manifest: Manifest) -> None:
        """What an artifact's manifest must say for this task (the schema's own checks are `Manifest.validate`)."""
        if manifest.truncation not in cls.truncations:
            raise ArtifactError(f"manifest.truncation {manifest.truncation!r} is for text classification only")
        if not cls.labelled and manifest.labels:
            raise ArtifactError("manifest.labels must be empty for question answering")
        if cls.labelled and not manifest.labels:
            raise ArtifactError(f"manifest.labels is empty; a {manifest.task.value} model needs its label names")

    def __init__(self, folder: Path, manifest: Manifest, session: Session, files: dict[str, Path],
                 batch_size: int = 8, max_chars: int | None = DEFAULT_MAX_CHARS):
        self.folder = folder
        self.manifest = manifest
        self.session = session
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.config = self._read_config(files)
        self.id2label = dict(enumerate(manifest.labels))
        self._check_outputs()
        self.encoder = self._make_encoder(files)
        if self.encoder.vocab_size > manifest.vocab_size:
            raise ArtifactError(f"the tokenizer produces {self.encoder.vocab_size} token ids but the model embeds "
                                f"only {manifest.vocab_size}: tokenizer.json does not belong to this model")

    @property
    def backend(self) -> str:
        return self.session.backend

    @property
    def device(self) -> str:
        return self.session.device.value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.folder} on {self.backend}/{self.device}>"

    def _read_config(self, files: dict[str, Path]) -> dict[str, Any]:
        config = parse_json(read_text_file(files["config.json"], _MAX_CONFIG_BYTES), "config.json")
        if not isinstance(config, dict):
            raise ArtifactError("config.json must be a JSON object")
        id2label = config.get("id2label")
        if self.manifest.labels and id2label is not None:
            expected = {str(i): label for i, label in enumerate(self.manifest.labels)}
            if not isinstance(id2label, dict) or {str(k): v for k, v in id2label.items()} != expected:
                raise ArtifactError("config.json's id2label differs from the manifest's labels")
        if config.get("problem_type") not in _PROBLEM_TYPES:
            raise ArtifactError(f"config.json has an unknown problem_type {config.get('problem_type')!r}")
        return config

    def _check_outputs(self) -> None:
        missing = [n for n in self.outputs if n not in self.session.output_names]
        if missing:
            raise ArtifactError(f"a {self.task.value} model must have the output(s) {missing}; "
                                f"this one has {self.session.output_names}")
        if self.manifest.labels:
            width = self.session.output_shapes.get("logits", (None,))[-1]
            if isinstance(width, int) and width != len(self.manifest.labels):
                raise ArtifactError(f"the model outputs {width} scores per item but the manifest names "
                                    f"{len(self.manifest.labels)} labels")

    def _make_encoder(self, files: dict[str, Path]) -> TextEncoder:
        return TextEncoder(files, self.manifest.max_length, truncation=self.manifest.truncation)

    def warmup(self) -> None:
        """Run one tiny batch so the first real call does not pay for lazy initialisation."""
        self._forward(self.encoder.encode(["warm-up"]))

    def _forward(self, encodings: Sequence[Encoding]) -> list[dict[str, np.ndarray]]:
        """Run the model on encodings sorted by length, padded per batch; outputs in input order.

        Per-token outputs are cut to each item's own length.
        """
        names = self.session.input_names

        def run(batch: list[Encoding]) -> dict[str, np.ndarray]:
            outputs = self.session.run_prepared(self.encoder.pad(batch, names))  # valid by construction
            self._check_batch(outputs, len(batch))
            return outputs

        return forward_by_length(encodings, run, self.batch_size, self.outputs, self.per_token)

    def _check_batch(self, outputs: dict[str, np.ndarray], rows: int) -> None:
        for name in self.outputs:
            value = outputs[name]
            if value.shape[:1] != (rows,):
                raise ArtifactError(f"output {name!r} has shape {value.shape} for a batch of {rows}")
        if self.manifest.labels and outputs["logits"].shape[-1] != len(self.manifest.labels):
            raise ArtifactError(f"the model outputs {outputs['logits'].shape[-1]} scores per item but the "
                                f"manifest names {len(self.manifest.labels)} labels")


def map_by_length(items: Sequence[T], length: Callable[[T], int], run: Callable[[list[T]], Sequence[R]],
                  batch_size: int) -> list[R]:
    """`run` on batches of items of similar `length` (little padding); its per-item results in input order."""
    order = sorted(range(len(items)), key=lambda i: length(items[i]))
    results: list = [None] * len(items)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        for index, result in zip(chunk, run([items[i] for i in chunk]), strict=True):
            results[index] = result
    return results


def forward_by_length(encodings: Sequence[Encoding], run: Callable[[list[Encoding]], dict[str, np.ndarray]],
                      batch_size: int, outputs: Sequence[str], per_token: bool) -> list[dict[str, np.ndarray]]:
    """`run` on batches of encodings of similar lengths (little padding); each item's `outputs` in input
    order, per-token ones cut to the item's own length."""
    def rows(batch: list[Encoding]) -> list[dict[str, np.ndarray]]:
        found = run(batch)
        return [{name: found[name][row, :len(item.ids)] if per_token else found[name][row] for name in outputs}
                for row, item in enumerate(batch)]

    return map_by_length(encodings, lambda e: len(e.ids), rows, batch_size)


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
