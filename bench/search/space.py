"""What `optimise search` tries, in which order, and what it learns to skip.

Candidates are recipes (typed step configs), ordered cheapest first: graph-only variants of the
teacher (minutes), then students from the largest to the smallest (each trains for tens of minutes
on a CPU). Every student is built for each engine of the target; the step cache shares its PyTorch
part between them. The rules in `skip_reason` use what finished trials taught:

- a student that missed the budget on every engine rules out the smaller students of its lineage
  (fewer layers, or the same layers pruned further; a pretrained start is its own lineage): they would
  only lose more;
- when dynamic int8 already meets the budget, int8 with layers kept in fp32 can only be slower;
- once the time budget is spent, nothing new starts.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runtimes.common.cpu import CpuTarget
from toolchain.catalogue import Target, graph, start_students, student_sizes
from toolchain.recipe import Recipe, for_cpu
from toolchain.steps import StepConfig


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
    """One recipe the search may build. `size_rank` orders students from the largest (1) down within their
    `lineage` (the teacher's layers, or a pretrained start's folder); 0 is the teacher's own size. `trains`
    marks candidates that fine-tune (slow)."""

    name: str
    engine: Engine
    target: Target
    steps: tuple[StepConfig, ...]
    size_rank: int = 0
    trains: bool = False
    lineage: str = "teacher"

    def recipe(self) -> Recipe:
        return Recipe(name=self.slug, target=self.target, steps=self.steps)

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-").replace("--", "-")


# -- the candidates ------------------------------------------------------------------------------

def candidates_for(target: Target, layers: int, budget_points: float, students: bool = True,
                   budgeted_int8: bool = True, confidence: float | None = None,
                   cpu: CpuTarget | None = None, quick: bool = False,
                   starts: Sequence[tuple[str, str, bool]] = (), augment: int | None = None) -> list[Candidate]:
    """Every candidate for `target`, cheapest first; students (if asked for) from the largest down.
    `budgeted_int8=False` leaves out int8 with layers kept in fp32, whose step cannot score the task
    (question answering); `confidence` holds that step to the drop's upper bound, as the search is.
    Int8 steps quantise for `cpu` (default: this machine). `quick`: one short-trained student, on the
    target's first engine only. `starts`: pretrained student starts, (name, folder, hidden states matchable),
    tried after the students cut from the teacher's layers. `augment`: augmented copies of each training text
    for every student (default: the catalogue's, by size)."""
    found = _candidates(target, layers, budget_points, students, budgeted_int8, confidence, quick, starts, augment)
    cpu = cpu or CpuTarget()
    return [dataclasses.replace(c, steps=for_cpu(c.steps, cpu)) for c in found]


def _candidates(target: Target, layers: int, budget_points: float, students: bool, budgeted_int8: bool,
                confidence: float | None, quick: bool = False,
                starts: Sequence[tuple[str, str, bool]] = (), augment: int | None = None) -> list[Candidate]:
    if target is Target.CUDA:
        teacher = [Candidate("fp32", Engine.ONNXRUNTIME, target, graph(target, "fp32")),
                   Candidate("fp16", Engine.ONNXRUNTIME, target, graph(target, "fp16"))]
        tails = [("fp16", Engine.ONNXRUNTIME, graph(target, "fp16"))]
    elif target is Target.OPENVINO:
        teacher = [Candidate("openvino fp32", Engine.OPENVINO, target, graph(target, "fp32")),
                   Candidate("openvino int8", Engine.OPENVINO, target, graph(target, "int8"))]
        tails = [("openvino int8", Engine.OPENVINO, graph(target, "int8"))]
    else:  # a CPU: ONNX Runtime or OpenVINO, whichever is faster within the budget
        budgeted = graph(target, "int8", accuracy_budget=budget_points, accuracy_confidence=confidence)
        openvino_int8 = graph(Target.OPENVINO, "int8")
        teacher = [
            Candidate("fp32", Engine.ONNXRUNTIME, target, graph(target, "fp32")),
            Candidate("int8", Engine.ONNXRUNTIME, target, graph(target, "int8")),
            *([Candidate("int8, layers kept fp32 to fit the budget", Engine.ONNXRUNTIME, target, budgeted)]
              if budgeted_int8 else []),
            Candidate("openvino int8", Engine.OPENVINO, Target.OPENVINO, openvino_int8),
            Candidate("int8-static", Engine.ONNXRUNTIME, target, graph(target, "int8-static")),
        ]
        tails = [("int8", Engine.ONNXRUNTIME, graph(target, "int8")), ("openvino int8", Engine.OPENVINO, openvino_int8)]
    found = list(teacher)
    if not students:
        return found
    lineages = [("teacher", student_sizes(layers, quick, augment))]
    lineages += [(folder, start_students(name, folder, hidden, quick, augment)) for name, folder, hidden in starts]
    for lineage, sizes in lineages:
        for rank, (student, torch_steps) in enumerate(sizes, 1):
            for tail_name, engine, tail in tails[:1] if quick else tails:
                found.append(Candidate(f"{student}, {tail_name}", engine,
                                       Target.OPENVINO if engine is Engine.OPENVINO else target,
                                       (*torch_steps, *tail), size_rank=rank, trains=True, lineage=lineage))
    return found


# -- what finished trials rule out ---------------------------------------------------------------

@dataclass(frozen=True)
class Finished:
    """What `skip_reason` needs to know about a finished candidate."""

    name: str
    status: Status
    size_rank: int
    drop: float | None = None  # the drop's upper bound (points), what the budget was checked against
    lineage: str = "teacher"


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
            if (f.lineage == candidate.lineage and 0 < f.size_rank < candidate.size_rank
                    and f.status in (Status.PASSED, Status.MISSED)):
                by_rank.setdefault(f.size_rank, []).append(f)
        for rank in sorted(by_rank):
            measured = by_rank[rank]
            if all(f.status is Status.MISSED for f in measured):
                worst = min(measured, key=lambda f: f.drop if f.drop is not None else float("inf"))
                drop = f"{worst.drop:.2f}" if worst.drop is not None else "?"
                return (f"a larger student ({worst.name}) already lost up to {drop} points, more than the "
                        f"{budget_points:g}-point budget; a smaller one would lose more")
    return None
