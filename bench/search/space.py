"""What `optimise search` tries, in which order, and what it learns to skip.

Candidates are recipes (typed step configs), ordered cheapest first: graph-only variants of the
teacher (minutes), then students from the largest to the smallest (each trains for tens of minutes
on a CPU). Every student is built for each engine of the target; the step cache shares its PyTorch
part between them. The rules in `skip_reason` use what finished trials taught:

- a student that missed the budget on every engine rules out the smaller students (fewer layers,
  or the same layers pruned further): they would only lose more;
- when dynamic int8 already meets the budget, int8 with layers kept in fp32 can only be slower;
- once the time budget is spent, nothing new starts.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from runtimes.common.cpu import CpuTarget
from toolchain.recipe import Recipe, Target, for_cpu
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


class Engine(str, enum.Enum):
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"


class Status(str, enum.Enum):
    """How a candidate ended: met the budget, missed it, failed to build or measure, or was skipped."""

    PASSED = "passed"
    MISSED = "missed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Candidate:
    """One recipe the search may build. `size_rank` orders students from the largest (1) down;
    0 is the teacher's own size. `trains` marks candidates that fine-tune (slow)."""

    name: str
    engine: Engine
    target: Target
    steps: tuple[StepConfig, ...]
    size_rank: int = 0
    trains: bool = False

    def recipe(self) -> Recipe:
        return Recipe(name=self.slug, target=self.target, steps=self.steps)

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-").replace("--", "-")


# -- the candidates ------------------------------------------------------------------------------

def _ort_int8(**options: Any) -> tuple[StepConfig, ...]:
    return (ExportOnnx(), FuseGraph(), DynamicInt8(**options))


def _openvino_int8() -> tuple[StepConfig, ...]:
    return (ExportOnnx(), OpenVinoIR(), OpenVinoInt8())


def student_steps(layers: int, epochs: float, augment: int, trim: bool = True,
                  prune_ffn: float | None = None) -> tuple[StepConfig, ...]:
    """A student's PyTorch steps: keep `layers` layers, distil (soft targets plus hidden-state matching,
    `augment` masked-LM copies of the training texts), optionally prune the FFN to `prune_ffn` of its
    neurons and recover with a short distillation, then trim the vocabulary to the data's tokens. The one
    table of student settings: `tools.students` builds its variants from it too, so both share the step
    cache."""
    steps: list[StepConfig] = [
        DropLayers(num_layers=layers),
        Distil(epochs=epochs, augment=augment, hidden_weight=1.0, evaluations_per_epoch=2, patience=3)]
    if prune_ffn is not None:
        steps += [PruneHeadsAndNeurons(keep_ffn=prune_ffn, keep_heads=1.0, ffn_multiple=16),
                  Distil(epochs=1, augment=augment, evaluations_per_epoch=2, patience=2)]
    if trim:
        steps.append(TrimVocab())
    return tuple(steps)


def student_sizes(layers: int) -> list[tuple[str, tuple[StepConfig, ...]]]:
    """(name, torch steps) from the largest student to the smallest, for a teacher of `layers` layers."""
    half, third = max(1, round(layers / 2)), max(1, round(layers / 3))
    sizes = []
    if half < layers:  # the half-depth students keep the full vocabulary: trimming costs accuracy on unseen text
        sizes.append((f"{half}-layer student", student_steps(half, 2, 1, trim=False)))
        sizes.append((f"{half}-layer student, FFN pruned to 50%", student_steps(half, 2, 1, trim=False,
                                                                                 prune_ffn=0.5)))
    if third < half:
        sizes.append((f"{third}-layer student", student_steps(third, 3, 2)))
        sizes.append((f"{third}-layer student, FFN pruned to 50%", student_steps(third, 3, 2, prune_ffn=0.5)))
    return sizes


def candidates_for(target: Target, layers: int, budget_points: float, students: bool = True,
                   budgeted_int8: bool = True, confidence: float | None = None,
                   cpu: CpuTarget | None = None) -> list[Candidate]:
    """Every candidate for `target`, cheapest first; students (if asked for) from the largest down.
    `budgeted_int8=False` leaves out int8 with layers kept in fp32, whose step cannot score the task
    (question answering); `confidence` holds that step to the drop's upper bound, as the search is.
    Int8 steps quantise for `cpu` (default: this machine)."""
    found = _candidates(target, layers, budget_points, students, budgeted_int8, confidence)
    cpu = cpu or CpuTarget()
    return [dataclasses.replace(c, steps=for_cpu(c.steps, cpu)) for c in found]


def _candidates(target: Target, layers: int, budget_points: float, students: bool, budgeted_int8: bool,
                confidence: float | None) -> list[Candidate]:
    if target is Target.CUDA:
        teacher = [Candidate("fp32", Engine.ONNXRUNTIME, target, (ExportOnnx(), FuseGraph())),
                   Candidate("fp16", Engine.ONNXRUNTIME, target, (ExportOnnx(), FuseGraph(), Float16()))]
        tails = [("fp16", Engine.ONNXRUNTIME, (ExportOnnx(), FuseGraph(), Float16()))]
    elif target is Target.OPENVINO:
        teacher = [Candidate("openvino fp32", Engine.OPENVINO, target, (ExportOnnx(), OpenVinoIR())),
                   Candidate("openvino int8", Engine.OPENVINO, target, _openvino_int8())]
        tails = [("openvino int8", Engine.OPENVINO, _openvino_int8())]
    else:  # a CPU: ONNX Runtime or OpenVINO, whichever is faster within the budget
        budgeted = _ort_int8(accuracy_budget=budget_points, accuracy_confidence=confidence)
        teacher = [
            Candidate("fp32", Engine.ONNXRUNTIME, target, (ExportOnnx(), FuseGraph())),
            Candidate("int8", Engine.ONNXRUNTIME, target, _ort_int8()),
            *([Candidate("int8, layers kept fp32 to fit the budget", Engine.ONNXRUNTIME, target, budgeted)]
              if budgeted_int8 else []),
            Candidate("openvino int8", Engine.OPENVINO, Target.OPENVINO, _openvino_int8()),
            Candidate("int8-static", Engine.ONNXRUNTIME, target, (ExportOnnx(), StaticInt8())),
        ]
        tails = [("int8", Engine.ONNXRUNTIME, _ort_int8()), ("openvino int8", Engine.OPENVINO, _openvino_int8())]
    found = list(teacher)
    if students:
        for rank, (student, torch_steps) in enumerate(student_sizes(layers), 1):
            for tail_name, engine, tail in tails:
                found.append(Candidate(f"{student}, {tail_name}", engine,
                                       Target.OPENVINO if engine is Engine.OPENVINO else target,
                                       (*torch_steps, *tail), size_rank=rank, trains=True))
    return found


# -- what finished trials rule out ---------------------------------------------------------------

@dataclass(frozen=True)
class Finished:
    """What `skip_reason` needs to know about a finished candidate."""

    name: str
    status: Status
    size_rank: int
    drop: float | None = None  # the drop's upper bound (points), what the budget was checked against


def skip_reason(candidate: Candidate, finished: Iterable[Finished], budget_points: float,
                time_left_s: float | None) -> str | None:
    """Why `candidate` need not be built, given the finished ones; None when it should be."""
    if time_left_s is not None and time_left_s <= 0:
        return "not started: the time budget was spent"
    done = list(finished)
    if candidate.name.startswith("int8, layers kept fp32"):
        int8 = next((f for f in done if f.name == "int8"), None)
        if int8 is not None and int8.status is Status.PASSED:
            return "int8 already meets the budget; keeping layers in fp32 could only be slower"
    if candidate.size_rank > 0:
        by_rank: dict[int, list[Finished]] = {}
        for f in done:
            if 0 < f.size_rank < candidate.size_rank and f.status in (Status.PASSED, Status.MISSED):
                by_rank.setdefault(f.size_rank, []).append(f)
        for rank in sorted(by_rank):
            measured = by_rank[rank]
            if all(f.status is Status.MISSED for f in measured):
                worst = min(measured, key=lambda f: f.drop if f.drop is not None else float("inf"))
                drop = f"{worst.drop:.2f}" if worst.drop is not None else "?"
                return (f"a larger student ({worst.name}) already lost up to {drop} points, more than the "
                        f"{budget_points:g}-point budget; a smaller one would lose more")
    return None
