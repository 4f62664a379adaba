"""Step families. Importing this package registers every step's transform."""

from .base import Artifact, StepConfig, StepContext, config_type_for, register_step, transform_for
from .export import Exporter, ExportOnnx, export_onnx

__all__ = [
    "Artifact",
    "ExportOnnx",
    "Exporter",
    "StepConfig",
    "StepContext",
    "config_type_for",
    "export_onnx",
    "register_step",
    "transform_for",
]
