"""Compare an ONNX artifact with the PyTorch model it came from, on realistic batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtimes.common.manifest import ModelFormat, OutputParity, ParityReport, Task
from runtimes.embedded.backends import Device, SessionOptions
from runtimes.embedded.loader import choose_backend
from toolchain.checkpoint import Checkpoint
from toolchain.errors import CheckpointError
from toolchain.recipe import ParityConfig
from toolchain.tasks import TASKS

log = logging.getLogger(__name__)

# Different lengths, non-ASCII, emoji, odd whitespace, an empty text and one longer than any
# model window (it must be truncated, not rejected).
PARITY_TEXTS: tuple[str, ...] = (
    "I loved it.",
    "The plot meanders, but the performances are strong enough to carry the film through its slower second half.",
    "Überraschend gut – ein Film für die ganze Familie! 😀🎬👍",
    "東京で見た映画は素晴らしかった。 Naïve café owners, façades and jalapeños.",
    "NEW YORK (Reuters) - Apple Inc. said on Monday that Tim Cook will visit Berlin and São Paulo.",
    "tabs\tand\nnewlines   and zero\u200bwidth spaces",
    "",
    " ".join(["This sentence repeats until the text is far longer than the model window."] * 120),
)

PARITY_QA: tuple[tuple[str, str], ...] = (
    ("Who wrote the report?", "The report was written by Ada Lovelace in 1843 and published in London."),
    ("Where is the café?", "Le café « Chez Zoë » 😀 se trouve à Paris, near the Seine, next to a bookshop."),
    ("When did it open?", "It opened in 1999."),
    ("What colour is the door?", " ".join(["The house has many rooms and a long corridor."] * 100)
     + " The front door is painted bright red."),
)


@dataclass
class _Batch:
    feeds: dict[str, np.ndarray]
    mask: np.ndarray  # 1 where a token is real, 0 where it is padding


class ParityReference:
    """Tokenised parity batches and the PyTorch outputs for them, computed once per checkpoint."""

    def __init__(self, ckpt: Checkpoint, input_names: list[str]):
        self.ckpt = ckpt
        self.task = ckpt.task
        self.batches = _make_batches(ckpt, input_names)
        self.expected = [self._torch_outputs(b) for b in self.batches]
        self._check_reference()

    def _check_reference(self) -> None:
        """Refuse a model whose own outputs are unusable: nothing could be checked against them."""
        for batch, expected in zip(self.batches, self.expected):
            for name, value in expected.items():
                real = value[batch.mask.astype(bool)] if TASKS[self.task].per_token else value
                if not np.isfinite(real).all():
                    raise CheckpointError(f"the PyTorch model's own output {name!r} contains NaN or infinity on "
                                          "ordinary text: its weights are broken")
            labels = self.ckpt.labels
            if labels and expected["logits"].shape[-1] != len(labels):
                raise CheckpointError(f"the model outputs {expected['logits'].shape[-1]} scores per item but "
                                      f"config.json names {len(labels)} labels ({', '.join(labels[:5])})")

    @property
    def samples(self) -> int:
        return sum(len(b.mask) for b in self.batches)

    def _torch_outputs(self, batch: _Batch) -> dict[str, np.ndarray]:
        import torch

        model = self.ckpt.load_model()
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(v) for k, v in batch.feeds.items()}, return_dict=True)
        return {name: out[name].float().numpy() for name in TASKS[self.task].outputs}


def check_parity(
    reference: ParityReference, model_path: Path, model_format: ModelFormat, step: str, cfg: ParityConfig
) -> ParityReport:
    """Run `model_path` on the CPU (the runtime's first choice for its format) and compare with PyTorch."""
    backend, device = choose_backend(model_format, Device.CPU)
    session = backend.load(model_path, device, SessionOptions())
    spec = TASKS[reference.task]
    worst = {name: 0.0 for name in spec.outputs}
    nonfinite = {name: 0 for name in spec.outputs}
    agree = total = 0
    for batch, expected in zip(reference.batches, reference.expected):
        actual = session.run(batch.feeds)
        for name in spec.outputs:
            got, want = actual[name].astype(np.float32), expected[name]
            if spec.per_token:
                real = batch.mask.astype(bool)
                got, want = got[real], want[real]
            # NaN compares false with everything: a NaN output would otherwise show a difference of 0.
            finite = np.isfinite(got)
            nonfinite[name] += int((~finite).sum())
            diff = np.abs(got[finite] - want[finite])
            worst[name] = max(worst[name], float(diff.max()) if diff.size else 0.0)
        a, n = _agreement(reference.task, expected, actual, batch.mask)
        agree, total = agree + a, total + n
    agreement = agree / total if total else 1.0
    outputs = tuple(
        OutputParity(n, worst[n], cfg.atol, nonfinite[n] == 0 and (cfg.atol is None or worst[n] <= cfg.atol),
                     nonfinite[n])
        for n in spec.outputs
    )
    passed = all(o.passed for o in outputs) and agreement >= cfg.min_agreement
    report = ParityReport(step, reference.samples, outputs, spec.agreement_kind, agreement, cfg.min_agreement, passed)
    log.info("parity after %s: %s", step, describe(report))
    return report


def describe(report: ParityReport) -> str:
    diffs = ", ".join(f"{o.name} max|Δ| {o.max_abs_diff:.2e}" for o in report.outputs)
    return f"{diffs}; {report.agreement_kind} agreement {report.agreement:.1%} on {report.samples} samples"


def failures(report: ParityReport) -> list[str]:
    """Every way the report fails, one line each."""
    lines = []
    for o in report.outputs:
        if o.nonfinite:
            lines.append(f"output {o.name!r}: {o.nonfinite} NaN or infinite value(s) where PyTorch is finite")
        if o.atol is not None and o.max_abs_diff > o.atol:
            lines.append(f"output {o.name!r}: max abs diff {o.max_abs_diff:.3e} > atol {o.atol:.1e}")
    if report.agreement < report.min_agreement:
        lines.append(
            f"{report.agreement_kind} agreement {report.agreement:.1%} < required {report.min_agreement:.1%}"
        )
    return lines


def _agreement(task: Task, expected: dict, actual: dict, mask: np.ndarray) -> tuple[int, int]:
    if task is Task.TEXT_CLASSIFICATION:
        same = expected["logits"].argmax(-1) == actual["logits"].argmax(-1)
        return int(same.sum()), same.size
    if task is Task.TOKEN_CLASSIFICATION:
        same = (expected["logits"].argmax(-1) == actual["logits"].argmax(-1))[mask.astype(bool)]
        return int(same.sum()), same.size
    masked = {}
    for name in ("start_logits", "end_logits"):
        for source, out in (("expected", expected), ("actual", actual)):
            masked[source, name] = np.where(mask.astype(bool), out[name], -np.inf).argmax(-1)
    same = (masked["expected", "start_logits"] == masked["actual", "start_logits"]) & (
        masked["expected", "end_logits"] == masked["actual", "end_logits"]
    )
    return int(same.sum()), same.size


def _make_batches(ckpt: Checkpoint, input_names: list[str]) -> list[_Batch]:
    """All samples right-padded in one batch, then each sample alone (exercises both axes)."""
    items = PARITY_QA if ckpt.task is Task.QUESTION_ANSWERING else PARITY_TEXTS
    groups = [list(items)] + [[item] for item in items]
    return [_encode(ckpt, group, input_names) for group in groups]


def _encode(ckpt: Checkpoint, items: list, input_names: list[str]) -> _Batch:
    tok = ckpt.tokenizer
    common = dict(padding=True, truncation=True, max_length=ckpt.max_length, return_tensors="np")
    if ckpt.task is Task.QUESTION_ANSWERING:
        questions, contexts = zip(*items)
        enc = tok(list(questions), list(contexts), **{**common, "truncation": "only_second"})
    else:
        enc = tok(list(items), **common)
    feeds = {n: enc[n].astype(np.int64) for n in input_names}
    return _Batch(feeds, enc["attention_mask"])
