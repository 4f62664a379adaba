"""Knowledge distillation: train the model in hand (the student) on a teacher's outputs (torch -> torch).

The student learns the teacher's soft targets (softmax at a temperature) and, where the data has
them, the hard labels; optionally it also matches the teacher's hidden states layer by layer (a
student made by `drop-layers` knows which teacher layer each of its layers came from). Unlabelled
and augmented texts are labelled by the teacher. Teacher outputs are computed once and cached.

Training runs on Hugging Face's `Trainer`, so the step runs unchanged under `torchrun` or
`accelerate launch` on several processes or GPUs (gloo on CPUs): ranks other than 0 train with the
others and never write the artifact.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from runtimes.common.manifest import Task
from runtimes.embedded.pipelines.base import map_by_length
from toolchain.checkpoint import Checkpoint, inspect_checkpoint, save_checkpoint
from toolchain.data import DataRole
from toolchain.errors import ConfigError
from toolchain.stages import Stage, TorchModel
from toolchain.steps.base import StepConfig, StepContext, StepTimer, derive_torch, register_step
from toolchain.tasks import adapter_for
from toolchain.transfer import Example, NeighbourAugmenter, examples_of, load_cached_arrays, store_arrays, transfer_key

log = logging.getLogger(__name__)
_TEACHER_BATCH = 64
_REPORT_EVERY_S = 30.0  # how often labelling by the teacher logs how far it got


class Distil(StepConfig):
    """Train the model in hand to reproduce a teacher (by default the checkpoint the run started from).

    `student` names a different, smaller pretrained model to start from instead (its task head is
    new; for sequence and token classification its tokenizer may differ from the teacher's).
    `augment` adds that many neighbour-replaced copies of each training text, labelled by the
    teacher; transfer data, where given, adds its texts as they are, labelled by the teacher too.
    Early stopping watches the validation data: accuracy (classification), entity F1 (NER) or
    agreement with the teacher (QA, or data without labels); the best evaluation wins.
    """

    kind: Literal["distil"] = "distil"
    consumes = frozenset({Stage.TORCH})
    produces = Stage.TORCH
    cacheable = True
    needs_data = frozenset({DataRole.TRAIN, DataRole.VALIDATION})
    optional_data = frozenset({DataRole.TRANSFER})
    teacher: str = "source"
    student: str | None = None
    epochs: float = Field(default=3.0, gt=0, le=100)
    batch_size: int = Field(default=32, ge=1, le=4096)
    learning_rate: float = Field(default=1e-4, gt=0, le=1)
    weight_decay: float = Field(default=0.01, ge=0, le=1)
    warmup: float = Field(default=0.06, ge=0, lt=1)
    temperature: float = Field(default=2.0, gt=0, le=100)
    soft_weight: float = Field(default=0.5, ge=0, le=1, description="share of the loss on the teacher's soft "
                               "targets; the rest is on hard labels where the data has them")
    hidden_weight: float = Field(default=0.0, ge=0, le=1000, description="weight of hidden-state matching")
    attention_weight: float = Field(default=0.0, ge=0, le=1000, description="weight of attention transfer: each "
                                    "student layer's attention distributions learn the teacher layer's it is matched "
                                    "to (KL divergence, per head; layers whose head counts differ are left out)")
    augment: int = Field(default=0, ge=0, le=64)
    augment_share: float = Field(default=0.3, gt=0, le=1)
    max_length: int = Field(default=128, ge=8, le=8192)
    patience: int = Field(default=2, ge=0, le=1000, description="evaluations without improvement before stopping")
    evaluations_per_epoch: int = Field(default=1, ge=1, le=100)
    seed: int = 0

    def replaces_model(self) -> bool:
        return self.student is not None


@register_step(Distil)
def distil(parent: TorchModel, cfg: Distil, ctx: StepContext) -> TorchModel:
    """Distil the teacher into the student; the best student on the validation data is kept."""
    import torch

    from toolchain.training import DistilTrainer, training_arguments

    timer = StepTimer()
    task = parent.checkpoint.task
    teacher = _teacher(cfg, ctx)
    student_model, student_tokenizer, student_window = _student(cfg, parent, teacher)
    same_tokens = _same_tokenizer(teacher.tokenizer, student_tokenizer)
    if not adapter_for(task).student_may_change_tokenizer and not same_tokens:
        raise ConfigError("distil: a QA student must share the teacher's tokenizer (start/end are token positions)")
    for name in ("hidden_weight", "attention_weight"):
        if getattr(cfg, name) and not same_tokens:
            raise ConfigError(f"distil: {name} needs a student with the teacher's tokenizer")
    # never longer than either model's window (tiny or trimmed models may have short ones)
    cfg = cfg.model_copy(update={"max_length": min(cfg.max_length, teacher.max_length, student_window)})
    train = examples_of(ctx.data_for(DataRole.TRAIN, cfg.kind))
    validation = examples_of(ctx.data_for(DataRole.VALIDATION, cfg.kind))
    teacher_model = teacher.load_model()
    augmented = []
    if cfg.augment:
        embeddings = teacher_model.get_input_embeddings().weight.detach().cpu().numpy()
        augmenter = NeighbourAugmenter(teacher.tokenizer, embeddings, share=cfg.augment_share, seed=cfg.seed)
        augmented = augmenter.augment(train, cfg.augment)
    transfer = examples_of(ctx.data[DataRole.TRANSFER], hard_labels=False) if DataRole.TRANSFER in ctx.data else []
    examples = train + augmented + transfer
    cache_folder = ctx.cache.root.parent / "teacher-outputs" if ctx.cache is not None else None
    targets = _teacher_targets(teacher, teacher_model, task, examples, cfg.max_length, cache_folder)
    layer_map = _layer_map(parent, teacher_model, student_model, cfg) \
        if cfg.hidden_weight or cfg.attention_weight else None
    attention_layers = _attention_layers(teacher, student_model, layer_map) if cfg.attention_weight else None
    torch.manual_seed(cfg.seed)
    output = ctx.new_folder("distil-run")
    args = training_arguments(cfg, output, len(examples))
    trainer = DistilTrainer(
        task=task, cfg=cfg, student=student_model, tokenizer=student_tokenizer, teacher=teacher_model,
        teacher_tokenizer=teacher.tokenizer, train=(examples, targets), validation=validation, layer_map=layer_map,
        attention_layers=attention_layers, args=args,
    )
    teacher_score = trainer.score(teacher_model, teacher.tokenizer)
    result = trainer.train()
    trainer.evaluate()  # the final weights compete too
    trainer.restore_best()
    best = trainer.best_score()
    folder = ctx.new_folder("distil")
    student_model = trainer.model.eval()
    student_model.config.id2label = dict(teacher.load_model().config.id2label)
    student_model.config.label2id = {v: k for k, v in student_model.config.id2label.items()}
    checkpoint = save_checkpoint(student_model, student_tokenizer, folder, task)
    details = {
        "teacher": str(teacher.path), "student_start": cfg.student or "the model in hand",
        "train_examples": len(train), "augmented_examples": len(augmented), "transfer_examples": len(transfer),
        "early_stopping_examples": len(validation),
        "epochs_run": round(float(trainer.state.epoch or 0), 2), "steps": int(result.global_step),
        "validation_metric": trainer.metric_name, "teacher_validation": round(teacher_score, 4),
        "student_validation": round(best, 4), "train_loss": round(float(result.training_loss), 4),
        "loss_curve": _curve([h["loss"] for h in trainer.state.log_history if "loss" in h]),
        "hidden_layers_matched": layer_map if cfg.hidden_weight else None,
        "attention_layers_matched": attention_layers, "processes": int(os.environ.get("WORLD_SIZE", "1")),
    }
    log.info("distil: student %s %.4f on validation (teacher %.4f) after %.1f epochs",
             trainer.metric_name, best, teacher_score, details["epochs_run"])
    return derive_torch(parent, checkpoint, cfg, timer, details)


def _curve(losses: list[float], points: int = 20) -> list[float]:
    """At most `points` training losses, evenly spaced, first and last included."""
    if len(losses) > points:
        losses = [losses[round(i * (len(losses) - 1) / (points - 1))] for i in range(points)]
    return [round(float(x), 4) for x in losses]


def _teacher(cfg: Distil, ctx: StepContext) -> Checkpoint:
    if cfg.teacher == "source":
        return ctx.source
    teacher = inspect_checkpoint(cfg.teacher, task=ctx.source.task)
    if teacher.labels != ctx.source.labels:
        raise ConfigError(f"distil: the teacher {cfg.teacher} has labels {teacher.labels}, the model has "
                          f"{ctx.source.labels}")
    return teacher


def _student(cfg: Distil, parent: TorchModel, teacher: Checkpoint):
    if cfg.student is None:
        return parent.checkpoint.load_fresh_model().train(), parent.checkpoint.tokenizer, parent.checkpoint.max_length
    import transformers

    path = Path(cfg.student)
    probe = inspect_checkpoint(path, task=teacher.task) if (path / "config.json").is_file() else None
    if probe is None:
        raise ConfigError(f"distil: student {cfg.student} is not a checkpoint folder (no config.json)")
    labels = teacher.labels
    extra = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
             "label2id": {n: i for i, n in enumerate(labels)}} if labels else {}
    auto = getattr(transformers, adapter_for(teacher.task).auto_class)
    try:
        model = auto.from_pretrained(path, local_files_only=True, trust_remote_code=False, use_safetensors=True,
                                     attn_implementation="eager", ignore_mismatched_sizes=True, **extra)
    except Exception as exc:  # transformers raises many types for an unusable folder
        raise ConfigError(f"distil: cannot load the student {path}: {exc}") from None
    return model.train(), probe.tokenizer, probe.max_length


def hidden_mismatch(teacher: Checkpoint, student: Checkpoint) -> str | None:
    """Why the student's hidden states cannot be matched to the teacher's (None when they can)."""
    if not _same_tokenizer(teacher.tokenizer, student.tokenizer):
        return "its tokenizer differs from the teacher's"
    widths = (student.config.get("hidden_size"), teacher.config.get("hidden_size"))
    if widths[0] is None or widths[0] != widths[1]:
        return f"its width {widths[0]} is not the teacher's {widths[1]}"
    return None


def _same_tokenizer(a, b) -> bool:
    return a.get_vocab() == b.get_vocab() and type(a.backend_tokenizer.model) is type(b.backend_tokenizer.model)


def _layer_map(parent: TorchModel, teacher_model, student_model, cfg: Distil) -> list[int]:
    """For each student layer, the teacher layer whose hidden state it learns to match."""
    student_layers = student_model.config.num_hidden_layers if hasattr(student_model.config, "num_hidden_layers") \
        else parent.checkpoint.family.layer_count(parent.config)
    teacher_layers = parent.checkpoint.family.layer_count(teacher_model.config.to_dict())
    if cfg.hidden_weight and student_model.config.hidden_size != teacher_model.config.hidden_size:
        raise ConfigError("distil: hidden_weight needs a student as wide as the teacher "
                          f"({student_model.config.hidden_size} != {teacher_model.config.hidden_size})")
    origin = parent.config.get("edge_layer_origin") if cfg.teacher == "source" and cfg.student is None else None
    if isinstance(origin, list) and len(origin) == student_layers and max(origin) < teacher_layers:
        return [int(i) for i in origin]
    # the last teacher layer of each block of teacher_layers / student_layers (TinyBERT's uniform map)
    return [math.ceil((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def _attention_layers(teacher: Checkpoint, student_model, layer_map: list[int]) -> list[int]:
    """The student layers whose attention can learn the matched teacher layer's: those with as many heads."""
    from toolchain.surgery import layer_shapes

    teacher_heads = [s.heads for s in layer_shapes(teacher.family, teacher.config)]
    student_heads = [s.heads for s in layer_shapes(teacher.family, student_model.config.to_dict())]
    matched = [i for i, source in enumerate(layer_map) if student_heads[i] == teacher_heads[source]]
    if not matched:
        raise ConfigError(f"distil: attention_weight needs a student layer with the teacher's head count; the "
                          f"student has {student_heads}, the teacher {teacher_heads}")
    return matched


def _teacher_targets(teacher: Checkpoint, model, task: Task, examples: list[Example], max_length: int,
                     cache_folder: Path | None) -> dict[str, np.ndarray]:
    """The teacher's logits for every example (per word for NER, per token for QA); cached by content."""
    import torch

    key = transfer_key(teacher.sha256, task, examples, max_length)
    cached = load_cached_arrays(cache_folder, key)
    if cached is not None:
        log.info("distil: reusing the teacher's outputs for %d examples", len(examples))
        return cached
    tok = teacher.tokenizer
    adapter = adapter_for(task)
    model.eval()
    done, reported = 0, time.monotonic()

    def run(batch: list[Example]) -> list[tuple[np.ndarray, ...]]:
        nonlocal done, reported
        enc = adapter.encode_examples(tok, batch, max_length)
        feeds = {k: torch.as_tensor(v) for k, v in enc.items() if k in tok.model_input_names}
        with torch.no_grad():
            out = model(**feeds)
        rows = adapter.teacher_rows(out, enc, batch)
        done += len(batch)
        if time.monotonic() - reported > _REPORT_EVERY_S:
            reported = time.monotonic()
            log.info("distil: teacher outputs for %d of %d examples", done, len(examples))
        return rows

    # batches of similar length (characters: a cheap proxy for tokens) pad far less than batches in data order
    per_example = map_by_length(examples, lambda ex: len(ex.text) + len(ex.question or ""), run, _TEACHER_BATCH)
    arrays = adapter.teacher_arrays(per_example, examples)
    store_arrays(cache_folder, key, arrays)
    return arrays

