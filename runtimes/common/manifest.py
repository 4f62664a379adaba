"""The artifact manifest: a typed, versioned description of one artifact folder.

Plain dataclasses (no pydantic) so the runtime stays small. `Manifest.from_json` validates
strictly: unknown or missing keys, wrong types and out-of-range values raise `ArtifactError`
naming the field. Every file the runtime reads is listed in `files` with its sha256, and
`verify_files` checks them all before anything is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import os
import re
import secrets
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from runtimes.common.errors import ArtifactError

SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"
# A manifest is a few kB; a huge one is not ours, and reading it would only cost memory.
MAX_MANIFEST_BYTES = 16 << 20
MAX_LENGTH_LIMIT = 1 << 20  # tokens; real encoders stop at 8k
HEAD_TAIL = "head+tail"
TRUNCATIONS = ("head", HEAD_TAIL)  # see Manifest.truncation
VOCAB_SIZE_LIMIT = 1 << 24
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    shape: tuple[int | str, ...]


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
    max_abs_diff: float  # over the values that are finite
    atol: float | None  # None: reported, not gated (lossy steps)
    passed: bool
    nonfinite: int = 0  # NaN or infinite values where PyTorch is finite: always a failure


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
    """One entry of the lineage: which step made which model from which parent.

    The lineage starts with a `source` record for the checkpoint the run started from; torch-stage
    steps (which change the PyTorch model) are recorded like graph steps. `stage` is the stage the
    step produced (torch, onnx, onnx-fused, openvino-ir); `cached` says its output came from the
    step cache instead of being computed again.
    """

    step: str
    stage: str
    config: dict[str, Any]
    parent_sha256: str | None
    output_sha256: str
    started_at: str
    duration_s: float
    details: dict[str, Any] = field(default_factory=dict)  # what the step measured or decided
    cached: bool = False


@dataclass(frozen=True)
class RuntimeSettings:
    """How the artifact should be run by default: what `optimise search` measured fastest on its machine.

    `runtimes.load` uses these when the caller leaves them unset; None means the backend's own default.
    `threads` is intra-op threads; `spinning` lets ONNX Runtime's idle threads spin (other backends
    ignore it). `measured_on` names the machine the choice was timed on (CPU model, cores).
    """

    threads: int | None = None
    spinning: bool | None = None
    measured_on: str = ""


@dataclass(frozen=True)
class CpuRecord:
    """The CPU an artifact's int8 format was made for, and the machine that built it, checked its parity and
    measured its steps' speed-ups.

    `int8_target` is the int8 class (`runtimes.common.cpu.CpuIsa`: avx2, avx512, avx512_vnni, arm64) the quantised
    weights were made for; None for an artifact without int8 (fp32 and fp16 run alike everywhere).
    `requested` is what the recipe asked for (`native`, or a named CPU). `runtimes.load` warns once when an
    int8 artifact runs on a CPU of another int8 class.
    """

    int8_target: str | None = None
    requested: str = "native"
    built_on: str = ""  # CPU model name
    built_on_isa: str = ""  # its int8 class
    built_on_features: tuple[str, ...] = ()  # the instruction sets that decide int8 and bf16 speed


@dataclass(frozen=True)
class Manifest:
    """What an artifact folder holds, where it came from, and how it was checked.

    `files` maps every file of the folder except manifest.json (model, weights, config,
    tokenizer files) to its sha256; the runtime verifies them all at load and reads no other
    file. `data_files` names the files the model file needs beside it (OpenVINO weights).
    `vocab_size` is the number of rows of the model's token embedding: every input id must be
    below it. Read with `Manifest.read(folder)`, which validates types, names and ranges.
    """

    toolchain_version: str
    created_at: str
    task: Task
    format: ModelFormat
    model_file: str
    max_length: int
    vocab_size: int
    labels: tuple[str, ...]
    source: SourceInfo
    signature: Signature
    recipe: dict[str, Any]
    lineage: tuple[StepRecord, ...]
    parity: tuple[ParityReport, ...]
    files: dict[str, str]
    data_files: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    truncation: str = "head"  # how a text longer than max_length is cut: "head" keeps its start, "head+tail" both ends
    cpu: CpuRecord = field(default_factory=CpuRecord)
    schema_version: int = SCHEMA_VERSION

    @property
    def model_sha256(self) -> str:
        return self.files[self.model_file]

    @property
    def model_files(self) -> tuple[str, ...]:
        """The model file and the files it needs: what the model weighs on disk."""
        return (self.model_file, *self.data_files)

    def validate(self) -> Manifest:
        """Check what types alone cannot: plain file names, hashes, ranges. What each task asks of a manifest
        (labels or none, its truncations) is the task's pipeline's to check: `runtimes.embedded.pipelines.validated`."""
        for name, digest in self.files.items():
            check_plain_name(name, "manifest.files")
            if not _SHA256.fullmatch(digest):
                raise ArtifactError(f"manifest.files[{name!r}] is not a sha256 hex digest")
        if MANIFEST_NAME in self.files:
            raise ArtifactError("manifest.files must not list manifest.json itself")
        for name in (self.model_file, *self.data_files, "config.json", "tokenizer.json"):
            check_plain_name(name, "manifest")
            if name not in self.files:
                raise ArtifactError(f"manifest.files does not list {name!r}, which the runtime needs")
        if not 1 <= self.max_length <= MAX_LENGTH_LIMIT:
            raise ArtifactError(f"manifest.max_length {self.max_length} is outside 1..{MAX_LENGTH_LIMIT}")
        if self.truncation not in TRUNCATIONS:
            raise ArtifactError(f"manifest.truncation {self.truncation!r} is not one of {', '.join(TRUNCATIONS)}")
        if self.runtime.threads is not None and not (
                type(self.runtime.threads) is int and 1 <= self.runtime.threads <= 1024):
            raise ArtifactError(f"manifest.runtime.threads {self.runtime.threads!r} is outside 1..1024")
        if not 1 <= self.vocab_size <= VOCAB_SIZE_LIMIT:
            raise ArtifactError(f"manifest.vocab_size {self.vocab_size} is outside 1..{VOCAB_SIZE_LIMIT}")
        if len(set(self.labels)) != len(self.labels):
            raise ArtifactError("manifest.labels has duplicate names")
        if not self.signature.inputs or not self.signature.outputs:
            raise ArtifactError("manifest.signature needs at least one input and one output")
        return self

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
        return _from_jsonable(cls, data, "manifest").validate()

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls.from_dict(parse_json(text, "manifest"))

    @classmethod
    def read(cls, folder: Path | str) -> Manifest:
        """Read and validate `folder/manifest.json`; `ArtifactError` if it is missing or invalid."""
        folder = Path(folder)
        if not folder.is_dir():
            what = "a file" if folder.exists() else "no such folder"
            raise ArtifactError(f"{folder} is not an artifact folder ({what})")
        path = folder / MANIFEST_NAME
        if not path.exists():
            raise ArtifactError(f"{folder} is not an artifact folder: {MANIFEST_NAME} is missing")
        return cls.from_json(read_text_file(resolve_inside(folder, MANIFEST_NAME), MAX_MANIFEST_BYTES))

    def write(self, folder: Path | str) -> Path:
        """Write atomically: a reader sees the old manifest or the new one, never half of one."""
        return write_text_atomically(Path(folder) / MANIFEST_NAME, self.to_json())


def write_text_atomically(path: Path, text: str) -> Path:
    """Write `text` through a temporary name beside `path`: a reader (a server watching the file, a gate
    reading a report) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_plain_name(name: str, where: str) -> None:
    """A file name in a manifest must name a file directly inside the artifact folder."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or len(name.encode("utf-8", "surrogatepass")) > 255):
        raise ArtifactError(f"{where}: {name!r} is not a plain file name inside the artifact folder")


def resolve_inside(folder: Path, name: str) -> Path:
    """The path of `name` in `folder`, refusing anything that leaves the folder or is not a regular file.

    A symlink is followed only while it stays inside the folder; a FIFO or device is refused
    before anything opens it (opening a FIFO would block).
    """
    check_plain_name(name, str(folder))
    root = folder.resolve()
    path = (folder / name).resolve()
    if path.parent != root and root not in path.parents:
        raise ArtifactError(f"{folder / name} points outside the artifact folder ({path}); refusing to read it")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ArtifactError(f"artifact {folder} lists {name} but the file is missing") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read {folder / name}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ArtifactError(f"{folder / name} is not a regular file")
    return path


def verify_files(folder: Path | str, manifest: Manifest) -> dict[str, Path]:
    """Check every file the manifest lists against its sha256; return their paths by name.

    Raises `ArtifactError` naming the first file that is missing, outside the folder, not a
    regular file, or changed since the artifact was written.
    """
    folder = Path(folder)
    paths = {}
    for name, expected in manifest.files.items():
        path = resolve_inside(folder, name)
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc.strerror}") from None
        if actual != expected:
            raise ArtifactError(
                f"{folder / name} does not match its manifest (sha256 {actual[:12]}… != {expected[:12]}…); "
                "the artifact was modified after it was written"
            )
        paths[name] = path
    return paths


def read_text_file(path: Path, limit: int) -> str:
    """Read a small UTF-8 file, refusing one larger than `limit` bytes."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise ArtifactError(f"{path} is larger than {limit >> 20} MB; refusing to read it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path} is not UTF-8 text: {exc}") from None


def parse_json(text: str, what: str) -> Any:
    """json.loads with the failures a hostile file can cause turned into `ArtifactError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ArtifactError(f"{what} is nested too deeply to be a real {what}") from None


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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
