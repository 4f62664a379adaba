"""The one dataset type that steps needing data receive, the roles data plays, and readers for user files.

Steps declare the roles they need: `train` (what a student learns from, importance scores),
`validation` (early stopping, choices, accuracy budgets), `calibration` (activation ranges) and
`transfer` (unlabelled inputs a student also learns from, labelled by the teacher).
One `TextDataset` carries texts with a label each (sequence classification), words with a tag
each (token classification), or question/context pairs (question answering).
"""

from __future__ import annotations

import csv
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from toolchain.errors import ConfigError, InputError


class DataRole(str, enum.Enum):
    TRAIN = "train"
    VALIDATION = "validation"
    CALIBRATION = "calibration"
    TRANSFER = "transfer"


@dataclass(frozen=True)
class TextDataset:
    """Texts with optional supervision.

    - sequence classification: `labels`, one class id per text;
    - token classification: `words` (each text split into words) and `tags` (a label id per word);
      `texts` are the words joined by spaces, so text-only users (calibration) need nothing else;
    - question answering: `questions`, one per text; `texts` are the contexts.
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    words: tuple[tuple[str, ...], ...] | None = None
    tags: tuple[tuple[int, ...], ...] | None = None
    questions: tuple[str, ...] | None = None
    source: Path | None = field(default=None, compare=False)  # the file it was read from, if any

    def __post_init__(self) -> None:
        if not self.texts:
            raise InputError("the dataset is empty")
        for name in ("labels", "words", "tags", "questions"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.texts):
                raise InputError(f"{len(self.texts)} texts but {len(value)} {name}")
        if (self.words is None) != (self.tags is None) and self.tags is not None:
            raise InputError("tags need the words they belong to")
        if self.words is not None and self.tags is not None:
            for i, (w, t) in enumerate(zip(self.words, self.tags)):
                if len(w) != len(t):
                    raise InputError(f"example {i + 1} has {len(w)} words but {len(t)} tags")

    def __len__(self) -> int:
        return len(self.texts)

    @cached_property
    def sha256(self) -> str:
        """A digest of everything in the dataset: what steps that learn from the data are cached by."""
        digest = hashlib.sha256()
        for i, text in enumerate(self.texts):
            parts = [text]
            for name in ("labels", "words", "tags", "questions"):
                value = getattr(self, name)
                parts.append(json.dumps(value[i]) if value is not None else "")
            digest.update(json.dumps(parts, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n")
        return digest.hexdigest()

    def select(self, indices: Sequence[int]) -> TextDataset:
        """The examples at `indices`, in that order."""
        def pick(values):
            return None if values is None else tuple(values[i] for i in indices)

        return TextDataset(pick(self.texts), pick(self.labels), pick(self.words), pick(self.tags),
                           pick(self.questions), self.source)

    def head(self, n: int) -> TextDataset:
        return self.select(range(min(n, len(self.texts))))

    def split_off(self, share: float, salt: str = "") -> tuple[TextDataset, TextDataset]:
        """(the rest, `share` of the examples held out), kept in their order (see `split_indices`)."""
        rest, held = self.split_indices(share, salt)
        return self.select(rest), self.select(held)

    def split_indices(self, share: float, salt: str = "") -> tuple[list[int], list[int]]:
        """The indices of the rest and of `share` of the examples held out, each in the file's order. Examples
        are grouped by text (a QA context with all its questions goes to one side) and the groups ordered by a
        digest of the text and `salt`: the split depends on the content alone, never on the order or the run."""
        if not 0 < share < 1:
            raise InputError(f"a held-out share must be between 0 and 1, not {share}")
        groups: dict[str, list[int]] = {}
        for i, text in enumerate(self.texts):
            groups.setdefault(text, []).append(i)
        if len(groups) < 2:
            raise InputError(f"{len(self)} examples with one distinct text cannot be split in two")

        def rank(text: str) -> str:
            return hashlib.sha256(f"{salt}\n{text}".encode("utf-8", "surrogatepass")).hexdigest()

        ordered = sorted(groups, key=rank)
        held_count = min(len(ordered) - 1, max(1, round(share * len(ordered))))
        held = sorted(i for text in ordered[:held_count] for i in groups[text])
        held_set = set(held)
        return [i for i in range(len(self)) if i not in held_set], held


@dataclass(frozen=True)
class Columns:
    """The column names a table's examples are read from."""

    text: str = "text"
    label: str = "label"
    tokens: str = "tokens"
    tags: str = "tags"
    question: str = "question"
    context: str = "context"


# -- roles --------------------------------------------------------------------------------------------

def resolve_roles(data: Mapping[DataRole, TextDataset]) -> dict[DataRole, TextDataset]:
    """Fill the roles that may stand in for each other, and refuse a validation set that overlaps training.

    Calibration only needs realistic inputs, so it falls back to validation, then training data.
    Validation never falls back to training data: choices made on training data look better than
    they are.
    """
    roles = dict(data)
    if DataRole.CALIBRATION not in roles:
        for fallback in (DataRole.VALIDATION, DataRole.TRAIN):
            if fallback in roles:
                roles[DataRole.CALIBRATION] = roles[fallback]
                break
    validation = roles.get(DataRole.VALIDATION)
    for role, name in ((DataRole.TRAIN, "training"), (DataRole.TRANSFER, "transfer")):
        learnt = roles.get(role)
        if learnt is not None and validation is not None:  # the same file or dataset in both roles too
            seen = set(learnt.texts)
            shared = sum(text in seen for text in validation.texts)
            if shared:
                raise ConfigError(f"{shared} of the {len(validation)} validation examples also appear in the {name} "
                                  "data; keep the two apart, or the validation figures mean nothing")
    return roles


# -- readers ------------------------------------------------------------------------------------------


def check_path(path: Path) -> Path:
    """`path`, when it is a regular file or a folder; `InputError` otherwise."""
    if not path.exists():
        raise InputError(f"data file {path} does not exist")
    if not path.is_dir() and not path.is_file():
        raise InputError(f"data file {path} is not a regular file (a FIFO or device?)")
    return path


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV, JSONL, Parquet file or `datasets` folder, as dicts; `InputError` for anything else."""
    readers = {".csv": _read_csv, ".jsonl": _read_jsonl, ".json": _read_jsonl, ".parquet": _read_parquet}
    if path.is_dir():
        rows = _read_arrow_folder(path)
    elif path.suffix.lower() in readers:
        rows = readers[path.suffix.lower()](path)
    else:
        raise InputError(f"{path}: unsupported data format; use .csv, .jsonl, .parquet or a datasets folder "
                         "(and .conll for token classification)")
    if not rows:
        raise InputError(f"{path} has no rows")
    return rows


def plain_texts(path: Path, column: str) -> list[str]:
    """Texts without labels: one per non-empty line of a `.txt` file, or a table's column `column`."""
    if check_path(path).suffix.lower() == ".txt":
        try:
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path} is not readable UTF-8 text: {exc}") from None
        if not texts:
            raise InputError(f"{path} has no text")
        return texts
    return column_texts(read_rows(path), path, column)


def column_texts(rows: list[dict], path: Path, name: str) -> list[str]:
    """The text in column `name` of every row; `InputError` for a missing column or a value that is not text."""
    if name not in rows[0]:
        raise InputError(f"{path} has no {name!r} column (columns: {', '.join(map(str, rows[0]))})")
    values = []
    for i, row in enumerate(rows):
        value = row.get(name)
        if not isinstance(value, str):
            raise InputError(f"{path}: row {i + 1} has a {type(value).__name__} in {name!r}, not text")
        values.append(value)
    return values


def labelled_rows(rows: list[dict], path: Path, text_column: str, label_column: str,
                  names: Sequence[str]) -> TextDataset:
    """Texts with a label each (class ids or label names in `names`) where the table has a label column."""
    texts = column_texts(rows, path, text_column)
    labels = None
    if label_column in rows[0]:
        labels = tuple(_label(row.get(label_column), names, path, i) for i, row in enumerate(rows))
    return TextDataset(tuple(texts), labels, source=path)


def tagged_rows(rows: list[dict], path: Path, tokens_column: str, tags_column: str,
                names: Sequence[str]) -> TextDataset:
    """A list of words and a list of tags per row."""
    for column in (tokens_column, tags_column):
        if column not in rows[0]:
            raise InputError(f"{path} has no {column!r} column (columns: {', '.join(map(str, rows[0]))}); "
                             "token classification reads a list of words and a list of tags per row")
    words, tags = [], []
    for i, row in enumerate(rows):
        tokens, row_tags = row.get(tokens_column), row.get(tags_column)
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise InputError(f"{path}: row {i + 1}: {tokens_column!r} must be a list of words")
        if not isinstance(row_tags, list) or len(row_tags) != len(tokens):
            raise InputError(f"{path}: row {i + 1}: {tags_column!r} must be a list with one tag per word")
        words.append(tuple(tokens))
        tags.append(tuple(_label(t, names, path, i) for t in row_tags))
    return _tagged(words, tags, path)


def read_conll(path: Path, names: Sequence[str]) -> TextDataset:
    """`word tag` per line (more columns: the last one is the tag), sentences split by blank lines."""
    words: list[tuple[str, ...]] = []
    tags: list[tuple[int, ...]] = []
    sentence_words: list[str] = []
    sentence_tags: list[int] = []
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for n, line in enumerate(fh, 1):
                parts = line.split()
                if not parts or parts[0] == "-DOCSTART-":
                    if sentence_words:
                        words.append(tuple(sentence_words))
                        tags.append(tuple(sentence_tags))
                        sentence_words, sentence_tags = [], []
                    continue
                if len(parts) < 2:
                    raise InputError(f"{path}: line {n} has no tag: expected 'word tag'")
                sentence_words.append(parts[0])
                sentence_tags.append(_label(parts[-1], names, path, n - 1, "line"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc}") from None
    if sentence_words:
        words.append(tuple(sentence_words))
        tags.append(tuple(sentence_tags))
    if not words:
        raise InputError(f"{path} has no sentences")
    return _tagged(words, tags, path)


def _tagged(words: list[tuple[str, ...]], tags: list[tuple[int, ...]], path: Path) -> TextDataset:
    empty = [i + 1 for i, w in enumerate(words) if not w]
    if empty:
        raise InputError(f"{path}: example {empty[0]} has no words")
    return TextDataset(tuple(" ".join(w) for w in words), words=tuple(words), tags=tuple(tags), source=path)


def _label(value: Any, names: Sequence[str], path: Path, i: int, unit: str = "row") -> int:
    where = f"{path}: {unit} {i + 1}"
    if isinstance(value, bool):
        raise InputError(f"{where}: label {value!r} is not a class")
    index = None
    if isinstance(value, int):
        index = value
    elif isinstance(value, str):
        if value in names:
            return list(names).index(value)
        if value.strip().lstrip("-").isdigit() and len(value) < 20:
            index = int(value)
    if index is not None:
        if names and not 0 <= index < len(names):
            raise InputError(f"{where}: label {index} is out of range for a model with "
                             f"{len(names)} labels (0..{len(names) - 1})")
        return index
    known = f" (the model's labels: {', '.join(names)})" if names else ""
    raise InputError(f"{where}: label {value!r} is neither a class index nor a label name of the model{known}")


_CSV_FIELD_LIMIT = 1 << 28  # Python's csv refuses fields over 128 KiB by default; a long document is data, not damage


def _read_csv(path: Path) -> list[dict]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        # utf-8-sig: "CSV UTF-8" from a spreadsheet starts with a byte-order mark, else glued to the first column name
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a readable UTF-8 CSV file: {exc}") from None


def _read_jsonl(path: Path) -> list[dict]:
    """JSON lines (one object per line); a `.json` file may also hold one array of objects."""
    rows = []
    n = 0
    try:
        with open(path, encoding="utf-8-sig") as fh:
            if path.suffix.lower() == ".json":
                text = fh.read()
                if text.lstrip().startswith("["):
                    return _json_array(path, json.loads(text))
                lines = text.splitlines()
            else:
                lines = fh
            for n, line in enumerate(lines, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise InputError(f"{path}: line {n} is not a JSON object")
                    rows.append(row)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        where = f"line {n}, column {exc.colno}" if n else f"line {exc.lineno}, column {exc.colno}"
        raise InputError(f"{path} is not valid JSON lines: {exc.msg} at {where}") from None
    except RecursionError:
        raise InputError(f"{path} holds JSON nested too deeply to be a data row") from None
    return rows


def _json_array(path: Path, data) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise InputError(f"{path}: a JSON array of data rows must hold only objects")
    return data


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from None


def _read_arrow_folder(path: Path) -> list[dict]:
    import pyarrow as pa

    shards = sorted(path.glob("*.arrow"))
    if not shards:
        raise InputError(f"{path} is a folder without .arrow files; is it a datasets.save_to_disk folder?")
    rows: list[dict] = []
    try:
        for shard in shards:
            with pa.memory_map(str(shard)) as source:
                rows += pa.ipc.open_stream(source).read_all().to_pylist()
    except Exception as exc:  # pyarrow raises ArrowInvalid for a damaged shard
        raise InputError(f"{path}: cannot read {shard.name}: {exc}") from None
    return rows
