"""Fine-tune a classifier (sequence or token), the way a user would before calling `optimise`.

Training stops early when validation stops improving (accuracy, or entity F1 for NER), and the
best epoch's weights are kept: the teacher the toolchain compresses should be a converged one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.progress import progress_bar
from runtimes.common.manifest import Task
from toolchain.data import TextDataset
from toolchain.tasks import adapter_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 4  # at most; early stopping usually ends sooner
    patience: int = 1  # epochs without a validation gain before stopping
    max_length: int = 64
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.06
    seed: int = 0
    threads: int = 2


def cache_key(base: Path, labels: tuple[str, ...], train: TextDataset, cfg: FineTuneConfig,
              validation: TextDataset | None = None) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"base": str(base), "labels": labels, **asdict(cfg)}, sort_keys=True).encode())
    digest.update(train.sha256.encode())
    if validation is not None:
        digest.update(validation.sha256.encode())
    return digest.hexdigest()[:16]


def fine_tune(base: Path, task: Task, labels: tuple[str, ...], train: TextDataset, validation: TextDataset,
              out: Path, cfg: FineTuneConfig) -> dict:
    """Train a task head (and the encoder) on `train`, keep the epoch that scores best on `validation`,
    and save an HF folder to `out`. The folder appears only when training finished. Returns the history."""
    import torch
    import transformers
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    auto = getattr(transformers, adapter_for(task).auto_class)
    model = auto.from_pretrained(base, local_files_only=True, num_labels=len(labels),
                                 id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    steps = len(batches) * cfg.epochs
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    schedule = get_linear_schedule_with_warmup(optimiser, int(cfg.warmup_ratio * steps), steps)

    history: list[dict] = []
    best_score, best_state, waited = -1.0, None, 0
    started = time.perf_counter()
    with progress_bar() as bar:
        progress = bar.add_task("fine-tuning", total=steps, info="")
        for epoch in range(cfg.epochs):
            model.train()
            for idx in batches:
                loss = model(**_batch(tokenizer, task, train, idx, cfg.max_length)).loss
                loss.backward()
                optimiser.step()
                schedule.step()
                optimiser.zero_grad()
                bar.update(progress, advance=1, info=f"epoch {epoch + 1} loss {loss.item():.3f}")
            score = evaluate(model, tokenizer, task, labels, validation, cfg.max_length)
            history.append({"epoch": epoch + 1, "validation": score, "seconds": time.perf_counter() - started})
            log.info("fine-tune epoch %d: validation %.4f", epoch + 1, score)
            if score > best_score:
                best_score, waited = score, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
    model.load_state_dict(best_state)
    model.eval()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "fine_tune.json").write_text(json.dumps({"config": asdict(cfg), "history": history}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"history": history, "best_validation": best_score}


def _batch(tokenizer, task: Task, data: TextDataset, idx: list[int], max_length: int) -> dict:
    enc, labels = adapter_for(task).encode_dataset(tokenizer, data.select(idx), max_length)
    return {**enc, "labels": labels}


def evaluate(model, tokenizer, task: Task, labels: tuple[str, ...], data: TextDataset, max_length: int) -> float:
    """Accuracy (sequence classification) or seqeval entity F1 over words (token classification)."""
    import torch

    adapter = adapter_for(task)
    model.eval()
    predicted: list = []
    with torch.no_grad():
        for start in range(0, len(data), 64):
            idx = list(range(start, min(start + 64, len(data))))
            enc = _batch(tokenizer, task, data, idx, max_length)
            logits = model(**{k: v for k, v in enc.items() if k != "labels"}).logits
            predicted += adapter.fine_tune_predictions(logits, enc["labels"], data.select(idx), labels)
    return adapter.fine_tune_score(data, predicted, labels)
