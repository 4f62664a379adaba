"""Fine-tune a sequence classifier, the way a user would before calling `optimise`."""

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

from .data import Example
from .progress import progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 1
    max_length: int = 64
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.06
    seed: int = 0
    threads: int = 2


def cache_key(base: Path, labels: tuple[str, ...], train: list[Example], cfg: FineTuneConfig) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"base": str(base), "labels": labels, **asdict(cfg)}, sort_keys=True).encode())
    for e in train:
        digest.update(f"{e.label}\t{e.text}\n".encode())
    return digest.hexdigest()[:16]


def fine_tune_classifier(
    base: Path, labels: tuple[str, ...], train: list[Example], out: Path, cfg: FineTuneConfig
) -> Path:
    """Train a classification head (and the encoder) on `train`; save an HF folder to `out`.

    The folder appears only when training finished (written elsewhere, then renamed).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, local_files_only=True, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
    )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    steps = len(batches) * cfg.epochs
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    schedule = get_linear_schedule_with_warmup(optimiser, int(cfg.warmup_ratio * steps), steps)

    model.train()
    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("fine-tuning", total=steps, info="")
        for epoch in range(cfg.epochs):
            for i, idx in enumerate(batches):
                enc = tokenizer([train[j].text for j in idx], padding=True, truncation=True,
                                max_length=cfg.max_length, return_tensors="pt")
                loss = model(**enc, labels=torch.tensor([train[j].label for j in idx])).loss
                loss.backward()
                optimiser.step()
                schedule.step()
                optimiser.zero_grad()
                bar.update(task, advance=1, info=f"epoch {epoch + 1} loss {loss.item():.3f}")
                if i % 50 == 0:
                    log.info("epoch %d step %d/%d loss %.3f", epoch + 1, i, len(batches), loss.item())
    log.info("fine-tuned in %.0fs", time.perf_counter() - started)

    model.eval()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
