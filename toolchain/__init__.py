"""Edge deployment toolchain: export, optimise and validate fine-tuned transformers."""

from .api import optimise
from .checkpoint import Checkpoint, inspect_checkpoint
from .errors import (
    CheckpointError,
    ConfigError,
    OptimiseError,
    OutputError,
    ParityError,
    UnsupportedModelError,
)
from .data import DataRole, TextDataset, load_dataset, load_text_dataset
from .recipe import PRESETS, ParityConfig, Recipe, Target, preset
from .cache import StepCache, default_cache_dir
from .families import FAMILIES, Family
from .steps import (
    Artifact,
    DropLayers,
    DynamicInt8,
    ExportOnnx,
    Exporter,
    Float16,
    FuseGraph,
    OpenVinoInt8,
    OpenVinoIR,
    Stage,
    StaticInt8,
    TorchModel,
)
from .version import __version__

__all__ = [
    "Artifact",
    "DropLayers",
    "FAMILIES",
    "Family",
    "Stage",
    "StepCache",
    "TorchModel",
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
