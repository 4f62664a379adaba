"""Inspect and load a local Hugging Face checkpoint folder, safely."""

from __future__ import annotations

import hashlib
import json
import logging
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.common.manifest import MAX_LENGTH_LIMIT, SourceInfo, Task, sha256_file
from toolchain.errors import CheckpointError, UnsupportedModelError
from toolchain.families import FAMILIES, Family, family_of
from toolchain.surgery import is_pruned, load_pruned
from toolchain.tasks import adapter_for, task_from_architecture

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = tuple(FAMILIES)

_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# The files a fast or slow tokenizer is built from; at least one must sit in the checkpoint itself.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
_TOKENIZER_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "merges.txt")
_MAX_CONFIG_BYTES = 16 << 20
# More than this share of [UNK] on ordinary English means the tokenizer is not the model's.
_MAX_UNKNOWN_SHARE = 0.5


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
    def family(self) -> Family:
        return family_of(self.model_type)

    @cached_property
    def file_hashes(self) -> dict[str, str]:
        """sha256 of every file a load reads: config, weights and tokenizer files."""
        names = ("config.json", *TOKENIZER_FILES, *_TOKENIZER_SIDE_FILES)
        files = {self.path / n for n in names if (self.path / n).is_file()} | set(self.weight_files)
        return {p.name: sha256_file(p) for p in sorted(files)}

    @cached_property
    def sha256(self) -> str:
        """One digest for the checkpoint: of its files' names and hashes."""
        digest = hashlib.sha256()
        for name, file_digest in self.file_hashes.items():
            digest.update(f"{name}\0{file_digest}\n".encode())
        return digest.hexdigest()

    @property
    def architecture(self) -> str:
        return (self.config.get("architectures") or ["?"])[0]

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """Label names by output position (checked to be ids 0..n-1 at inspection)."""
        if not adapter_for(self.task).labelled:
            return ()
        # Without id2label in config.json, transformers names num_labels outputs LABEL_0, LABEL_1, ...
        id2label = self.config.get("id2label") or self.load_model().config.id2label
        return tuple(str(id2label[k]) for k in sorted(id2label, key=int))

    @cached_property
    def source_info(self) -> SourceInfo:
        hashes = {p.name: self.file_hashes[p.name] for p in self.weight_files}
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
        _check_tokenizer_fits(tok, self.config, self.path)
        tok.padding_side = "right"
        return tok

    @cached_property
    def max_length(self) -> int:
        """The longest input in tokens: the position table (less RoBERTa's offset), or the tokenizer's limit."""
        limit = _config_int(self.config, "max_position_embeddings", 512)
        if self.family.position_offset:
            limit -= _config_int(self.config, "pad_token_id", 1) + 1
        tok_limit = getattr(self.tokenizer, "model_max_length", limit)
        if isinstance(tok_limit, int) and 0 < tok_limit < limit:
            limit = tok_limit
        if not 2 <= limit <= MAX_LENGTH_LIMIT:
            raise CheckpointError(f"{self.path}: a window of {limit} tokens (max_position_embeddings) is not usable")
        return limit

    def encode(self, texts: list[str], input_names: list[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
        """Tokenise a batch as the runtime does (right padding, truncation at the window) into int64 feeds.

        `pad_to` pads every row to that length instead of the batch's longest.
        """
        padding = "max_length" if pad_to else True
        enc = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=pad_to or self.max_length,
                             return_tensors="np")
        return {n: enc[n].astype(np.int64) for n in input_names}

    def load_model(self):
        """Load the PyTorch model in eval mode with eager attention, once (shared: never modify it)."""
        if self._model is None:
            self._model = _load_model(self)
        return self._model

    def load_fresh_model(self):
        """A new copy of the PyTorch model, for steps that change it."""
        return _load_model(self)


def inspect_checkpoint(path: Path | str, task: Task | None = None, allow_pickle: bool = False) -> Checkpoint:
    """Validate a checkpoint folder without loading weights, and settle its task.

    Refuses, each with its own message: a missing folder or config, special files (FIFOs, devices,
    broken links) that would block or crash a reader, an unsupported model type, label ids that are
    not 0..n-1, a folder without its own tokenizer files, and weights that are pickles (unless
    `allow_pickle`), judged by the files' content rather than their names.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder; pass a Hugging Face checkpoint folder")
    _check_entries(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path} has no config.json; is it a Hugging Face checkpoint folder?")
    config = _read_json(config_path, _MAX_CONFIG_BYTES)
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise CheckpointError(f"{config_path} has no model_type; is it a transformers config?")
    family_of(config["model_type"])
    architectures = config.get("architectures") or [""]
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise CheckpointError(f"{config_path}: architectures must be a list of class names")
    architecture = architectures[0]
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
            f"`task` {task.value} does not match the checkpoint, whose head is {architecture} ({inferred.value})"
        )
    if adapter_for(task).labelled:
        _check_labels(config, config_path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...). Without them every word "
            "would become [UNK]. Save the tokenizer next to the model: tokenizer.save_pretrained(folder)"
        )
    weights, uses_pickle = _find_weights(path, allow_pickle)
    return Checkpoint(path=path, config=config, task=task, weight_files=weights, uses_pickle=uses_pickle)


_PROBE_TEXT = ("The film was great, and the report was written by Ada in Paris. Where is the station? "
               "It opened in 1999 and people still talk about it.")


def _check_tokenizer_fits(tok, config: dict, path: Path) -> None:
    """The tokenizer must produce ids the model embeds, and must know ordinary words.

    transformers builds an empty-vocabulary tokenizer from config.json alone, which turns every word
    into [UNK]; parity would not notice, since PyTorch and ONNX would share the broken tokenizer.
    """
    size = len(tok)
    rows = config.get("vocab_size")
    if isinstance(rows, int) and not isinstance(rows, bool):
        if size > rows:
            raise CheckpointError(f"the tokenizer in {path} has {size} tokens but the model embeds only {rows}: "
                                  "they do not belong together")
        if size < rows // 2:
            raise CheckpointError(f"the tokenizer in {path} has {size} tokens for a model that embeds {rows}: "
                                  "it is not the tokenizer the model was trained with")
    unk = tok.unk_token_id
    if unk is not None:
        ids = tok(_PROBE_TEXT, add_special_tokens=False)["input_ids"]
        share = sum(i == unk for i in ids) / max(len(ids), 1)
        if share > _MAX_UNKNOWN_SHARE:
            raise CheckpointError(f"the tokenizer in {path} maps {share:.0%} of an ordinary English sentence to "
                                  f"{tok.unk_token}: its vocabulary is missing or wrong")


def _config_int(config: dict, key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"config.json: {key} must be an integer, got {value!r}")
    return value


def _check_entries(path: Path) -> None:
    """Refuse entries that would block or crash a reader before any library opens them."""
    for entry in path.iterdir():
        if entry.is_symlink() and not entry.exists():
            raise CheckpointError(f"{entry} is a broken symbolic link")
        mode = entry.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise CheckpointError(f"{entry} is not a regular file (a FIFO, socket or device); refusing to read it")


def _read_json(path: Path, limit: int) -> Any:
    try:
        if path.stat().st_size > limit:
            raise CheckpointError(f"{path} is larger than {limit >> 20} MB; it is not a model config")
        text = path.read_text(encoding="utf-8")
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a model config") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from None


def _check_labels(config: dict, config_path: Path) -> None:
    """Label ids must be exactly 0..n-1 with distinct string names: the runtime indexes scores by them."""
    id2label = config.get("id2label")
    if id2label is None:
        return  # transformers then uses num_labels generic names, which the export records
    if not isinstance(id2label, dict) or not id2label:
        raise CheckpointError(f"{config_path}: id2label must be a non-empty object of id -> label name")
    try:
        ids = sorted(int(k) for k in id2label)
    except (TypeError, ValueError):
        raise CheckpointError(f"{config_path}: id2label keys must be integers, got {sorted(id2label)[:5]}") from None
    if ids != list(range(len(ids))):
        shown = ", ".join(map(str, ids[:8])) + (" ..." if len(ids) > 8 else "")
        raise CheckpointError(f"{config_path}: label ids must be 0..{len(ids) - 1}, got {shown}; the model's "
                              "outputs are indexed by position, so these ids would name the wrong scores")
    names = list(id2label.values())
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise CheckpointError(f"{config_path}: label names must be distinct, non-empty strings")


def _find_weights(path: Path, allow_pickle: bool) -> tuple[list[Path], bool]:
    """The weight files, and whether they are pickles; decided by what each file holds."""
    for name in _SAFE_WEIGHTS:
        if (path / name).is_file():
            files = _expand_index(path, name)
            shards = [f for f in files if not f.name.endswith(".index.json")]
            not_safe = [f.name for f in shards if not f.name.endswith(".safetensors") or not _is_safetensors(f)]
            if not_safe:
                raise CheckpointError(
                    f"{path / name} names weight files that are not safetensors ({', '.join(not_safe[:3])}); "
                    "they may be pickles, which can run code when loaded. Convert them to safetensors."
                )
            return files, False
    for name in _PICKLE_WEIGHTS:
        if (path / name).is_file():
            if not allow_pickle:
                raise CheckpointError(
                    f"{path} only has pickle weights ({name}); loading pickle can run arbitrary code. "
                    "Convert them to safetensors, or pass --allow-pickle if you trust the source."
                )
            return _expand_index(path, name), True
    raise CheckpointError(f"{path} has no weights (expected model.safetensors or pytorch_model.bin)")


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with the little-endian length of a JSON header, then the header's '{'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    header_length = int.from_bytes(head[:8], "little")
    return 0 < header_length <= min(size - 8, 100 << 20) and head[8:9] == b"{"


def _expand_index(path: Path, name: str) -> list[Path]:
    if not name.endswith(".index.json"):
        return [path / name]
    index = _read_json(path / name, _MAX_CONFIG_BYTES)
    try:
        shards = sorted(set(index["weight_map"].values()))
        if not all(isinstance(s, str) for s in shards):
            raise TypeError("shard names must be strings")
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path / name} is not a valid weight index: {exc}") from None
    bad = [s for s in shards if Path(s).name != s or s in (".", "..")]
    if bad:
        raise CheckpointError(f"{path / name} names shards outside the checkpoint folder: {', '.join(bad[:3])}")
    missing = [s for s in shards if not (path / s).is_file()]
    if missing:
        raise CheckpointError(f"{path} is missing weight shard(s): {', '.join(missing)}")
    return [path / name] + [path / s for s in shards]


def save_checkpoint(model, tokenizer, folder: Path, task: Task) -> Checkpoint:
    """Write a PyTorch model and its tokenizer as a normal checkpoint folder (safetensors) and inspect it.

    Torch-stage steps end here: the folder opens with transformers and with `inspect_checkpoint`.
    """
    # Under torchrun every rank keeps its own copy in its own work folder (rank 0 alone publishes the
    # artifact), but transformers writes checkpoints on rank 0 only once a process group exists.
    model.should_save_on_this_rank = lambda is_main_process: True
    try:
        model.save_pretrained(folder, safe_serialization=True)
    finally:
        del model.should_save_on_this_rank
    tokenizer.save_pretrained(folder)
    return inspect_checkpoint(folder, task=task)


_HEAD_WEIGHTS = ("classifier.weight", "classifier.out_proj.weight", "qa_outputs.weight", "score.weight")


def _shape_mismatch(ckpt: Checkpoint) -> str:
    """Say which shapes disagree, where the weights' header tells: transformers only points at a log table."""
    outputs = None
    try:
        from safetensors import safe_open

        for file in ckpt.weight_files:
            if file.suffix != ".safetensors":
                continue
            with safe_open(str(file), framework="np") as weights:
                for key in weights.keys():
                    if key.endswith(_HEAD_WEIGHTS):
                        outputs = weights.get_slice(key).get_shape()[0]
    except Exception:  # the header itself is damaged: say what can be said
        outputs = None
    expected, what = adapter_for(ckpt.task).head_size(ckpt.labels)
    if outputs is not None and outputs != expected:
        return (f"config.json gives {expected} {what} but the weights' task head has {outputs} outputs; "
                "the config and the weights belong to different models")
    return ("the weights' tensor shapes do not match config.json (layer sizes, vocabulary or labels); the config "
            "and the weights belong to different models")


def _load_model(ckpt: Checkpoint):
    import transformers

    auto_class = getattr(transformers, adapter_for(ckpt.task).auto_class)
    if is_pruned(ckpt.config):  # layers of different shapes: transformers would build them all at full size
        model = load_pruned(ckpt.path, auto_class, ckpt.family, ckpt.config, ckpt.weight_files)
        log.info("loaded pruned %s (%s) from %s", ckpt.architecture, ckpt.task.value, ckpt.path)
        return model
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
        if "mismatch" in str(exc).lower():
            raise CheckpointError(f"could not load the model from {ckpt.path}: {_shape_mismatch(ckpt)}") from exc
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
