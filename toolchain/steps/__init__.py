"""Step families. Importing this package registers every step's transform."""

from toolchain.stages import Artifact, Stage, TorchModel
from toolchain.steps.base import StepConfig, StepContext, config_type_for, register_step, transform_for
from toolchain.steps.distill import Distil, distil
from toolchain.steps.export import Exporter, ExportOnnx, export_onnx
from toolchain.steps.fuse import FuseGraph, FusionError, fuse_graph
from toolchain.steps.openvino import OpenVinoInt8, OpenVinoIR, convert_openvino_ir, quantize_openvino_int8
from toolchain.steps.prune import DropLayers, PruneHeadsAndNeurons, drop_layers, prune_heads_and_neurons
from toolchain.steps.quantize import (
    DynamicInt8,
    Float16,
    StaticInt8,
    convert_fp16,
    quantize_dynamic_int8,
    quantize_static_int8,
)
from toolchain.steps.vocab import Alphabet, TrimVocab, trim_vocab

__all__ = [
    "Alphabet",
    "Artifact",
    "Distil",
    "DropLayers",
    "DynamicInt8",
    "ExportOnnx",
    "Exporter",
    "Float16",
    "FuseGraph",
    "FusionError",
    "OpenVinoIR",
    "OpenVinoInt8",
    "PruneHeadsAndNeurons",
    "Stage",
    "StaticInt8",
    "StepConfig",
    "StepContext",
    "TorchModel",
    "TrimVocab",
    "config_type_for",
    "convert_fp16",
    "convert_openvino_ir",
    "distil",
    "drop_layers",
    "export_onnx",
    "fuse_graph",
    "prune_heads_and_neurons",
    "quantize_dynamic_int8",
    "quantize_openvino_int8",
    "quantize_static_int8",
    "register_step",
    "transform_for",
    "trim_vocab",
]
