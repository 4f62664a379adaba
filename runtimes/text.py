"""Tokenisation with the `tokenizers` library only, and per-batch padding into numpy arrays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Encoding, Tokenizer

from .errors import ArtifactError, InputError


class TextEncoder:
    """The artifact's fast tokenizer, configured once (truncation at the model's window, no padding).

    It is never reconfigured after construction, so one encoder can serve many threads.
    """

    def __init__(self, folder: Path, max_length: int, pairs: bool = False, stride: int = 0):
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ArtifactError(f"{folder} has no tokenizer.json")
        try:
            self._tk = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a bare Exception for a malformed file
            raise ArtifactError(f"{path} cannot be read: {exc}") from None
        self._tk.no_padding()
        self._tk.enable_truncation(max_length, stride=stride, strategy="only_second" if pairs else "longest_first")
        specials = _special_tokens(folder)
        self.pad_id = self._token_id(specials.get("pad_token"), default=0)
        self.unk_id = self._token_id(specials.get("unk_token"), default=None)
        self.cls_id = self._token_id(specials.get("cls_token"), default=None)

    def _token_id(self, token: str | None, default: int | None) -> int | None:
        found = self._tk.token_to_id(token) if token else None
        return default if found is None else found

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        return self._tk.encode_batch(list(texts))

    def encode_pairs(self, questions: Sequence[str], contexts: Sequence[str]) -> list[Encoding]:
        return self._tk.encode_batch(list(zip(questions, contexts)))

    def id_to_token(self, token_id: int) -> str:
        return self._tk.id_to_token(token_id)

    def tokens_to_string(self, tokens: list[str]) -> str:
        """Join sub-word tokens the way the tokenizer's decoder does ("Love", "##lace" -> "Lovelace")."""
        decoder = self._tk.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def pad(self, encodings: Sequence[Encoding], input_names: Sequence[str]) -> dict[str, np.ndarray]:
        """Right-pad a batch to its longest member and return the model's named inputs."""
        width = max(len(e.ids) for e in encodings)
        fields = {"input_ids": ("ids", self.pad_id), "attention_mask": ("attention_mask", 0),
                  "token_type_ids": ("type_ids", 0)}
        feeds = {}
        for name in input_names:
            if name not in fields:
                raise ArtifactError(f"the model wants an input {name!r} that the runtime cannot build")
            attr, fill = fields[name]
            arr = np.full((len(encodings), width), fill, dtype=np.int64)
            for row, enc in enumerate(encodings):
                values = getattr(enc, attr)
                arr[row, : len(values)] = values
            feeds[name] = arr
        return feeds


def _special_tokens(folder: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            for key, value in data.items():
                if key.endswith("_token") and key not in found:
                    token = value.get("content") if isinstance(value, dict) else value
                    if isinstance(token, str):
                        found[key] = token
    return found


def as_text_list(inputs, what: str = "texts") -> tuple[list[str], bool]:
    """Accept one string or a list of strings; return (list, was_single)."""
    if isinstance(inputs, str):
        return [inputs], True
    if inputs is None:
        raise InputError(f"{what} must be a string or a list of strings, got None")
    if not isinstance(inputs, (list, tuple)):
        raise InputError(f"{what} must be a string or a list of strings, got {type(inputs).__name__}")
    if not inputs:
        raise InputError(f"{what} is an empty list; pass at least one string")
    bad = [i for i, t in enumerate(inputs) if not isinstance(t, str)]
    if bad:
        i = bad[0]
        raise InputError(f"{what}[{i}] is a {type(inputs[i]).__name__}, not a string"
                         + (f" ({len(bad)} non-strings in all)" if len(bad) > 1 else ""))
    return list(inputs), False
