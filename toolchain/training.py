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
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from runtimes.common.manifest import Task
from toolchain.transfer import Example

log = logging.getLogger(__name__)
_IGNORE = -100


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
        from toolchain.steps.distill import encode

        self.items: list[dict[str, Any]] = []
        offset = 0
        for start in range(0, len(examples), 256):
            batch = examples[start:start + 256]
            enc = encode(tokenizer, task, batch, max_length)
            for row, ex in enumerate(batch):
                index = start + row
                mask = enc["attention_mask"][row].astype(bool)
                item = {name: enc[name][row][mask] for name in tokenizer.model_input_names if name in enc}
                if task is Task.TEXT_CLASSIFICATION:
                    item["teacher"] = targets["logits"][index]
                    item["label"] = _IGNORE if ex.label is None else ex.label
                elif task is Task.TOKEN_CLASSIFICATION:
                    n = len(ex.words)
                    item["teacher"] = targets["logits"][offset:offset + n]
                    item["covered"] = targets["covered"][offset:offset + n]
                    offset += n
                    item["first"] = _first_subtokens(enc.word_ids(row), n)
                    item["tags"] = np.array(ex.tags if ex.tags is not None else [_IGNORE] * n)
                else:
                    n = int(targets["lengths"][index])
                    item["teacher_start"] = targets["start"][offset:offset + n]
                    item["teacher_end"] = targets["end"][offset:offset + n]
                    offset += n
                self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def _first_subtokens(word_ids: list, n_words: int) -> np.ndarray:
    """Position of each word's first sub-token, or -1 for a word cut off by truncation."""
    first = np.full(n_words, -1, dtype=np.int64)
    for position, word in enumerate(word_ids):
        if word is not None and first[word] < 0:
            first[word] = position
    return first


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
                batch[name] = pad(values, -1 if name == "first" else _IGNORE, np.int64)
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
                 args: TrainingArguments):
        examples, targets = train
        self.task, self.cfg, self.layer_map = task, cfg, layer_map
        self.teacher_model, self.teacher_tokenizer = teacher.eval(), teacher_tokenizer
        self.validation = validation
        self.student_tokenizer = tokenizer
        self.metric_name = _metric_name(task, validation)
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
        out = model(**feeds, output_hidden_states=self.layer_map is not None)
        soft, hard = self._task_losses(out, inputs)
        w = self.cfg.soft_weight if hard is not None else 1.0
        loss = w * soft + ((1 - w) * hard if hard is not None else 0.0)
        if self.layer_map is not None:
            loss = loss + self.cfg.hidden_weight * self._hidden_loss(out.hidden_states, feeds)
        return (loss, out) if return_outputs else loss

    def _task_losses(self, out, inputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = self.cfg.temperature
        if self.task is Task.TEXT_CLASSIFICATION:
            soft = _soft_loss(out.logits, inputs["teacher"], t)
            labels = inputs["label"]
            known = labels != _IGNORE
            hard = F.cross_entropy(out.logits[known], labels[known]) if known.any() else None
            return soft, hard
        if self.task is Task.TOKEN_CLASSIFICATION:
            first, covered = inputs["first"], inputs["covered"]
            present = (first >= 0) & covered
            gathered = torch.gather(out.logits, 1, first.clamp(min=0).unsqueeze(-1).expand(-1, -1,
                                                                                            out.logits.shape[-1]))
            soft = _soft_loss(gathered[present], inputs["teacher"][present], t)
            tags = inputs["tags"]
            known = (first >= 0) & (tags != _IGNORE)
            hard = F.cross_entropy(gathered[known], tags[known]) if known.any() else None
            return soft, hard
        mask = inputs["attention_mask"].bool()
        soft = sum(_soft_loss(_masked(getattr(out, f"{side}_logits"), mask),
                              _masked(inputs[f"teacher_{side}"], mask), t)
                   for side in ("start", "end")) / 2
        return soft, None

    def _hidden_loss(self, student_states, feeds) -> torch.Tensor:
        with torch.no_grad():
            teacher_states = self.teacher_model(**feeds, output_hidden_states=True).hidden_states
        mask = feeds["attention_mask"].unsqueeze(-1).float()
        total = 0.0
        for layer, source in enumerate(self.layer_map):
            diff = (student_states[layer + 1] - teacher_states[source + 1]) * mask
            total = total + diff.pow(2).sum() / (mask.sum() * diff.shape[-1])
        return total / len(self.layer_map)

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
        from toolchain.steps.distill import encode

        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        predictions: list[Any] = []
        for start in range(0, len(self.validation), 64):
            batch = self.validation[start:start + 64]
            enc = encode(tokenizer, self.task, batch, self.cfg.max_length)
            feeds = {k: torch.as_tensor(v).to(device) for k, v in enc.items() if k in tokenizer.model_input_names}
            out = model(**feeds)
            if self.task is Task.TEXT_CLASSIFICATION:
                predictions += out.logits.argmax(-1).tolist()
            elif self.task is Task.TOKEN_CLASSIFICATION:
                best = out.logits.argmax(-1).cpu().numpy()
                for row, ex in enumerate(batch):
                    first = _first_subtokens(enc.word_ids(row), len(ex.words))
                    predictions.append([int(best[row, p]) if p >= 0 else 0 for p in first])
            else:
                mask = torch.as_tensor(enc["attention_mask"]).bool().to(device)
                starts = out.start_logits.masked_fill(~mask, -1e9).argmax(-1).tolist()
                ends = out.end_logits.masked_fill(~mask, -1e9).argmax(-1).tolist()
                predictions += list(zip(starts, ends))
        if was_training:
            model.train()
        return _metric(self.task, self.validation, predictions, model.config.id2label, self._reference())

    def _reference(self) -> list | None:
        """What agreement is measured against when the validation data has no labels: the teacher's answers."""
        if self.metric_name != "agreement with the teacher":
            return None
        if not hasattr(self, "_teacher_answers"):
            from toolchain.steps.distill import encode

            teacher, tokenizer = self.teacher_model, self.teacher_tokenizer
            answers = []
            for start in range(0, len(self.validation), 64):
                batch = self.validation[start:start + 64]
                enc = encode(tokenizer, self.task, batch, self.cfg.max_length)
                feeds = {k: torch.as_tensor(v) for k, v in enc.items() if k in tokenizer.model_input_names}
                out = teacher(**feeds)
                if self.task is Task.QUESTION_ANSWERING:
                    mask = torch.as_tensor(enc["attention_mask"]).bool()
                    answers += list(zip(out.start_logits.masked_fill(~mask, -1e9).argmax(-1).tolist(),
                                        out.end_logits.masked_fill(~mask, -1e9).argmax(-1).tolist()))
                elif self.task is Task.TOKEN_CLASSIFICATION:
                    best = out.logits.argmax(-1).numpy()
                    for row, ex in enumerate(batch):
                        first = _first_subtokens(enc.word_ids(row), len(ex.words))
                        answers.append([int(best[row, p]) if p >= 0 else 0 for p in first])
                else:
                    answers += out.logits.argmax(-1).tolist()
            self._teacher_answers = answers
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


def _metric_name(task: Task, validation: list[Example]) -> str:
    if task is Task.TEXT_CLASSIFICATION and all(ex.label is not None for ex in validation):
        return "accuracy"
    if task is Task.TOKEN_CLASSIFICATION and all(ex.tags is not None for ex in validation):
        return "entity F1"
    return "agreement with the teacher"


def _metric(task: Task, validation: list[Example], predictions: list, id2label: dict, reference: list | None) -> float:
    from runtimes.measure.quality import accuracy, entity_scores

    if reference is not None:
        return float(np.mean([p == r for p, r in zip(predictions, reference)]))
    if task is Task.TEXT_CLASSIFICATION:
        return accuracy([ex.label for ex in validation], predictions)
    names = {int(k): v for k, v in id2label.items()}
    gold = [[names[t] for t in ex.tags] for ex in validation]
    guess = [[names[t] for t in p] for p in predictions]
    return entity_scores(gold, guess)["entity_f1"]


def _soft_loss(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """KL(teacher || student) at temperature t, scaled by t^2 as Hinton et al. do."""
    if student.numel() == 0:
        return student.sum() * 0.0
    log_p = F.log_softmax(student / t, dim=-1)
    q = F.softmax(teacher / t, dim=-1)
    kl = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(-1)
    return kl.mean() * t * t


def _masked(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    width = mask.shape[1]
    return logits[:, :width].masked_fill(~mask, -1e4)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
