"""Recipes: ordered lists of step configs, serialisable to JSON and TOML, and named presets."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runtimes.common.cpu import TARGET_NAMES, CpuTarget
from runtimes.common.cpu import parse_target as parse_cpu
from runtimes.common.errors import InputError
from toolchain.errors import ConfigError
from toolchain.stages import Stage
from toolchain.steps import (
    Distil,
    DropLayers,
    DynamicInt8,
    ExportOnnx,
    Float16,
    FuseGraph,
    OpenVinoInt8,
    OpenVinoIR,
    PruneHeadsAndNeurons,
    StaticInt8,
    StepConfig,
    TrimVocab,
    config_type_for,
)
from toolchain.steps.cpu_target import CpuInt8Step

RECIPE_VERSION = 1


class Target(str, enum.Enum):
    """Where the artifact will run."""

    CPU = "cpu"  # ONNX Runtime, CPU provider
    CUDA = "cuda"  # ONNX Runtime, CUDA / TensorRT providers
    OPENVINO = "openvino"  # OpenVINO IR


class ParityConfig(BaseModel):
    """How closely an artifact must follow the PyTorch model on the built-in parity batches."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    atol: float | None = Field(default=1e-4, gt=0,
                               description="largest allowed absolute difference per output; null: report only")
    min_agreement: float = Field(default=1.0, ge=0, le=1, description="share of predictions that must match")


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


# -- presets: plain factory functions, one per (target, name) -------------------------------------

def cpu_fp32() -> Recipe:
    """Export and fuse: fp32, equal to PyTorch within 1e-4."""
    return Recipe(name="fp32", target=Target.CPU, steps=(ExportOnnx(), FuseGraph()))


def cpu_int8(accuracy_budget: float | None = None) -> Recipe:
    """Fuse, then dynamic int8 (VNNI-aware, embeddings included): no data needed."""
    return Recipe(name="int8", target=Target.CPU,
                  steps=(ExportOnnx(), FuseGraph(), DynamicInt8(accuracy_budget=accuracy_budget)))


def cpu_int8_static() -> Recipe:
    """Static int8 in QDQ form, calibrated on the data given; ONNX Runtime fuses it at load."""
    return Recipe(name="int8-static", target=Target.CPU, steps=(ExportOnnx(), StaticInt8()))


def cuda_fp32() -> Recipe:
    return Recipe(name="fp32", target=Target.CUDA, steps=(ExportOnnx(), FuseGraph()))


def cuda_fp16() -> Recipe:
    """Fuse, then fp16 with fp32 inputs/outputs: for tensor-core GPUs."""
    return Recipe(name="fp16", target=Target.CUDA, steps=(ExportOnnx(), FuseGraph(), Float16()))


def openvino_fp32() -> Recipe:
    return Recipe(name="fp32", target=Target.OPENVINO, steps=(ExportOnnx(), OpenVinoIR()))


def openvino_int8() -> Recipe:
    """OpenVINO IR, then NNCF post-training int8 calibrated on the data given."""
    return Recipe(name="int8", target=Target.OPENVINO, steps=(ExportOnnx(), OpenVinoIR(), OpenVinoInt8()))


# -- student presets: change the PyTorch model first, then the target's graph steps ---------------------
# They need --train-data and --eval-data (the distillation trains on one and stops early on the other).

def _half_student() -> tuple[StepConfig, ...]:
    """Half the layers (DistilBERT's choice), distilled with hidden-state matching and augmented text."""
    return (DropLayers(share=0.5),
            Distil(epochs=3, augment=2, hidden_weight=1.0, evaluations_per_epoch=2, patience=3))


def _small_student() -> tuple[StepConfig, ...]:
    """A third of the layers, FFN pruned to half and recovered, vocabulary trimmed to the data's tokens."""
    return (DropLayers(share=1 / 3),
            Distil(epochs=3, augment=2, hidden_weight=1.0, evaluations_per_epoch=2, patience=3),
            PruneHeadsAndNeurons(keep_ffn=0.5, ffn_multiple=16),
            Distil(epochs=1, augment=2, evaluations_per_epoch=2, patience=2),
            TrimVocab())


def _graph(target: Target) -> tuple[StepConfig, ...]:
    return {Target.CPU: (ExportOnnx(), FuseGraph(), DynamicInt8()),
            Target.CUDA: (ExportOnnx(), FuseGraph(), Float16()),
            Target.OPENVINO: (ExportOnnx(), OpenVinoIR(), OpenVinoInt8())}[target]


def _student_preset(name: str, target: Target, torch_steps: Callable[[], tuple[StepConfig, ...]]
                    ) -> Callable[[], Recipe]:
    def factory() -> Recipe:
        return Recipe(name=name, target=target, steps=(*torch_steps(), *_graph(target)))
    factory.__doc__ = (torch_steps.__doc__ or "") + f" Then {', '.join(s.kind for s in _graph(target))}."
    return factory


PRESETS: dict[Target, dict[str, Callable[..., Recipe]]] = {
    Target.CPU: {"fp32": cpu_fp32, "int8": cpu_int8, "int8-static": cpu_int8_static},
    Target.CUDA: {"fp32": cuda_fp32, "fp16": cuda_fp16},
    Target.OPENVINO: {"fp32": openvino_fp32, "int8": openvino_int8, "int8-static": openvino_int8},
}
for _target in Target:
    PRESETS[_target]["student"] = _student_preset("student", _target, _half_student)
    PRESETS[_target]["student-small"] = _student_preset("student-small", _target, _small_student)
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
        if factory is not cpu_int8:
            raise ConfigError("--accuracy-budget applies to the cpu int8 preset (dynamic int8) only")
        return factory(accuracy_budget=accuracy_budget)
    return factory()
