"""What the search's students will cost, said before any of them trains.

The teacher's forward pass is timed on a batch of training texts; from it follow the minutes to label
the transfer sets (each distinct set once: the teacher's outputs are cached by content) and to train
each distinct student (a candidate built for two engines trains once; the step cache shares it). A
training step is taken as three forward passes of the student (forward and backward), which scale
with its depth, plus one of the teacher where hidden states are matched. Pruning and distillation
already in the step cache cost nothing, so a resumed search costs less than this says.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.search.space import Candidate
from toolchain.steps import Distil, DropLayers, ExportOnnx

_SAMPLE = 64


@dataclass(frozen=True)
class Estimate:
    runs: int  # distinct distillation runs (students, and the recoveries of pruned ones)
    label_texts: int  # texts the teacher labels, over every distinct transfer set
    label_s: float
    train_s: float
    teacher_ms_per_text: float

    @property
    def total_s(self) -> float:
        return self.label_s + self.train_s

    def describe(self) -> str:
        return (f"{self.runs} distillation run(s) (students, and pruned ones' recoveries): the teacher labels "
                f"{self.label_texts} texts (about {self.label_s / 60:.0f} min) and training takes about "
                f"{self.train_s / 60:.0f} min, {self.total_s / 3600:.1f} h in all (estimated from the teacher's "
                f"{self.teacher_ms_per_text:.1f} ms per text on this machine; what the step cache holds costs "
                "nothing)")


def estimate(candidates: Sequence[Candidate], teacher, texts: Sequence[str], train_examples: int,
             transfer_examples: int, start_layers: dict[str, int]) -> Estimate | None:
    """The cost of the trained candidates (None when there are none). `texts`: training texts to time the
    teacher on; `start_layers`: the depth of each pretrained start, by folder."""
    torch_steps = {_torch_part(c.steps) for c in candidates if c.trains}
    if not torch_steps:
        return None
    per_text = _teacher_seconds_per_text(teacher, texts[:_SAMPLE])
    layers = int(teacher.config.get("num_hidden_layers") or teacher.config.get("n_layers") or 1)
    label_sets: set[int] = set()
    trained: set[tuple] = set()
    train_s = 0.0
    for steps in torch_steps:
        depth = 1.0
        for i, step in enumerate(steps):
            if isinstance(step, DropLayers):
                kept = (len(step.keep) if step.keep is not None else step.num_layers if step.num_layers is not None
                        else max(1, round((step.share or 1) * layers)))
                depth = kept / layers
            if not isinstance(step, Distil):
                continue
            if step.student is not None:
                depth = start_layers.get(step.student, layers) / layers
            prefix = steps[: i + 1]
            if prefix in trained:  # shared with another candidate: the step cache trains it once
                continue
            trained.add(prefix)
            examples = train_examples * (1 + step.augment) + transfer_examples
            label_sets.add(step.augment)
            teacher_passes = 1.0 if step.hidden_weight else 0.0
            train_s += step.epochs * examples * per_text * (3 * depth + teacher_passes)
    label_texts = sum(train_examples * (1 + a) + transfer_examples for a in label_sets)
    return Estimate(runs=len(trained), label_texts=label_texts, label_s=label_texts * per_text, train_s=train_s,
                    teacher_ms_per_text=1000 * per_text)


def _torch_part(steps: tuple) -> tuple:
    """The PyTorch steps of a recipe: everything before the export (what two engines' candidates share)."""
    end = next((i for i, s in enumerate(steps) if isinstance(s, ExportOnnx)), len(steps))
    return tuple(steps[:end])


def _teacher_seconds_per_text(teacher, texts: Sequence[str]) -> float:
    import torch

    model = teacher.load_model()  # eval mode, loaded once per checkpoint
    # the distillation's window (Distil.max_length), never longer than the teacher's
    enc = teacher.tokenizer(list(texts), truncation=True, max_length=min(128, teacher.max_length), padding=True,
                            return_tensors="pt")
    feeds = {k: v for k, v in enc.items() if k in teacher.tokenizer.model_input_names}
    best = float("inf")
    with torch.no_grad():
        model(**feeds)  # the first call pays for allocations and kernel choices
        for _ in range(3):
            t0 = time.perf_counter()
            model(**feeds)
            best = min(best, time.perf_counter() - t0)
    return best / max(1, len(texts))
