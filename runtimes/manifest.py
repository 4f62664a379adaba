"""The artifact manifest: a typed, versioned description of one artifact folder.

Plain dataclasses (no pydantic) so the runtime stays small. `Manifest.from_json` validates
strictly: unknown or missing keys and wrong types raise `ArtifactError` naming the field.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .errors import ArtifactError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


class Task(str, enum.Enum):
    TEXT_CLASSIFICATION = "text-classification"
    TOKEN_CLASSIFICATION = "token-classification"
    QUESTION_ANSWERING = "question-answering"


class ModelFormat(str, enum.Enum):
    ONNX = "onnx"
    OPENVINO_IR = "openvino-ir"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. A string in `shape` names a dynamic axis."""

    name: str
    dtype: str
    shape: tuple[Union[int, str], ...]


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


@dataclass(frozen=True)
class SourceInfo:
    """Where the artifact came from: the checkpoint folder and a hash of each weight file."""

    path: str
    model_type: str
    architecture: str
    weights_sha256: dict[str, str]


@dataclass(frozen=True)
class OutputParity:
    name: str
    max_abs_diff: float
    atol: Union[float, None]  # None: reported, not gated (lossy steps)
    passed: bool


@dataclass(frozen=True)
class ParityReport:
    """Agreement between an artifact and the PyTorch model on the same batches."""

    step: str
    samples: int
    outputs: tuple[OutputParity, ...]
    agreement_kind: str
    agreement: float
    min_agreement: float
    passed: bool


@dataclass(frozen=True)
class StepRecord:
    """One entry of the lineage: which step made which model file from which parent."""

    step: str
    config: dict[str, Any]
    parent_sha256: Union[str, None]
    output_sha256: str
    started_at: str
    duration_s: float
    details: dict[str, Any] = field(default_factory=dict)  # what the step measured or decided


@dataclass(frozen=True)
class Manifest:
    toolchain_version: str
    created_at: str
    task: Task
    format: ModelFormat
    model_file: str
    model_sha256: str
    max_length: int
    labels: tuple[str, ...]
    source: SourceInfo
    signature: Signature
    recipe: dict[str, Any]
    lineage: tuple[StepRecord, ...]
    parity: tuple[ParityReport, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    data_files: dict[str, str] = field(default_factory=dict)  # files the model needs besides model_file, by sha256
    schema_version: int = SCHEMA_VERSION

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ArtifactError("manifest must be a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ArtifactError(
                f"manifest schema_version {version!r} is not supported by this runtime "
                f"(it reads version {SCHEMA_VERSION}); re-create the artifact or upgrade the runtime"
            )
        return _from_jsonable(cls, data, "manifest")

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"manifest is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def read(cls, folder: Path | str) -> Manifest:
        path = Path(folder) / MANIFEST_NAME
        if not path.is_file():
            raise ArtifactError(f"{folder} is not an artifact folder: {MANIFEST_NAME} is missing")
        return cls.from_json(path.read_text(encoding="utf-8"))

    def write(self, folder: Path | str) -> Path:
        """Write atomically: a reader sees the old manifest or the new one, never half of one."""
        path = Path(folder) / MANIFEST_NAME
        tmp = path.with_name(f".{MANIFEST_NAME}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_model_file(folder: Path | str, manifest: Manifest) -> Path:
    """Return the model file's path after checking it, and its data files, against the manifest hashes."""
    folder = Path(folder)
    for name, expected in {manifest.model_file: manifest.model_sha256, **manifest.data_files}.items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"artifact {folder} lists {name} but the file is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"{path} does not match its manifest (sha256 {actual[:12]}… != {expected[:12]}…); "
                "the artifact was modified after it was written"
            )
    return folder / manifest.model_file


# -- strict (de)serialisation of the dataclasses above ---------------------------------------------

def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _from_jsonable(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ArtifactError(f"{where}: expected an object, got {type(value).__name__}")
        fields = {f.name: f for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ArtifactError(f"{where}: unknown field(s) {', '.join(unknown)}")
        hints = _hints(tp)
        kwargs = {}
        for name, f in fields.items():
            if name not in value:
                no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                if no_default:
                    raise ArtifactError(f"{where}: missing field {name!r}")
                continue
            kwargs[name] = _from_jsonable(hints[name], value[name], f"{where}.{name}")
        return tp(**kwargs)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _from_jsonable(option, value, where)
            except ArtifactError:
                continue
        raise ArtifactError(f"{where}: {value!r} matches none of the allowed types")
    if origin is tuple:
        if not isinstance(value, list):
            raise ArtifactError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return tuple(_from_jsonable(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ArtifactError(f"{where}: expected an object, got {type(value).__name__}")
        _, val_tp = typing.get_args(tp)
        return {k: _from_jsonable(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(m.value for m in tp)
            raise ArtifactError(f"{where}: {value!r} is not one of {allowed}") from None
    if tp is type(None):
        if value is not None:
            raise ArtifactError(f"{where}: expected null")
        return None
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ArtifactError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {type(value).__name__}")
