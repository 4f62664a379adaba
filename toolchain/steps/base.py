"""The step abstraction: a typed config plus one transform, looked up by the config's type.

A config declares the stage it consumes and the stage it produces (see `toolchain.stages`); a
recipe is checked as a chain of them when it is built.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, ClassVar

import regex
from pydantic import AfterValidator, BaseModel, ConfigDict

from runtimes.common.manifest import MANIFEST_NAME, ModelFormat, StepRecord, sha256_file
from toolchain.cache import StepCache
from toolchain.checkpoint import Checkpoint
from toolchain.data import DataRole, TextDataset
from toolchain.errors import ConfigError
from toolchain.stages import Artifact, Stage, TorchModel, model_digest

_GRAPH = frozenset({Stage.ONNX, Stage.ONNX_FUSED})


class StepConfig(BaseModel):
    """Base of every step config.

    Subclasses declare `kind: Literal["..."] = "..."`, the key that names the step in recipe files,
    and the stages they consume and produce.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    # The stages this step accepts, and the one it produces (None: the stage it was given).
    consumes: ClassVar[frozenset[Stage]] = _GRAPH
    produces: ClassVar[Stage | None] = None
    # A lossy step (quantisation, fp16) is held to the recipe's `lossy_parity`, not to `parity`.
    lossy: ClassVar[bool] = False
    # The data roles the step needs (train, validation, calibration); a run without them refuses to start.
    needs_data: ClassVar[frozenset[DataRole]] = frozenset()
    optional_data: ClassVar[frozenset[DataRole]] = frozenset()  # used where given, never required
    # An expensive step (training, calibration) keeps its output in the step cache.
    cacheable: ClassVar[bool] = False

    @classmethod
    def step_kind(cls) -> str:
        return cls.model_fields["kind"].default

    def to_record(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def cache_record(self) -> dict[str, Any]:
        """What keys this step's cached output: its config, plus whatever the config leaves to the machine."""
        return self.to_record()

    def output_stage(self, given: Stage) -> Stage:
        return self.produces or given

    def data_roles(self) -> frozenset[DataRole]:
        """The roles this configured step needs (a step may need data only with some options)."""
        return self.needs_data

    def cache_roles(self) -> frozenset[DataRole]:
        """The roles whose data, where given, change this step's output: what its cache key covers."""
        return self.data_roles() | self.optional_data

    def preflight(self, source: Checkpoint) -> None:
        """Refuse, before any step runs, what this step would refuse once it is reached.

        Called with the source checkpoint for every step up to the first that `replaces_model`, so
        that a refusal does not come after an hour of training. Only checks that hold whatever the
        steps before it did (they can drop layers and units, not add them) belong here.
        """

    def replaces_model(self) -> bool:
        """True when later steps see another architecture or tokenizer (e.g. distilling into a new model)."""
        return False


@dataclass
class StepContext:
    """What a step may use besides its input.

    `source` is the checkpoint the run started from; `checkpoint` the latest torch stage (the model
    the graph steps came from: its tokenizer and its outputs are the reference). `workspace` is the
    run's private folder.
    """

    source: Checkpoint
    workspace: Path
    data: dict[DataRole, TextDataset] = field(default_factory=dict)
    checkpoint: Checkpoint = None  # type: ignore[assignment]  # set to `source` below
    cache: StepCache | None = None  # steps may keep intermediate results beside the step cache
    _counter: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.checkpoint is None:
            self.checkpoint = self.source

    def data_for(self, role: DataRole, step: str) -> TextDataset:
        """The dataset in `role`; a `ConfigError` saying which option gives it when there is none."""
        if role not in self.data:
            raise ConfigError(f"{step} needs {role.value} data: pass --{_OPTION[role]}-data FILE")
        return self.data[role]

    def data_digest(self, roles: frozenset[DataRole]) -> str | None:
        """One digest of the datasets in `roles`: part of a cache key."""
        present = sorted((r.value, self.data[r].sha256) for r in roles if r in self.data)
        return "|".join(f"{r}:{d}" for r, d in present) or None

    def new_folder(self, step: str) -> Path:
        """A new, empty folder in the run's work folder, made with the user's umask (the last one
        becomes the artifact, which a service account must be able to read)."""
        self._counter += 1
        path = self.workspace / f"{self._counter:02d}-{step}"
        os.mkdir(path)
        return path


_OPTION = {DataRole.TRAIN: "train", DataRole.VALIDATION: "eval", DataRole.CALIBRATION: "calibration",
           DataRole.TRANSFER: "transfer"}


class StepTimer:
    """Start time and duration of a step, for its lineage record."""

    def __init__(self) -> None:
        self.started = datetime.now(timezone.utc)
        self._t0 = time.perf_counter()

    @property
    def started_at(self) -> str:
        return self.started.isoformat(timespec="seconds")

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0


def derive(
    parent: Artifact,
    folder: Path,
    config: StepConfig,
    timer: StepTimer,
    details: dict[str, Any],
    model_file: str | None = None,
    data_files: tuple[str, ...] = (),
    model_format: ModelFormat | None = None,
) -> Artifact:
    """Finish a graph step: copy the HF files next to the new model and extend the parent's manifest."""
    for name in parent.manifest.files:  # config and tokenizer files travel with every model
        if name not in parent.manifest.model_files and not (folder / name).exists():
            shutil.copyfile(parent.path / name, folder / name)  # copyfile: new file, user's umask
    model_file = model_file or parent.manifest.model_file
    stage = config.output_stage(parent.stage)
    names = (model_file, *data_files)
    output = model_digest({n: sha256_file(folder / n) for n in names}, names)
    record = StepRecord(config.step_kind(), stage.value, config.to_record(), parent.sha256, output,
                        timer.started_at, timer.elapsed(), details)
    return extend(parent, folder, record, model_file, tuple(data_files), model_format or parent.manifest.format)


def extend(parent: Artifact, folder: Path, record: StepRecord, model_file: str, data_files: tuple[str, ...],
           model_format: ModelFormat) -> Artifact:
    """The artifact in `folder`: the parent's manifest with this model's files and one more lineage record."""
    manifest = dataclasses.replace(
        parent.manifest, model_file=model_file, files=hash_folder(folder), data_files=data_files,
        format=model_format, lineage=(*parent.manifest.lineage, record),
    )
    return Artifact(folder, manifest, Stage(record.stage))


def derive_torch(parent: TorchModel, checkpoint: Checkpoint, config: StepConfig, timer: StepTimer,
                 details: dict[str, Any]) -> TorchModel:
    """Finish a torch-stage step: the new checkpoint and one more lineage record."""
    record = StepRecord(config.step_kind(), Stage.TORCH.value, config.to_record(), parent.sha256,
                        checkpoint.sha256, timer.started_at, timer.elapsed(), details)
    return TorchModel(checkpoint, (*parent.lineage, record))


def hash_folder(folder: Path) -> dict[str, str]:
    """sha256 of every file of an artifact folder but the manifest; the manifest lists exactly these."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name == MANIFEST_NAME:
            continue
        if not path.is_file() or path.is_symlink():
            raise RuntimeError(f"artifact folder {folder} holds {path.name}, which is not a plain file")
        files[path.name] = sha256_file(path)
    return files


MAX_PATTERNS, MAX_PATTERN_CHARS = 100, 500
MATCH_SECONDS = 5.0  # all of a recipe's node-name patterns against all node names


def _compile_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    if len(patterns) > MAX_PATTERNS:
        raise ValueError(f"at most {MAX_PATTERNS} patterns, got {len(patterns)}")
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise ValueError(f"a pattern may have at most {MAX_PATTERN_CHARS} characters")
        try:
            regex.compile(pattern)
        except regex.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
    return patterns


# Regular expressions over graph node names, validated when the config is built.
NodePatterns = Annotated[tuple[str, ...], AfterValidator(_compile_patterns)]


def match_nodes(names: list[str], patterns: tuple[str, ...]) -> list[str]:
    """Names that any pattern matches (re.search semantics), within `MATCH_SECONDS` in all.

    The `regex` module's timeout bounds what a pattern with catastrophic backtracking can cost.
    """
    if not patterns:
        return []
    deadline = time.monotonic() + MATCH_SECONDS
    compiled = [regex.compile(p) for p in patterns]
    found = []
    try:
        for name in names:
            if any(c.search(name, timeout=max(deadline - time.monotonic(), 0.001)) for c in compiled):
                found.append(name)
    except TimeoutError:
        raise ConfigError(f"the node-name patterns {list(patterns)} took more than {MATCH_SECONDS:.0f} s to match "
                          f"{len(names)} node names (catastrophic backtracking?); simplify them") from None
    return found


Transform = Callable[[Any, Any, StepContext], Artifact]
_TRANSFORMS: dict[type[StepConfig], Transform] = {}
_KINDS: dict[str, type[StepConfig]] = {}


def register_step(config_type: type[StepConfig]) -> Callable[[Transform], Transform]:
    """Decorator that binds a transform function to its config type."""

    def bind(fn: Transform) -> Transform:
        _TRANSFORMS[config_type] = fn
        _KINDS[config_type.step_kind()] = config_type
        return fn

    return bind


def transform_for(config: StepConfig) -> Transform:
    try:
        return _TRANSFORMS[type(config)]
    except KeyError:
        raise ConfigError(f"no transform is registered for {type(config).__name__}") from None


def config_type_for(kind: str) -> type[StepConfig]:
    try:
        return _KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown step kind {kind!r}; known: {', '.join(sorted(_KINDS))}") from None
