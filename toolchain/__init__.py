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
from .recipe import PRESETS, ParityConfig, Recipe, preset
from .steps import Artifact, ExportOnnx, Exporter
from .version import __version__

__all__ = [
    "Artifact",
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
