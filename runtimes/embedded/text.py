"""Tokenisation with the `tokenizers` library only, per-batch padding, and input checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tokenizers import Encoding, Tokenizer

from runtimes.common.errors import ArtifactError, InputError
from runtimes.common.manifest import HEAD_TAIL, TRUNCATIONS, parse_json, read_text_file

# Texts longer than this (in characters) are refused by default: the tokenizer would read the
# whole string before truncating it (a 10 MB text costs about 10 s and 1.4 GB). `load(max_chars=)`
# changes it; None lifts it.
DEFAULT_MAX_CHARS = 100_000
_MAX_TOKENIZER_BYTES = 256 << 20
_MAX_SMALL_JSON_BYTES = 4 << 20
_FIELDS = {"input_ids": ("ids", None), "attention_mask": ("attention_mask", 0), "token_type_ids": ("type_ids", 0)}
INPUT_NAMES = tuple(_FIELDS)  # the model inputs the runtime knows how to build

T = TypeVar("T")


def _guarded(call: Callable[[], T], what: str) -> T:
    """Run a tokenizers call; its errors become `InputError`.

    A Rust panic surfaces as pyo3's PanicException, a BaseException that `except Exception` would
    miss and that would kill the calling thread: it is converted too.
    """
    try:
        return call()
    except Exception as exc:
        raise InputError(f"the tokenizer could not encode {what}: {exc}") from None
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        raise InputError(f"the tokenizer could not encode {what}: {str(exc).splitlines()[0]}") from None


def head_tail_split(room: int) -> tuple[int, int]:
    """(head, tail) tokens that "head+tail" keeps of a text too long for `room` tokens: a quarter from the
    start and the rest from the end, as Sun et al. (2019) found best for long reviews (128 + 382 of 510)."""
    head = room // 4
    return head, room - head


class _Kept:
    """What head+tail truncation kept of an overlong text: the parts of an `Encoding` that batching reads."""

    __slots__ = ("attention_mask", "ids", "overflowing", "type_ids")

    def __init__(self, ids: list[int], type_ids: list[int]):
        self.ids, self.type_ids, self.attention_mask = ids, type_ids, [1] * len(ids)
        self.overflowing: list[_Kept] = []  # nothing of what was kept overflows


class TextEncoder:
    """The artifact's fast tokenizer, configured once (truncation at the model's window, no padding).

    It is never reconfigured after construction, so one encoder can serve many threads. `files`
    are the artifact's verified files by name: only those are read. `truncation="head+tail"` (single
    texts only) keeps the start and the end of a text that overflows the window instead of its start.
    """

    def __init__(self, files: dict[str, Path], max_length: int, pairs: bool = False, stride: int = 0,
                 truncation: str = "head"):
        if "tokenizer.json" not in files:
            raise ArtifactError("the artifact has no tokenizer.json")
        path = files["tokenizer.json"]
        text = read_text_file(path, _MAX_TOKENIZER_BYTES)
        try:
            self._tk = Tokenizer.from_str(text)
        except Exception as exc:  # the Rust side raises a bare Exception for a malformed file
            raise ArtifactError(f"{path} cannot be read as a tokenizer: {exc}") from None
        if truncation not in TRUNCATIONS or (pairs and truncation != "head"):
            raise ArtifactError(f"truncation {truncation!r} is not one of {', '.join(TRUNCATIONS)}"
                                + (" (question answering cuts contexts into windows instead)" if pairs else ""))
        self.max_length = max_length
        self.stride = stride
        self.truncation = truncation
        self._tk.no_padding()
        processor = self._tk.post_processor
        self._pair_specials = processor.num_special_tokens_to_add(True) if processor is not None else 0
        self._room = max_length - (processor.num_special_tokens_to_add(False) if processor is not None else 0)
        try:
            self._tk.enable_truncation(max_length, stride=stride, strategy="only_second" if pairs else "longest_first")
        except Exception as exc:
            raise ArtifactError(f"cannot truncate at {max_length} tokens with stride {stride}: {exc}") from None
        if truncation == HEAD_TAIL:  # a second copy encodes an overflowing text whole, to keep both its ends
            if self._room < 2:
                raise ArtifactError(f"a window of {max_length} tokens leaves no room for head+tail truncation")
            self._whole = Tokenizer.from_str(text)
            self._whole.no_padding()
            self._whole.no_truncation()
        specials = _special_tokens(files)
        pad_id = self._token_id(specials.get("pad_token"))
        self.pad_id = 0 if pad_id is None else pad_id  # without a pad token, padding uses id 0 (masked anyway)
        self.unk_id = self._token_id(specials.get("unk_token"))
        self.cls_id = self._token_id(specials.get("cls_token"))

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (added tokens included)."""
        return self._tk.get_vocab_size(with_added_tokens=True)

    def _token_id(self, token: str | None) -> int | None:
        return self._tk.token_to_id(token) if token else None

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        """One encoding per text, cut to the window (head+tail: an overlong text's ends, as `_Kept`)."""
        texts = list(texts)
        # one text: `encode` skips the thread pool that `encode_batch` hands every batch to
        found = _guarded(lambda: [self._tk.encode(texts[0])] if len(texts) == 1 else self._tk.encode_batch(texts),
                         "the texts")
        if self.truncation == HEAD_TAIL:
            cut = [i for i, e in enumerate(found) if e.overflowing]
            if cut:
                _guarded(lambda: self._head_tail(texts, found, cut), "the texts")
        return found

    def _head_tail(self, texts: list[str], found: list, cut: list[int]) -> None:
        """Replace the encodings at `cut` (texts that overflowed the window) by their first and last tokens
        that fit it together, between the special tokens."""
        head, tail = head_tail_split(self._room)
        for i, whole in zip(cut, self._whole.encode_batch([texts[i] for i in cut])):
            specials, n = whole.special_tokens_mask, len(whole.ids)
            lead = next((k for k, s in enumerate(specials) if not s), n)  # special tokens before the text
            end = n - next((k for k, s in enumerate(reversed(specials)) if not s), n)  # and after it
            keep = [*range(lead), *range(lead, lead + head), *range(end - tail, end), *range(end, n)]
            found[i] = _Kept([whole.ids[k] for k in keep], [whole.type_ids[k] for k in keep])

    def encode_pairs(self, questions: Sequence[str], contexts: Sequence[str]) -> list[Encoding]:
        """Encode question/context pairs; long contexts overflow into windows that overlap by `stride`."""
        for i, (question, context) in enumerate(zip(questions, contexts)):
            self._check_pair_fits(question, context, i)
        return _guarded(lambda: self._tk.encode_batch(list(zip(questions, contexts))), "the question/context pairs")

    def _check_pair_fits(self, question: str, context: str, index: int) -> None:
        """Refuse a question that leaves no room for the context windows.

        The tokenizer cannot cut a context into windows overlapping by `stride` tokens when the
        question leaves `stride` tokens or fewer for them; it panics instead of raising.
        """
        too_long = InputError(
            f"question {index} is too long: with a window of {self.max_length} tokens and windows "
            f"overlapping by {self.stride}, the question must stay under "
            f"{self.max_length - self._pair_specials - self.stride} tokens"
        )
        try:  # a single sequence that needs cutting raises here: the question alone overflows the window
            question_tokens = len(self._tk.encode(question, add_special_tokens=False).ids)
        except Exception:
            raise too_long from None
        room = self.max_length - self._pair_specials - question_tokens
        if room > self.stride:
            return
        try:  # a context that fits entirely is never cut into windows, so the stride does not matter
            context_tokens = len(self._tk.encode(context, add_special_tokens=False).ids)
        except Exception:
            raise too_long from None
        if context_tokens > room:
            raise too_long

    def id_to_token(self, token_id: int) -> str | None:
        return self._tk.id_to_token(token_id)  # None for an id outside the vocabulary

    def tokens_to_string(self, tokens: list[str]) -> str:
        """Join sub-word tokens the way the tokenizer's decoder does ("Love", "##lace" -> "Lovelace")."""
        decoder = self._tk.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def pad(self, encodings: Sequence[Encoding], input_names: Sequence[str]) -> dict[str, np.ndarray]:
        """Right-pad a batch to its longest member and return the model's named inputs."""
        width = max(len(e.ids) for e in encodings)
        feeds = {}
        for name in input_names:
            if name not in _FIELDS:
                raise ArtifactError(f"the model wants an input {name!r} that the runtime cannot build")
            attr, fill = _FIELDS[name]
            arr = np.full((len(encodings), width), self.pad_id if fill is None else fill, dtype=np.int64)
            for row, enc in enumerate(encodings):
                values = getattr(enc, attr)
                arr[row, : len(values)] = values
            feeds[name] = arr
        return feeds


def _special_tokens(files: dict[str, Path]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if name not in files:
            continue
        data: Any = parse_json(read_text_file(files[name], _MAX_SMALL_JSON_BYTES), name)
        if not isinstance(data, dict):
            raise ArtifactError(f"{name} must be a JSON object")
        for key, value in data.items():
            if key.endswith("_token") and key not in found:
                token = value.get("content") if isinstance(value, dict) else value
                if isinstance(token, str):
                    found[key] = token
    return found


def as_text_list(inputs: Any, what: str = "texts", max_chars: int | None = DEFAULT_MAX_CHARS) -> tuple[list[str], bool]:
    """Accept one string or a list of strings; return (list, was_single).

    Refuses non-strings, texts longer than `max_chars` characters, and text that is not valid
    Unicode (lone surrogates, as produced by decoding bytes with errors="surrogateescape").
    """
    if isinstance(inputs, str):
        items, single = [inputs], True
    elif inputs is None:
        raise InputError(f"{what} must be a string or a list of strings, got None")
    elif not isinstance(inputs, (list, tuple)):
        raise InputError(f"{what} must be a string or a list of strings, got {type(inputs).__name__}")
    elif not inputs:
        raise InputError(f"{what} is an empty list; pass at least one string")
    else:
        items, single = list(inputs), False
    bad = [i for i, text in enumerate(items) if not isinstance(text, str)]
    if bad:
        i = bad[0]
        raise InputError(f"{what}[{i}] is a {type(items[i]).__name__}, not a string"
                         + (f" ({len(bad)} non-strings in all)" if len(bad) > 1 else ""))
    for i, text in enumerate(items):
        where = what if single else f"{what}[{i}]"
        if max_chars is not None and len(text) > max_chars:
            raise InputError(f"{where} has {len(text):,} characters, more than the limit of {max_chars:,} "
                             "(load(..., max_chars=N) raises it; the model reads only its first tokens anyway)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"{where} is not valid Unicode: {exc.reason} at character {exc.start} "
                             f"({text[exc.start]!r}); decode your bytes with errors='replace'") from None
    return items, single
