"""The one small dataset type that steps needing data receive, and readers for user files."""

from __future__ import annotations

import csv
import json
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence

from .errors import InputError


@dataclass(frozen=True)
class TextDataset:
    """Texts, and optionally an integer label per text (needed for accuracy checks)."""

    texts: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    source: Path | None = field(default=None, compare=False)  # the file it was read from, if any

    def __post_init__(self) -> None:
        if not self.texts:
            raise InputError("the dataset is empty")
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise InputError(f"{len(self.texts)} texts but {len(self.labels)} labels")

    @cached_property
    def sha256(self) -> str:
        """A digest of the texts and labels: what steps that learn from the data are cached by."""
        digest = hashlib.sha256()
        for i, text in enumerate(self.texts):
            label = self.labels[i] if self.labels is not None else ""
            digest.update(f"{label}\t{len(text)}\t{text}\n".encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def head(self, n: int) -> TextDataset:
        return TextDataset(self.texts[:n], self.labels[:n] if self.labels is not None else None, self.source)


def load_text_dataset(
    path: Path | str,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] = (),
) -> TextDataset:
    """Read CSV, JSONL, Parquet, or a folder written by `datasets.Dataset.save_to_disk`.

    Labels are optional. They may be integers, or names found in `label_names` (the model's labels).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"data file {path} does not exist")
    if not path.is_dir() and not path.is_file():
        raise InputError(f"data file {path} is not a regular file (a FIFO or device?)")
    readers = {".csv": _read_csv, ".jsonl": _read_jsonl, ".json": _read_jsonl, ".parquet": _read_parquet}
    if path.is_dir():
        rows = _read_arrow_folder(path)
    elif path.suffix.lower() in readers:
        rows = readers[path.suffix.lower()](path)
    else:
        raise InputError(f"{path}: unsupported data format; use .csv, .jsonl, .parquet or a datasets folder")
    if not rows:
        raise InputError(f"{path} has no rows")
    if text_column not in rows[0]:
        raise InputError(f"{path} has no {text_column!r} column (columns: {', '.join(map(str, rows[0]))})")
    texts = []
    for i, row in enumerate(rows):
        value = row.get(text_column)
        if not isinstance(value, str):
            raise InputError(f"{path}: row {i + 1} has a {type(value).__name__} in {text_column!r}, not text")
        texts.append(value)
    labels = None
    if label_column in rows[0]:
        labels = tuple(_label(row.get(label_column), label_names, path, i) for i, row in enumerate(rows))
    return TextDataset(tuple(texts), labels, source=path)


def _label(value, names: Sequence[str], path: Path, i: int) -> int:
    if isinstance(value, bool):
        raise InputError(f"{path}: row {i + 1}: label {value!r} is not a class")
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
            raise InputError(f"{path}: row {i + 1}: label {index} is out of range for a model with "
                             f"{len(names)} labels (0..{len(names) - 1})")
        return index
    known = f" (known labels: {', '.join(names)})" if names else ""
    raise InputError(f"{path}: row {i + 1}: label {value!r} is neither a class index nor a label name{known}")


def _read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a readable UTF-8 CSV file: {exc}") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise InputError(f"{path}: line {n} is not a JSON object")
                    rows.append(row)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON lines: {exc}") from None
    except RecursionError:
        raise InputError(f"{path} holds JSON nested too deeply to be a data row") from None
    return rows


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
