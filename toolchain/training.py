"""Training on Hugging Face's Trainer for the steps that change weights (distillation).

`DistilTrainer` adds the distillation loss (soft targets at a temperature, hard labels where there
are any, optional hidden-state matching) and an evaluation that scores the student on the
validation data with the task's own metric, which early stopping and the choice of the best
checkpoint follow. Everything else (batching, shuffling, mixed devices, several processes under
torchrun / accelerate, checkpoints) is the Trainer's.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from runtimes.common.manifest import Task
from toolchain.tasks import adapter_for
from toolchain.tasks.base import IGNORE
from toolchain.transfer import Example

log = logging.getLogger(__name__)
_AGREEMENT = "agreement with the teacher"  # the metric of validation data without labels


def training_arguments(cfg, output: Path, examples: int) -> TrainingArguments:
    """Trainer settings for a distillation config: evaluate and keep the best checkpoint along the way."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = max(1, -(-examples // (cfg.batch_size * world)))
    every = max(1, steps_per_epoch // cfg.evaluations_per_epoch)
    cuda = torch.cuda.is_available()
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    return TrainingArguments(
        output_dir=str(output), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup,
        # the best weights are kept in memory by DistilTrainer.evaluate: Trainer checkpoints are written by
        # rank 0 only, so reloading "the best checkpoint" would give ranks different students
        lr_scheduler_type="linear", eval_strategy="steps", eval_steps=every, save_strategy="no",
        logging_strategy="steps",
        logging_steps=max(1, every // 4), report_to=[], disable_tqdm=not interactive, seed=cfg.seed,
        data_seed=cfg.seed, remove_unused_columns=False, dataloader_num_workers=0, use_cpu=not cuda,
        # gloo for several CPU processes under torchrun; naming a backend in a single process would
        # make accelerate look for a process group that does not exist
        ddp_backend="gloo" if world > 1 and not cuda else None,
    )


class TransferDataset(torch.utils.data.Dataset):
    """Student encodings with the teacher's targets and the hard labels, one item per example."""

    def __init__(self, task: Task, tokenizer, examples: list[Example], targets: dict[str, np.ndarray],
                 max_length: int):
        adapter = adapter_for(task)
        self.items: list[dict[str, Any]] = []
        offset = 0
        for start in range(0, len(examples), 256):
            batch = examples[start:start + 256]
            enc = adapter.encode_examples(tokenizer, batch, max_length)
            for row, ex in enumerate(batch):
                mask = enc["attention_mask"][row].astype(bool)
                item = {name: enc[name][row][mask] for name in tokenizer.model_input_names if name in enc}
                fields, offset = adapter.transfer_item(ex, enc, row, targets, start + row, offset)
                self.items.append({**item, **fields})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def collate(pad_id: int):
    """Pad a list of items into tensors: inputs right-padded, per-word and per-token targets masked."""
    def pad(arrays: list[np.ndarray], value: float, dtype) -> torch.Tensor:
        width = max(len(a) for a in arrays)
        shape = (len(arrays), width, *arrays[0].shape[1:])
        out = np.full(shape, value, dtype=dtype)
        for i, a in enumerate(arrays):
            out[i, : len(a)] = a
        return torch.from_numpy(out)

    def fn(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for name in items[0]:
            values = [item[name] for item in items]
            if name == "input_ids":
                batch[name] = pad(values, pad_id, np.int64)
            elif name in ("attention_mask", "token_type_ids"):
                batch[name] = pad(values, 0, np.int64)
            elif name == "label":
                batch[name] = torch.tensor(values, dtype=torch.long)
            elif name == "teacher" and values[0].ndim == 1:
                batch[name] = torch.from_numpy(np.stack(values).astype(np.float32))
            elif name in ("first", "tags"):
                batch[name] = pad(values, -1 if name == "first" else IGNORE, np.int64)
            elif name == "covered":
                batch[name] = pad(values, False, bool)
            else:  # per-word or per-token teacher logits; padding is masked out of the loss
                batch[name] = pad(values, 0.0, np.float32)
        return batch

    return fn


class DistilTrainer(Trainer):
    """A Trainer whose loss is distillation and whose evaluation is the task's own metric."""

    def __init__(self, *, task: Task, cfg, student, tokenizer, teacher, teacher_tokenizer,
                 train: tuple[list[Example], dict], validation: list[Example], layer_map: list[int] | None,
                 args: TrainingArguments, attention_layers: list[int] | None = None):
        examples, targets = train
        self.task, self.cfg, self.layer_map, self.attention_layers = task, cfg, layer_map, attention_layers
        self.adapter = adapter_for(task)
        self.teacher_model, self.teacher_tokenizer = teacher.eval(), teacher_tokenizer
        self.validation = validation
        self.student_tokenizer = tokenizer
        self.metric_name = self.adapter.validation_metric(validation) or _AGREEMENT
        self._best: float | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._evaluations_without_gain = 0
        dataset = TransferDataset(task, tokenizer, examples, targets, cfg.max_length)
        # eval_dataset only satisfies the Trainer's argument check: `evaluate` below scores `validation` itself
        super().__init__(model=student, args=args, train_dataset=dataset, eval_dataset=validation,
                         data_collator=collate(_pad_id(tokenizer)))
        # the Trainer prints every log dict to stdout; we show one progress bar on a terminal instead
        self.remove_callback(PrinterCallback)
        self.remove_callback(ProgressCallback)
        self.add_callback(_Progress(enabled=not args.disable_tqdm))

    # -- loss ------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        feeds = {k: inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in inputs}
        hidden, attention = self.cfg.hidden_weight > 0, bool(self.attention_layers)
        out = model(**feeds, output_hidden_states=hidden, output_attentions=attention)
        soft, hard = self.adapter.distillation_losses(out, inputs, self.cfg.temperature)
        w = self.cfg.soft_weight if hard is not None else 1.0
        loss = w * soft + ((1 - w) * hard if hard is not None else 0.0)
        if hidden or attention:
            with torch.no_grad():
                teacher = self.teacher_model(**feeds, output_hidden_states=hidden, output_attentions=attention)
            if hidden:
                loss = loss + self.cfg.hidden_weight * self._hidden_loss(out.hidden_states, teacher.hidden_states,
                                                                         feeds)
            if attention:
                loss = loss + self.cfg.attention_weight * self._attention_loss(out.attentions, teacher.attentions,
                                                                               feeds)
        return (loss, out) if return_outputs else loss

    def _hidden_loss(self, student_states, teacher_states, feeds) -> torch.Tensor:
        mask = feeds["attention_mask"].unsqueeze(-1).float()
        total = 0.0
        for layer, source in enumerate(self.layer_map):
            diff = (student_states[layer + 1] - teacher_states[source + 1]) * mask
            total = total + diff.pow(2).sum() / (mask.sum() * diff.shape[-1])
        return total / len(self.layer_map)

    def _attention_loss(self, student_maps, teacher_maps, feeds) -> torch.Tensor:
        """KL(teacher || student) of each head's attention distribution, averaged over real query tokens
        (MiniLM's self-attention transfer, on the layers `attention_layers` names)."""
        queries = feeds["attention_mask"].float()[:, None, :]  # (batch, 1, query): padded queries are left out
        total = 0.0
        for layer in self.attention_layers:
            target = teacher_maps[self.layer_map[layer]]
            student = student_maps[layer].clamp_min(1e-9).log()
            kl = (target * (target.clamp_min(1e-9).log() - student)).sum(-1)  # (batch, heads, query)
            total = total + (kl * queries).sum() / (queries.sum() * kl.shape[1])
        return total / len(self.attention_layers)

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval") -> dict[str, float]:
        """Score the student; keep its weights when they are the best so far; stop after `patience` evaluations
        without a gain. Every rank computes the same score on the same (synchronised) weights."""
        value = self.score(self.model, self.student_tokenizer)
        if self._best is None or value > self._best:
            self._best, self._evaluations_without_gain = value, 0
            self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self._evaluations_without_gain += 1
            if self.cfg.patience and self._evaluations_without_gain >= self.cfg.patience:
                log.info("distil: no gain on validation for %d evaluations: stopping", self._evaluations_without_gain)
                self.control.should_training_stop = True
        metrics = {f"{metric_key_prefix}_score": value}
        self.log(metrics)
        log.info("distil: %s %.4f on validation at epoch %.2f", self.metric_name, value, self.state.epoch or 0)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def best_score(self) -> float:
        return self._best if self._best is not None else self.score(self.model, self.student_tokenizer)

    def restore_best(self) -> None:
        """Put the best evaluated weights back into the model (the last ones if it was never evaluated)."""
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    @torch.no_grad()
    def score(self, model, tokenizer) -> float:
        """The validation metric of `model`: accuracy, entity F1, or agreement with the teacher's targets."""
        was_training = model.training
        model.eval()
        predictions = self._predict(model, tokenizer, next(model.parameters()).device)
        if was_training:
            model.train()
        reference = self._reference()
        if reference is not None:
            return float(np.mean([p == r for p, r in zip(predictions, reference)]))
        return self.adapter.score(self.validation, predictions, model.config.id2label)

    def _predict(self, model, tokenizer, device) -> list[Any]:
        predictions: list[Any] = []
        for start in range(0, len(self.validation), 64):
            batch = self.validation[start:start + 64]
            enc = self.adapter.encode_examples(tokenizer, batch, self.cfg.max_length)
            feeds = {k: torch.as_tensor(v).to(device) for k, v in enc.items() if k in tokenizer.model_input_names}
            predictions += self.adapter.predictions(model(**feeds), enc, batch)
        return predictions

    def _reference(self) -> list | None:
        """What agreement is measured against when the validation data has no labels: the teacher's answers."""
        if self.metric_name != _AGREEMENT:
            return None
        if not hasattr(self, "_teacher_answers"):
            self._teacher_answers = self._predict(self.teacher_model, self.teacher_tokenizer, torch.device("cpu"))
        return self._teacher_answers


class _Progress(TrainerCallback):
    """A rich progress bar on a terminal (steps, loss, last validation score); silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = self._task = None
        self._info = ""

    def on_train_begin(self, args, state, control, **kwargs):
        if self.enabled and state.is_world_process_zero:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("distil"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("distil", total=state.max_steps, info="")

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.update(self._task, completed=state.global_step, info=self._info)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self._info = f"loss {float(logs['loss']):.3f}" + self._info[self._info.find(" | "):] \
                if " | " in self._info else f"loss {float(logs['loss']):.3f}"
        if "eval_score" in logs:
            self._info = self._info.split(" | ")[0] + f" | validation {float(logs['eval_score']):.4f}"

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
