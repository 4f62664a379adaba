"""What every task pipeline shares: batching by length, per-batch padding, the session call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from tokenizers import Encoding

from ..backends import Session
from ..errors import InputError
from ..manifest import Manifest, Task
from ..text import TextEncoder


class Pipeline:
    """A loaded artifact plus tokenizer. Callable from many threads at once."""

    task: ClassVar[Task]
    per_token: ClassVar[bool]  # outputs have a sequence axis

    def __init__(self, folder: Path, manifest: Manifest, session: Session, batch_size: int = 8):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.folder = folder
        self.manifest = manifest
        self.session = session
        self.batch_size = batch_size
        self.config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.id2label = {int(k): v for k, v in (self.config.get("id2label") or {}).items()}
        self.encoder = self._make_encoder()

    @property
    def backend(self) -> str:
        return self.session.backend

    @property
    def device(self) -> str:
        return self.session.device.value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.folder} on {self.backend}/{self.device}>"

    def _make_encoder(self) -> TextEncoder:
        return TextEncoder(self.folder, self.manifest.max_length)

    def warmup(self) -> None:
        """Run one tiny batch so the first real call does not pay for lazy initialisation."""
        self._forward(self.encoder.encode(["warm-up"]))

    def _forward(self, encodings: Sequence[Encoding]) -> list[dict[str, np.ndarray]]:
        """Run the model on encodings sorted by length, padded per batch; outputs in input order.

        Per-token outputs are cut to each item's own length.
        """
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        names = self.session.input_names
        results: list[dict[str, np.ndarray]] = [{} for _ in encodings]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            outputs = self.session.run(self.encoder.pad([encodings[i] for i in chunk], names))
            for row, index in enumerate(chunk):
                length = len(encodings[index].ids)
                results[index] = {
                    name: value[row, :length] if self.per_token else value[row] for name, value in outputs.items()
                }
        return results


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
