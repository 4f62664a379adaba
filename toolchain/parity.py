"""Compare an ONNX artifact with the PyTorch model it came from, on realistic batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from runtimes.common.manifest import ModelFormat, OutputParity, ParityReport
from runtimes.embedded.backends import Device, SessionOptions
from runtimes.embedded.loader import choose_backend
from toolchain.checkpoint import Checkpoint
from toolchain.errors import CheckpointError
from toolchain.parity_inputs import PARITY_QA, PARITY_TEXTS
from toolchain.tasks import adapter_for

__all__ = ["PARITY_QA", "PARITY_TEXTS", "ParityConfig", "ParityReference", "check_parity"]

log = logging.getLogger(__name__)


class ParityConfig(BaseModel):
    """How closely an artifact must follow the PyTorch model on the built-in parity batches."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    atol: float | None = Field(default=1e-4, gt=0,
                               description="largest allowed absolute difference per output; null: report only")
    min_agreement: float = Field(default=1.0, ge=0, le=1, description="share of predictions that must match")


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
                real = value[batch.mask.astype(bool)] if adapter_for(self.task).per_token else value
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
        return {name: out[name].float().numpy() for name in adapter_for(self.task).outputs}


def check_parity(
    reference: ParityReference, model_path: Path, model_format: ModelFormat, step: str, cfg: ParityConfig
) -> ParityReport:
    """Run `model_path` on the CPU (the runtime's first choice for its format) and compare with PyTorch."""
    backend, device = choose_backend(model_format, Device.CPU)
    session = backend.load(model_path, device, SessionOptions())
    adapter = adapter_for(reference.task)
    worst = {name: 0.0 for name in adapter.outputs}
    nonfinite = {name: 0 for name in adapter.outputs}
    agree = total = 0
    for batch, expected in zip(reference.batches, reference.expected):
        actual = session.run(batch.feeds)
        for name in adapter.outputs:
            got, want = actual[name].astype(np.float32), expected[name]
            if adapter.per_token:
                real = batch.mask.astype(bool)
                got, want = got[real], want[real]
            # NaN compares false with everything: a NaN output would otherwise show a difference of 0.
            finite = np.isfinite(got)
            nonfinite[name] += int((~finite).sum())
            diff = np.abs(got[finite] - want[finite])
            worst[name] = max(worst[name], float(diff.max()) if diff.size else 0.0)
        a, n = adapter.agreement(expected, actual, batch.mask)
        agree, total = agree + a, total + n
    agreement = agree / total if total else 1.0
    outputs = tuple(
        OutputParity(n, worst[n], cfg.atol, nonfinite[n] == 0 and (cfg.atol is None or worst[n] <= cfg.atol),
                     nonfinite[n])
        for n in adapter.outputs
    )
    passed = all(o.passed for o in outputs) and agreement >= cfg.min_agreement
    report = ParityReport(step, reference.samples, outputs, adapter.agreement_kind, agreement, cfg.min_agreement,
                          passed)
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


def _make_batches(ckpt: Checkpoint, input_names: list[str]) -> list[_Batch]:
    """All samples right-padded in one batch, then each sample alone (exercises both axes)."""
    items = adapter_for(ckpt.task).parity_inputs
    groups = [list(items)] + [[item] for item in items]
    return [_encode(ckpt, group, input_names) for group in groups]


def _encode(ckpt: Checkpoint, items: list, input_names: list[str]) -> _Batch:
    tok = ckpt.tokenizer
    common = dict(padding=True, truncation=True, max_length=ckpt.max_length, return_tensors="np")
    enc = adapter_for(ckpt.task).encode_parity(tok, items, common)
    feeds = {n: enc[n].astype(np.int64) for n in input_names}
    return _Batch(feeds, enc["attention_mask"])
