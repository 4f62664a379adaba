"""Recipes: ordered lists of step configs, serialisable to JSON and TOML, and named presets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runtimes.common.cpu import TARGET_NAMES, CpuTarget
from runtimes.common.cpu import parse_target as parse_cpu
from runtimes.common.errors import InputError
from toolchain import catalogue
from toolchain.catalogue import Target
from toolchain.errors import ConfigError
from toolchain.parity import ParityConfig
from toolchain.stages import Stage
from toolchain.steps import (
    StepConfig,
    config_type_for,
)
from toolchain.steps.cpu_target import CpuInt8Step

RECIPE_VERSION = 1


# Quantisation moves logits by design: its real check is accuracy on data. On the parity batches
# it must still pick the same answer for most samples.
LOSSY_PARITY = ParityConfig(atol=None, min_agreement=0.75)


def check_chain(steps: list[StepConfig]) -> None:
    """Each step must consume what the one before it produces, starting from the PyTorch checkpoint,
    and the recipe must end in a graph the runtime can load."""
    stage = Stage.TORCH
    for number, step in enumerate(steps, 1):
        if stage not in step.consumes:
            takes = " or ".join(sorted(s.value for s in step.consumes))
            given = (f"step {number - 1} ({steps[number - 2].step_kind()}) produces {stage.value}" if number > 1
                     else "the recipe starts from a PyTorch checkpoint (torch)")
            raise ValueError(f"step {number} ({step.step_kind()}) takes {takes}, but {given}")
        stage = step.output_stage(stage)
    if steps and stage is Stage.TORCH:
        raise ValueError("the recipe never leaves the PyTorch stage: add export-onnx after the torch steps")


class Recipe(BaseModel):
    """What `optimise` does to a checkpoint: optimisation steps in order, checked as a chain of stages.

    Torch-stage steps (drop-layers, ...) come first, then `export-onnx`, then graph steps.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: int = RECIPE_VERSION
    name: str = "custom"
    target: Target = Target.CPU
    steps: tuple[StepConfig, ...] = Field(min_length=1)
    parity: ParityConfig = ParityConfig()
    lossy_parity: ParityConfig = LOSSY_PARITY

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # the same one-line error as a recipe file gets
            raise ConfigError(f"invalid recipe: {_short(exc)}") from None

    def parity_for(self, step: StepConfig) -> ParityConfig:
        return self.lossy_parity if step.lossy else self.parity

    def missing_data(self, roles: set) -> list[str]:
        """'step needs role data' for every role a step needs that `roles` lacks."""
        return [f"{s.step_kind()} needs {role.value} data" for s in self.steps
                for role in sorted(s.data_roles() - set(roles), key=lambda r: r.value)]

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
            elif isinstance(item, dict) and isinstance(item.get("kind"), str):
                steps.append(config_type_for(item["kind"]).model_validate(item))
            else:
                raise ValueError(f"each step needs a 'kind' naming the step; got {_preview(item)}")
        check_chain(steps)
        return tuple(steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "target": self.target.value,
            "steps": [s.to_record() for s in self.steps],
            "parity": self.parity.model_dump(mode="json"),
            "lossy_parity": self.lossy_parity.model_dump(mode="json"),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Recipe:
        if not isinstance(data, dict):
            raise ConfigError(f"invalid recipe: expected a table/object at the top, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid recipe: {_short(exc)}") from None
        except ConfigError as exc:  # from a step's own checks, or from __init__ (already prefixed)
            message = str(exc)
            raise ConfigError(message if message.startswith("invalid recipe") else f"invalid recipe: {message}") \
                from None
        except RecursionError:
            raise ConfigError("invalid recipe: nested too deeply") from None

    @classmethod
    def from_file(cls, path: Path | str) -> Recipe:
        """Read a recipe from a `.json` or `.toml` file (at most 1 MB; a recipe is a few lines)."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"recipe file {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"recipe file {path} is not a regular file")
        if path.suffix not in (".toml", ".json"):
            raise ConfigError(f"recipe file {path} must end in .json or .toml")
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_RECIPE_BYTES + 1)
            if len(raw) > MAX_RECIPE_BYTES:
                raise ConfigError(f"recipe file {path} is larger than {MAX_RECIPE_BYTES >> 10} kB; a recipe is a "
                                  "few lines")
            text = raw.decode("utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"recipe file {path} cannot be parsed: {exc}") from None
        except RecursionError:
            raise ConfigError(f"recipe file {path} is nested too deeply to be a recipe") from None
        except OSError as exc:
            raise ConfigError(f"cannot read recipe file {path}: {exc.strerror}") from None
        return cls.from_dict(data)


MAX_RECIPE_BYTES = 1 << 20


def _preview(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _short(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"])[:80] or "recipe"
        parts.append(f"{where}: {err['msg'][:200]}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# -- presets: one factory per (target, name), built from the catalogue (toolchain.catalogue) -----------
# The student presets change the PyTorch model first, then end with the target's STUDENT_GRAPH variant;
# they need training and validation data (the distillation trains on one and stops early on the other).

def _graph_preset(target: Target, name: str) -> Callable[..., Recipe]:
    def factory(**options: Any) -> Recipe:
        return Recipe(name=name, target=target, steps=catalogue.graph(target, name, **options))
    factory.__doc__ = (catalogue.GRAPH_VARIANTS[target][name].__doc__
                       or ", ".join(s.kind for s in catalogue.graph(target, name)))
    return factory


def _student_preset(name: str, target: Target) -> Callable[..., Recipe]:
    about, torch_steps = catalogue.STUDENT_PRESETS[name]
    tail = catalogue.STUDENT_GRAPH[target]

    def factory() -> Recipe:
        return Recipe(name=name, target=target, steps=(*torch_steps(), *catalogue.graph(target, tail)))
    factory.__doc__ = f"{about} Then {', '.join(s.kind for s in catalogue.graph(target, tail))}."
    return factory


PRESETS: dict[Target, dict[str, Callable[..., Recipe]]] = {
    target: {name: _graph_preset(target, name) for name in variants}
    for target, variants in catalogue.GRAPH_VARIANTS.items()}
PRESETS[Target.OPENVINO]["int8-static"] = PRESETS[Target.OPENVINO]["int8"]  # NNCF is static int8
for _target in Target:
    for _name in catalogue.STUDENT_PRESETS:
        PRESETS[_target][_name] = _student_preset(_name, _target)
DEFAULT_TARGET = Target.CPU
DEFAULT_PRESET = "int8"


def parse_target(text: Target | str) -> tuple[Target, CpuTarget]:
    """`cpu`, `cpu:avx2`, `openvino:arm64`, `cuda`...: where the artifact runs, and for which CPU its int8 is made.

    The CPU part is `native` (this machine, the default), `avx2`, `avx512`, `avx512_vnni` or `arm64`."""
    if isinstance(text, Target):
        return text, CpuTarget()
    backend, _, cpu = str(text).partition(":")
    try:
        target = Target(backend.strip().lower())
    except ValueError:
        raise ConfigError(f"unknown target {text!r}; choose one of: {', '.join(t.value for t in Target)}, "
                          f"optionally with a CPU (cpu:{'|'.join(TARGET_NAMES)})") from None
    if not cpu:
        return target, CpuTarget()
    if target is Target.CUDA:
        raise ConfigError(f"target {text!r}: cuda takes no CPU (its kernels are the GPU's)")
    try:
        return target, parse_cpu(cpu)
    except InputError as exc:
        raise ConfigError(f"target {text!r}: {exc}") from None


def for_cpu(steps: tuple[StepConfig, ...], cpu: CpuTarget) -> tuple[StepConfig, ...]:
    """`steps` with every int8 step quantising for `cpu`."""
    return tuple(s.model_copy(update={"cpu": cpu.requested}) if isinstance(s, CpuInt8Step) else s for s in steps)


def preset(name: str, target: Target | str = DEFAULT_TARGET, accuracy_budget: float | None = None) -> Recipe:
    """Build the named preset for a target (`cpu`, `cpu:avx2`, `openvino:arm64`, `cuda`; see `parse_target`).
    `accuracy_budget` (points) applies to cpu int8."""
    target, cpu = parse_target(target)
    recipe = _preset(name, target, accuracy_budget)
    return recipe.model_copy(update={"steps": for_cpu(recipe.steps, cpu)})


def _preset(name: str, target: Target, accuracy_budget: float | None) -> Recipe:
    factories = PRESETS[target]
    if name not in factories:
        raise ConfigError(f"unknown preset {name!r} for target {target.value}; choose one of: {', '.join(factories)}")
    factory = factories[name]
    if accuracy_budget is not None:
        if (target, name) != (Target.CPU, "int8"):
            raise ConfigError("`accuracy_budget` applies to the cpu int8 preset (dynamic int8) only")
        return factory(accuracy_budget=accuracy_budget)
    return factory()
