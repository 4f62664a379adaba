"""What `bench` measures: an artifact (through `runtimes`) or a PyTorch checkpoint (the baseline).

Each subject offers the same runners, so every model is timed by the same loop on the same inputs:
end to end (tokenise, run, decode; batch 1 and a larger batch) and the network alone (on token ids,
from real texts or of a fixed shape).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.workload import runner_for
from runtimes import load
from runtimes.common.errors import InputError
from runtimes.common.manifest import MANIFEST_NAME
from runtimes.measure import artifact_size_bytes, checkpoint_size_bytes
from toolchain.tasks import adapter_for

log = logging.getLogger(__name__)

Runner = Callable[[Any], Any]


def fixed_feeds(input_names: Sequence[str], batch: int, sequence: int,
                token_ids: Sequence[int]) -> dict[str, np.ndarray]:
    """Inputs of an exact shape: real token ids repeated to the length, every position attended."""
    ids = np.resize(np.asarray(token_ids, dtype=np.int64), sequence)
    arrays = {"input_ids": np.tile(ids, (batch, 1)), "attention_mask": np.ones((batch, sequence), np.int64),
              "token_type_ids": np.zeros((batch, sequence), np.int64)}
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise InputError(f"cannot build fixed-shape inputs for {', '.join(missing)}")
    return {n: arrays[n] for n in input_names}


@dataclass
class ArtifactSubject:
    """An artifact folder served by `runtimes.load`, as an app would."""

    path: Path
    threads: int | None
    backend_name: str = "auto"
    name: str = ""
    max_length: int | None = None  # truncate at fewer tokens than the artifact's window
    spinning: bool | None = None
    truncation: str | None = None  # "head" or "head+tail"; None: the artifact's own
    kind = "artifact"

    def __post_init__(self) -> None:
        self.name = self.name or self.path.name
        self.pipe = self._load(self.backend_name, 1)
        self.task = self.pipe.manifest.task
        self.labels = tuple(self.pipe.manifest.labels)
        self._batched: dict[int, Any] = {}

    @property
    def backend(self) -> str:
        return f"{self.pipe.backend}/{self.pipe.device}"

    def _load(self, backend: str, batch: int):
        return load(self.path, backend=backend, threads=self.threads, batch_size=batch, max_length=self.max_length,
                    spinning=self.spinning, truncation=self.truncation)

    @property
    def window(self) -> int:
        """The longest input in tokens the artifact takes."""
        return self.pipe.manifest.max_length

    def size_mb(self) -> float:
        return artifact_size_bytes(self.path) / 1e6

    def end_to_end(self) -> Runner:
        return runner_for(self.pipe)

    def batched(self, batch: int) -> Runner:
        """A second pipeline on the same artifact that batches `batch` requests per call."""
        if batch not in self._batched:
            self._batched[batch] = self._load(self.pipe.backend, batch)
        pipe = self._batched[batch]
        return lambda requests: _call_many(pipe, requests)

    def encode(self, request: Any) -> dict[str, np.ndarray]:
        """One request's model inputs, as the pipeline builds them (a QA request: its first window)."""
        encoder = self.pipe.encoder
        if isinstance(request, dict):
            first = encoder.encode_pairs([request["question"]], [request["context"]])
        else:
            first = encoder.encode([request])
        return encoder.pad(first, self.pipe.session.input_names)

    def network(self) -> Runner:
        session = self.pipe.session
        return lambda feeds: session.run(feeds)

    @property
    def input_names(self) -> list[str]:
        return self.pipe.session.input_names

    def predict(self, requests: Sequence[Any], batch: int = 32) -> list[Any]:
        return self.batched(batch)(list(requests))


@dataclass
class CheckpointSubject:
    """A PyTorch checkpoint folder run by transformers: the baseline an artifact is compared with."""

    path: Path
    threads: int | None
    name: str = ""
    kind = "checkpoint"
    backend = "pytorch/cpu"

    def __post_init__(self) -> None:
        import torch

        from toolchain.checkpoint import inspect_checkpoint

        self.name = self.name or "PyTorch fp32"
        if self.threads:
            torch.set_num_threads(self.threads)
        self.ckpt = inspect_checkpoint(self.path)
        self.task = self.ckpt.task
        self.labels = self.ckpt.labels
        self.model = self.ckpt.load_model()
        self._pipe = None

    @property
    def window(self) -> int:
        """The longest input in tokens the model takes (its position table)."""
        return self.ckpt.max_length

    def size_mb(self) -> float:
        return checkpoint_size_bytes(self.path) / 1e6

    def _hf_pipeline(self):
        if self._pipe is None:
            from transformers import pipeline

            options = adapter_for(self.task).transformers_pipeline
            if options is None:  # transformers 5 removed its QA pipeline
                self._pipe = TorchQuestionAnswering(self)
                return self._pipe
            self._pipe = pipeline(self.task.value, model=self.model, tokenizer=self.ckpt.tokenizer, device="cpu",
                                  **options)
        return self._pipe

    def end_to_end(self) -> Runner:
        pipe = self._hf_pipeline()
        if isinstance(pipe, TorchQuestionAnswering):
            return runner_for(pipe)
        return lambda text: pipe(text, **self._call_options())

    def _call_options(self) -> dict:
        return adapter_for(self.task).transformers_call

    def batched(self, batch: int) -> Runner:
        pipe = self._hf_pipeline()
        if isinstance(pipe, TorchQuestionAnswering):
            return lambda requests: _call_many(TorchQuestionAnswering(self, batch), list(requests))
        return lambda texts: pipe(list(texts), batch_size=batch, **self._call_options())

    @property
    def input_names(self) -> list[str]:
        names = ["input_ids", "attention_mask"]
        return names + (["token_type_ids"] if self.ckpt.config.get("type_vocab_size", 0) > 1 else [])

    def encode(self, request: Any) -> dict[str, np.ndarray]:
        """One request's model inputs (a QA request: the first window of its question and context)."""
        if isinstance(request, dict):
            encoder = self._hf_pipeline().encoder
            return encoder.pad(encoder.encode_pairs([request["question"]], [request["context"]]), self.input_names)
        return self.ckpt.encode([request], self.input_names)

    def network(self) -> Runner:
        import torch

        def run(feeds):
            with torch.inference_mode():
                return self.model(**{k: torch.from_numpy(v) for k, v in feeds.items()})

        return run

    def predict(self, requests: Sequence[Any], batch: int = 32) -> list[Any]:
        return self.batched(batch)(list(requests))


QA_OUTPUTS = ("start_logits", "end_logits")


class TorchQuestionAnswering:
    """Extractive QA on the PyTorch model, with the runtime's tokenisation, windows and span decoding
    (`runtimes.embedded.pipelines.question_answering.answer_questions`): transformers 5 has no QA pipeline, and a
    baseline that decodes like the artifacts measures only what the model changes."""

    def __init__(self, subject: CheckpointSubject, batch_size: int = 8):
        from runtimes.embedded.pipelines.question_answering import qa_stride
        from runtimes.embedded.text import TextEncoder

        ckpt = subject.ckpt
        files = {name: ckpt.path / name for name in ("tokenizer.json", "tokenizer_config.json",
                                                     "special_tokens_map.json") if (ckpt.path / name).is_file()}
        self.encoder = TextEncoder(files, ckpt.max_length, pairs=True, stride=qa_stride(ckpt.max_length))
        self.subject, self.batch_size = subject, batch_size

    def _forward(self, encodings) -> list[dict[str, np.ndarray]]:
        """The model on batches of similar lengths, as the runtime batches them."""
        from runtimes.embedded.pipelines.base import forward_by_length

        network, names = self.subject.network(), self.subject.input_names

        def run(batch) -> dict[str, np.ndarray]:
            out = network(self.encoder.pad(batch, names))
            return {k: getattr(out, k).float().numpy() for k in QA_OUTPUTS}

        return forward_by_length(encodings, run, self.batch_size, QA_OUTPUTS, per_token=True)

    def __call__(self, question, context, top_k: int = 1, max_answer_len: int = 15):
        from runtimes.embedded.pipelines.question_answering import answer_questions

        return answer_questions(self.encoder, self._forward, question, context, top_k, max_answer_len, None)


def _call_many(pipe, requests: list[Any]) -> list[Any]:
    if requests and isinstance(requests[0], dict):
        return pipe(question=[r["question"] for r in requests], context=[r["context"] for r in requests])
    return pipe(requests)


def split_name(spec: str) -> tuple[str, Path]:
    """'NAME=PATH' -> (NAME, PATH); a bare path keeps the default name ('')."""
    name, sep, path = spec.partition("=")
    return (name, Path(path)) if sep and name and not Path(spec).exists() else ("", Path(spec))


def open_subject(spec: str, threads: int | None, backend: str = "auto"):
    """An artifact (a folder with a manifest) or a PyTorch checkpoint (a folder with config.json),
    given as PATH or NAME=PATH."""
    name, path = split_name(spec)
    if not path.is_dir():
        raise InputError(f"{path} is not a folder")
    if (path / MANIFEST_NAME).is_file():
        return ArtifactSubject(path, threads, backend, name)
    if (path / "config.json").is_file():
        return CheckpointSubject(path, threads, name)
    raise InputError(f"{path} is neither an artifact (no {MANIFEST_NAME}) nor a checkpoint (no config.json)")
