"""Step families. Importing this package registers every step's transform."""

from ..stages import Artifact, Stage, TorchModel
from .base import StepConfig, StepContext, config_type_for, register_step, transform_for
from .distill import Distil, distil
from .export import Exporter, ExportOnnx, export_onnx
from .fuse import FuseGraph, FusionError, fuse_graph
from .openvino import OpenVinoInt8, OpenVinoIR, convert_openvino_ir, quantize_openvino_int8
from .prune import DropLayers, PruneHeadsAndNeurons, drop_layers, prune_heads_and_neurons
from .quantize import DynamicInt8, Float16, StaticInt8, convert_fp16, quantize_dynamic_int8, quantize_static_int8
from .vocab import Alphabet, TrimVocab, trim_vocab

__all__ = [
    "Alphabet",
    "Artifact",
    "Distil",
    "distil",
    "DropLayers",
    "PruneHeadsAndNeurons",
    "prune_heads_and_neurons",
    "Stage",
    "TorchModel",
    "drop_layers",
    "DynamicInt8",
    "ExportOnnx",
    "Exporter",
    "Float16",
    "FuseGraph",
    "FusionError",
    "OpenVinoIR",
    "OpenVinoInt8",
    "StaticInt8",
    "StepConfig",
    "StepContext",
    "config_type_for",
    "convert_fp16",
    "convert_openvino_ir",
    "export_onnx",
    "fuse_graph",
    "quantize_dynamic_int8",
    "quantize_openvino_int8",
    "quantize_static_int8",
    "register_step",
    "transform_for",
    "TrimVocab",
    "trim_vocab",
]
