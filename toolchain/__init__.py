"""Edge deployment toolchain: export, optimise and validate fine-tuned transformers."""

from .api import optimise
from .cache import StepCache, default_cache_dir
from .checkpoint import Checkpoint, inspect_checkpoint
from .data import DataRole, TextDataset, load_dataset, load_text_dataset
from .errors import (
    CheckpointError,
    ConfigError,
    OptimiseError,
    OutputError,
    ParityError,
    UnsupportedModelError,
)
from .families import FAMILIES, Family
from .recipe import PRESETS, ParityConfig, Recipe, Target, preset
from .steps import (
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
from .version import __version__

__all__ = [
    "Artifact",
    "Distil",
    "DropLayers",
    "FAMILIES",
    "Family",
    "PruneHeadsAndNeurons",
    "Stage",
    "StepCache",
    "TorchModel",
    "TrimVocab",
    "default_cache_dir",
    "DynamicInt8",
    "Float16",
    "FuseGraph",
    "OpenVinoIR",
    "OpenVinoInt8",
    "StaticInt8",
    "Target",
    "TextDataset",
    "DataRole",
    "load_dataset",
    "load_text_dataset",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "ExportOnnx",
    "Exporter",
    "OptimiseError",
    "OutputError",
    "PRESETS",
    "ParityConfig",
    "ParityError",
    "Recipe",
    "UnsupportedModelError",
    "__version__",
    "inspect_checkpoint",
    "optimise",
    "preset",
]
