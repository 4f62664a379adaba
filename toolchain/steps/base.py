"""The step abstraction: a typed config plus one transform, looked up by the config's type."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from runtimes.manifest import Manifest

from ..checkpoint import Checkpoint
from ..errors import ConfigError

log = logging.getLogger(__name__)


class StepConfig(BaseModel):
    """Base of every step config.

    Subclasses declare `kind: Literal["..."] = "..."`, the key that names the step in recipe files.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

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
    _counter: int = field(default=0, repr=False)

    def new_folder(self, step: str) -> Path:
        self._counter += 1
        return Path(tempfile.mkdtemp(prefix=f"{self._counter:02d}-{step}-", dir=self.workspace))


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
