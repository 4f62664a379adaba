"""The stages a model passes through, and the typed values that carry it from step to step.

A run starts from a PyTorch checkpoint (`TorchModel`, the torch stage). Steps that change the
network itself (dropping layers, pruning, distillation) go from torch to torch and write a real
checkpoint folder; `export-onnx` leaves the torch stage for a graph (`Artifact`); graph steps go
from graph to graph. Each step declares what it consumes and produces, and a recipe is checked as
a chain when it is built.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from runtimes.common.manifest import Manifest, StepRecord
from toolchain.checkpoint import Checkpoint


class Stage(str, enum.Enum):
    TORCH = "torch"  # a Hugging Face checkpoint folder: config, safetensors weights, tokenizer
    ONNX = "onnx"  # standard ONNX operators: any ONNX consumer can read it (OpenVINO, QDQ quantisers)
    ONNX_FUSED = "onnx-fused"  # ONNX Runtime's fused contrib operators: ONNX Runtime only
    OPENVINO_IR = "openvino-ir"


@dataclass(frozen=True)
class TorchModel:
    """A PyTorch checkpoint in a run: the source, or what a torch-stage step made of it.

    `lineage` starts with the source checkpoint's record; `sha256` identifies this model's files.
    """

    checkpoint: Checkpoint
    lineage: tuple[StepRecord, ...]

    stage = Stage.TORCH

    @property
    def path(self) -> Path:
        return self.checkpoint.path

    @property
    def sha256(self) -> str:
        return self.checkpoint.sha256

    @property
    def config(self) -> dict[str, Any]:
        return self.checkpoint.config


@dataclass(frozen=True)
class Artifact:
    """An artifact folder on disk (ONNX or OpenVINO IR), the manifest that describes it, and its stage."""

    path: Path
    manifest: Manifest
    stage: Stage = Stage.ONNX

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    @property
    def sha256(self) -> str:
        """The model's digest: of model.onnx, or of model.xml and model.bin together."""
        return model_digest(self.manifest.files, self.manifest.model_files)

    @cached_property
    def config(self) -> dict[str, Any]:
        """The HF config of the model in this artifact (shapes come from here, never from the source)."""
        return json.loads((self.path / "config.json").read_text(encoding="utf-8"))


def model_digest(files: dict[str, str], names: tuple[str, ...]) -> str:
    """One file's sha256, or one digest over several files' names and hashes."""
    if len(names) == 1:
        return files[names[0]]
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}\0{files[name]}\n".encode())
    return digest.hexdigest()
