"""Inspect and load a local Hugging Face checkpoint folder, safely."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.manifest import SourceInfo, Task, sha256_file

from .errors import CheckpointError, UnsupportedModelError
from .tasks import TASKS, task_from_architecture

log = logging.getLogger(__name__)

# Families whose export, parity and fusion are covered by the test-suite.
SUPPORTED_MODEL_TYPES = ("bert", "distilbert", "electra", "mpnet", "roberta")
# These add `padding_idx + 1` to position ids, so fewer positions are usable than configured.
_OFFSET_POSITIONS = ("roberta", "mpnet")

_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass
class Checkpoint:
    """A checkpoint folder that passed the cheap checks; heavy objects load lazily."""

    path: Path
    config: dict[str, Any]
    task: Task
    weight_files: list[Path]
    uses_pickle: bool
    _model: Any = field(default=None, repr=False)

    @property
    def model_type(self) -> str:
        return self.config["model_type"]

    @property
    def architecture(self) -> str:
        return (self.config.get("architectures") or ["?"])[0]

    @cached_property
    def labels(self) -> tuple[str, ...]:
        if self.task is Task.QUESTION_ANSWERING:
            return ()
        id2label = self.config.get("id2label") or {}
        return tuple(id2label[k] for k in sorted(id2label, key=int))

    @cached_property
    def source_info(self) -> SourceInfo:
        hashes = {p.name: sha256_file(p) for p in self.weight_files}
        return SourceInfo(str(self.path.resolve()), self.model_type, self.architecture, hashes)

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # transformers raises many unrelated types for a broken tokenizer
            raise CheckpointError(f"could not load the tokenizer from {self.path}: {exc}") from exc
        if not getattr(tok, "is_fast", False):
            raise CheckpointError(
                f"{self.path} has no fast tokenizer (tokenizer.json); the runtime needs one. "
                "Load it with transformers and call save_pretrained to create it."
            )
        tok.padding_side = "right"
        return tok

    @cached_property
    def max_length(self) -> int:
        limit = int(self.config.get("max_position_embeddings", 512))
        if self.model_type in _OFFSET_POSITIONS:
            limit -= int(self.config.get("pad_token_id", 1)) + 1
        tok_limit = getattr(self.tokenizer, "model_max_length", limit)
        return min(limit, tok_limit) if tok_limit and tok_limit < 1_000_000 else limit

    def encode(self, texts: list[str], input_names: list[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
        """Tokenise a batch as the runtime does (right padding, truncation at the window) into int64 feeds.

        `pad_to` pads every row to that length instead of the batch's longest.
        """
        padding = "max_length" if pad_to else True
        enc = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=pad_to or self.max_length,
                             return_tensors="np")
        return {n: enc[n].astype(np.int64) for n in input_names}

    def load_model(self):
        """Load the PyTorch model in eval mode with eager attention, once."""
        if self._model is None:
            self._model = _load_model(self)
        return self._model


def inspect_checkpoint(path: Path | str, task: Task | None = None, allow_pickle: bool = False) -> Checkpoint:
    """Validate a checkpoint folder without loading weights, and settle its task."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder; pass a Hugging Face checkpoint folder")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path} has no config.json; is it a Hugging Face checkpoint folder?")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError(f"{config_path} has no model_type; is it a transformers config?")
    model_type = config["model_type"]
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"model type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )

    weights, uses_pickle = _find_weights(path, allow_pickle)
    architecture = (config.get("architectures") or [""])[0]
    inferred = task_from_architecture(architecture)
    if task is None:
        if inferred is None:
            raise UnsupportedModelError(
                f"cannot infer the task from architecture {architecture or '(none)'!r}; "
                f"pass --task ({', '.join(t.value for t in Task)})"
            )
        task = inferred
    elif inferred is not None and inferred is not task:
        raise UnsupportedModelError(
            f"--task {task.value} does not match the checkpoint, whose head is {architecture} ({inferred.value})"
        )
    return Checkpoint(path=path, config=config, task=task, weight_files=weights, uses_pickle=uses_pickle)


def _find_weights(path: Path, allow_pickle: bool) -> tuple[list[Path], bool]:
    for name in _SAFE_WEIGHTS:
        if (path / name).is_file():
            return _expand_index(path, name), False
    for name in _PICKLE_WEIGHTS:
        if (path / name).is_file():
            if not allow_pickle:
                raise CheckpointError(
                    f"{path} only has pickle weights ({name}); loading pickle can run arbitrary code. "
                    "Convert them to safetensors, or pass --allow-pickle if you trust the source."
                )
            return _expand_index(path, name), True
    raise CheckpointError(f"{path} has no weights (expected model.safetensors or pytorch_model.bin)")


def _expand_index(path: Path, name: str) -> list[Path]:
    if not name.endswith(".index.json"):
        return [path / name]
    try:
        index = json.loads((path / name).read_text(encoding="utf-8"))
        shards = sorted(set(index["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path / name} is not a valid weight index: {exc}") from None
    missing = [s for s in shards if not (path / s).is_file()]
    if missing:
        raise CheckpointError(f"{path} is missing weight shard(s): {', '.join(missing)}")
    return [path / name] + [path / s for s in shards]


def _load_model(ckpt: Checkpoint):
    import transformers

    auto_class = getattr(transformers, TASKS[ckpt.task].auto_class)
    try:
        model, info = auto_class.from_pretrained(
            ckpt.path,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=not ckpt.uses_pickle,
            attn_implementation="eager",
            output_loading_info=True,
        )
    except Exception as exc:  # corrupt files surface as OSError, ValueError, SafetensorError, ...
        raise CheckpointError(f"could not load the model from {ckpt.path}: {exc}") from exc
    missing = info.get("missing_keys") or []
    if missing:
        shown = ", ".join(sorted(missing)[:5])
        raise CheckpointError(
            f"{ckpt.path} lacks {len(missing)} weight(s) of the {ckpt.task.value} model ({shown}…); "
            "they would be random. Fine-tune the model for this task before exporting it."
        )
    log.info("loaded %s (%s) from %s", ckpt.architecture, ckpt.task.value, ckpt.path)
    return model.eval()
