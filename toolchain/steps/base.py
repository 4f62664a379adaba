"""The step abstraction: a typed config plus one transform, looked up by the config's type."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from runtimes.manifest import Manifest, ModelFormat, StepRecord, sha256_file

from ..checkpoint import Checkpoint
from ..data import TextDataset
from ..errors import ConfigError


class StepConfig(BaseModel):
    """Base of every step config.

    Subclasses declare `kind: Literal["..."] = "..."`, the key that names the step in recipe files.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    # A lossy step (quantisation, fp16) is held to the recipe's `lossy_parity`, not to `parity`.
    lossy: ClassVar[bool] = False
    # A step that needs data (calibration, accuracy checks) refuses to start without it.
    needs_data: ClassVar[bool] = False

    @classmethod
    def step_kind(cls) -> str:
        return cls.model_fields["kind"].default

    def to_record(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Artifact:
    """An artifact folder on disk and the manifest that describes it."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file


@dataclass
class StepContext:
    """What a step may use besides its input: the source checkpoint and a scratch folder."""

    checkpoint: Checkpoint
    workspace: Path
    dataset: TextDataset | None = None
    _counter: int = field(default=0, repr=False)

    def new_folder(self, step: str) -> Path:
        self._counter += 1
        return Path(tempfile.mkdtemp(prefix=f"{self._counter:02d}-{step}-", dir=self.workspace))


# Files of the HF folder that every artifact carries along unchanged.
_HF_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "vocab.txt", "vocab.json", "merges.txt")


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
    """Finish a step: copy the HF files next to the new model and extend the parent's manifest."""
    for name in _HF_FILES:
        if (parent.path / name).is_file() and not (folder / name).exists():
            shutil.copy2(parent.path / name, folder / name)
    model_file = model_file or parent.manifest.model_file
    digest = sha256_file(folder / model_file)
    record = StepRecord(config.step_kind(), config.to_record(), parent.manifest.model_sha256, digest,
                        timer.started_at, timer.elapsed(), details)
    manifest = dataclasses.replace(
        parent.manifest, model_file=model_file, model_sha256=digest,
        format=model_format or parent.manifest.format,
        data_files={name: sha256_file(folder / name) for name in data_files},
        lineage=parent.manifest.lineage + (record,),
    )
    return Artifact(folder, manifest)


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
