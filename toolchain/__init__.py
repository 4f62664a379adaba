"""Edge deployment toolchain: export, optimise and validate fine-tuned transformers."""

from toolchain.api import optimise
from toolchain.cache import StepCache, default_cache_dir
from toolchain.checkpoint import Checkpoint, inspect_checkpoint
from toolchain.data import DataRole, TextDataset
from toolchain.errors import (
    CheckpointError,
    ConfigError,
    OptimiseError,
    OutputError,
    ParityError,
    UnsupportedModelError,
)
from toolchain.families import FAMILIES, Family
from toolchain.recipe import PRESETS, ParityConfig, Recipe, Target, preset
from toolchain.steps import (
    Artifact,
    Distil,
    DropLayers,
    DynamicInt8,
    Exporter,
    ExportOnnx,
    Float16,
    FuseGraph,
    OpenVinoInt8,
    OpenVinoIR,
    PruneHeadsAndNeurons,
    Stage,
    StaticInt8,
    TorchModel,
    TrimVocab,
)
from toolchain.tasks import load_dataset, load_text_dataset
from toolchain.version import __version__

__all__ = [
    "FAMILIES",
    "PRESETS",
    "Artifact",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "DataRole",
    "Distil",
    "DropLayers",
    "DynamicInt8",
    "ExportOnnx",
    "Exporter",
    "Family",
    "Float16",
    "FuseGraph",
    "OpenVinoIR",
    "OpenVinoInt8",
    "OptimiseError",
    "OutputError",
    "ParityConfig",
    "ParityError",
    "PruneHeadsAndNeurons",
    "Recipe",
    "Stage",
    "StaticInt8",
    "StepCache",
    "Target",
    "TextDataset",
    "TorchModel",
    "TrimVocab",
    "UnsupportedModelError",
    "__version__",
    "default_cache_dir",
    "inspect_checkpoint",
    "load_dataset",
    "load_text_dataset",
    "optimise",
    "preset",
]
