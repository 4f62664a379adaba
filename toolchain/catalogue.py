"""The one catalogue of variants: each target's graph variants and the students' PyTorch steps.

The named presets (`toolchain.recipe.PRESETS`, `optimise --preset`), the accuracy-budget search's
candidates (`bench.search.space`) and `tools/students.py` all build their step lists here, so a
variant is described once and the step cache shares its work between them. A recipe file names the
same step kinds (`toolchain.steps`), one by one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

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
)

Steps = tuple[StepConfig, ...]


class Target(str, enum.Enum):
    """Where the artifact will run."""

    CPU = "cpu"  # ONNX Runtime, CPU provider
    CUDA = "cuda"  # ONNX Runtime, CUDA / TensorRT providers
    OPENVINO = "openvino"  # OpenVINO IR


def _ort_int8(**options: Any) -> Steps:
    """Fuse, then dynamic int8 (made for the CPU's instruction set, embeddings included): no data needed.
    Options go to `DynamicInt8` (e.g. `accuracy_budget`: keep layers in fp32 until the drop fits)."""
    return (ExportOnnx(), FuseGraph(), DynamicInt8(**options))


# target -> variant name -> its graph steps (after the PyTorch steps of a student, if any)
GRAPH_VARIANTS: dict[Target, dict[str, Callable[..., Steps]]] = {
    Target.CPU: {
        "fp32": lambda: (ExportOnnx(), FuseGraph()),
        "int8": _ort_int8,
        "int8-static": lambda: (ExportOnnx(), StaticInt8()),  # QDQ, calibrated on the data given
    },
    Target.CUDA: {
        "fp32": lambda: (ExportOnnx(), FuseGraph()),
        "fp16": lambda: (ExportOnnx(), FuseGraph(), Float16()),  # fp32 inputs/outputs, for tensor cores
    },
    Target.OPENVINO: {
        "fp32": lambda: (ExportOnnx(), OpenVinoIR()),
        "int8": lambda: (ExportOnnx(), OpenVinoIR(), OpenVinoInt8()),  # NNCF, calibrated on the data given
    },
}
# the variant a student ends with on each target: the fastest that needs no choice from the user
STUDENT_GRAPH = {Target.CPU: "int8", Target.CUDA: "fp16", Target.OPENVINO: "int8"}


def graph(target: Target, name: str, **options: Any) -> Steps:
    """The graph steps of variant `name` on `target` (KeyError for an unknown pair)."""
    return GRAPH_VARIANTS[target][name](**options)


def student_steps(size: int | float | str, epochs: float, augment: int, trim: bool = True,
                  prune_ffn: float | None = None, hidden: bool = True, prune_heads: float | None = None) -> Steps:
    """A student's PyTorch steps: keep `size` layers of the teacher (an int) or that share of them (a float),
    or start from the pretrained model in the folder `size` (a str); distil (soft targets, plus hidden-state
    matching with `hidden`, on the training texts and `augment` neighbour-replaced copies of each), optionally
    prune the FFN to `prune_ffn` of its neurons and the attention to `prune_heads` of its heads (the least
    important ones, wherever they are) and recover with the same distillation, then (with `trim`) trim the
    vocabulary to the data's tokens."""
    distil = Distil(epochs=epochs, augment=augment, hidden_weight=1.0 if hidden else 0.0, evaluations_per_epoch=2,
                    patience=3)
    steps: list[StepConfig]
    if isinstance(size, str):
        steps = [distil.model_copy(update={"student": size})]
    else:
        steps = [DropLayers(num_layers=size) if isinstance(size, int) else DropLayers(share=size), distil]
    if prune_ffn is not None or prune_heads is not None:
        steps += [PruneHeadsAndNeurons(keep_ffn=prune_ffn or 1.0, keep_heads=prune_heads or 1.0, ffn_multiple=16),
                  # the student's own epochs, hidden states matched: on Rotten Tomatoes three won back 0.9 of
                  # the 1.8 points that one epoch left after pruning heads and FFN to half (docs/students.md)
                  distil]
    if trim:
        steps.append(TrimVocab())
    return tuple(steps)


# the student presets: name -> (what it is, its PyTorch steps); they need train and validation data
STUDENT_PRESETS: dict[str, tuple[str, Callable[[], Steps]]] = {
    "student": ("Half the layers (DistilBERT's choice), distilled with hidden-state matching and augmented text.",
                lambda: student_steps(0.5, 3, 2, trim=False)),
    "student-small": ("A third of the layers, FFN pruned to half and recovered, vocabulary trimmed to the data's "
                      "tokens.", lambda: student_steps(1 / 3, 3, 2, trim=True, prune_ffn=0.5)),
}


def student_sizes(layers: int, quick: bool = False, augment: int | None = None) -> list[tuple[str, Steps]]:
    """The search's students for a teacher of `layers` layers, (name, PyTorch steps) from the largest down.
    `quick`: the half-depth student alone, distilled for one epoch without augmentation (minutes, not an hour).
    `augment`: augmented copies of each training text for every student (default: 1 for the half-depth ones,
    2 for the smaller)."""
    half, third = max(1, round(layers / 2)), max(1, round(layers / 3))
    if quick:
        return [(f"{half}-layer quick student", student_steps(half, 1, augment or 0, trim=False))] \
            if half < layers else []
    sizes = []
    if half < layers:  # the half-depth students keep the full vocabulary: trimming costs accuracy on unseen text
        copies = 1 if augment is None else augment
        sizes.append((f"{half}-layer student", student_steps(half, 2, copies, trim=False)))
        sizes.append((f"{half}-layer student, FFN pruned to 50%", student_steps(half, 2, copies, trim=False,
                                                                                 prune_ffn=0.5)))
    if third < half:
        copies = 2 if augment is None else augment
        sizes.append((f"{third}-layer student", student_steps(third, 3, copies)))
        sizes.append((f"{third}-layer student, FFN pruned to 50%", student_steps(third, 3, copies, prune_ffn=0.5)))
        sizes.append((f"{third}-layer student, {_BOTH_PRUNED}", student_steps(third, 3, copies, prune_ffn=0.5,
                                                                               prune_heads=0.5)))
    return sizes


_BOTH_PRUNED = "heads and FFN pruned to 50%"


def start_students(name: str, folder: str, hidden: bool, quick: bool = False,
                   augment: int | None = None) -> list[tuple[str, Steps]]:
    """The search's students from the pretrained start in `folder`, (name, PyTorch steps) from the largest down;
    `hidden`: its hidden states can be matched to the teacher's. The start is distilled as it is, then with its
    FFN pruned to half, then with its heads pruned to half as well (unless `quick`: one epoch, no augmentation,
    no pruned variants). `augment`: copies of each training text (default 2; quick: 0)."""
    if quick:
        return [(f"{name} quick student", student_steps(folder, 1, augment or 0, trim=False, hidden=hidden))]
    copies = 2 if augment is None else augment
    return [(f"{name} student", student_steps(folder, 3, copies, trim=False, hidden=hidden)),
            (f"{name} student, FFN pruned to 50%", student_steps(folder, 3, copies, trim=False, prune_ffn=0.5,
                                                                 hidden=hidden)),
            (f"{name} student, {_BOTH_PRUNED}", student_steps(folder, 3, copies, trim=False, prune_ffn=0.5,
                                                              prune_heads=0.5, hidden=hidden))]
