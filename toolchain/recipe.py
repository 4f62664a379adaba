"""Recipes: ordered lists of step configs, serialisable to JSON and TOML, and named presets."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .steps import ExportOnnx, StepConfig, config_type_for

RECIPE_VERSION = 1


class ParityConfig(BaseModel):
    """How closely an artifact must follow the PyTorch model on the built-in parity batches."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    atol: float = Field(default=1e-4, gt=0, description="largest allowed absolute difference per output")
    min_agreement: float = Field(default=1.0, ge=0, le=1, description="share of predictions that must match")


class Recipe(BaseModel):
    """What `optimise` does to a checkpoint: an export step first, then optimisation steps in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: int = RECIPE_VERSION
    name: str = "custom"
    steps: tuple[StepConfig, ...] = Field(min_length=1)
    parity: ParityConfig = ParityConfig()

    @field_validator("version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != RECIPE_VERSION:
            raise ValueError(f"recipe version {v} is not supported (this toolchain reads {RECIPE_VERSION})")
        return v

    @field_validator("steps", mode="before")
    @classmethod
    def _parse_steps(cls, raw: Any) -> tuple[StepConfig, ...]:
        if not isinstance(raw, (list, tuple)):
            raise ValueError("steps must be a list")
        steps = []
        for item in raw:
            if isinstance(item, StepConfig):
                steps.append(item)
            elif isinstance(item, dict) and "kind" in item:
                steps.append(config_type_for(item["kind"]).model_validate(item))
            else:
                raise ValueError(f"each step needs a 'kind'; got {item!r}")
        if steps and not isinstance(steps[0], ExportOnnx):
            raise ValueError("the first step must be export-onnx")
        if any(isinstance(s, ExportOnnx) for s in steps[1:]):
            raise ValueError("export-onnx may appear only once, as the first step")
        return tuple(steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "steps": [s.to_record() for s in self.steps],
            "parity": self.parity.model_dump(mode="json"),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Recipe:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid recipe: {_short(exc)}") from None
        except ConfigError as exc:
            raise ConfigError(f"invalid recipe: {exc}") from None

    @classmethod
    def from_file(cls, path: Path | str) -> Recipe:
        """Read a recipe from a `.json` or `.toml` file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".toml":
                data = tomllib.loads(text)
            elif path.suffix == ".json":
                data = json.loads(text)
            else:
                raise ConfigError(f"recipe file {path} must end in .json or .toml")
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"recipe file {path} cannot be parsed: {exc}") from None
        return cls.from_dict(data)


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "recipe"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


# -- presets: plain factory functions -----------------------------------------------------------

def fp32() -> Recipe:
    """Export only: an fp32 ONNX model that matches PyTorch to 1e-4."""
    return Recipe(name="fp32", steps=(ExportOnnx(),))


PRESETS: dict[str, Callable[[], Recipe]] = {"fp32": fp32}
DEFAULT_PRESET = "fp32"


def preset(name: str) -> Recipe:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
