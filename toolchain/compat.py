"""Version shims and third-party warning filters, kept in one place."""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator


@contextlib.contextmanager
def quiet_torch_export() -> Iterator[None]:
    """Silence warnings that torch.onnx prints on every export of an encoder.

    The TorchScript exporter is deprecated in torch>=2.9 (we still choose it by default: see
    `toolchain.steps.export`), and tracing transformers' mask helpers emits TracerWarnings about
    shape checks that are constant for encoders (the key length always equals the mask length).
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*aten::index.*")
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
        yield


def quiet_transformers() -> None:
    """Turn off transformers' own progress bars and load reports; for command-line entry points.

    The library never calls this: only the CLI and the demo, which own the terminal.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


@contextlib.contextmanager
def quiet_quantiser() -> Iterator[None]:
    """Drop onnxruntime's quantiser advice to 'run pre-processing' (it logs on the root logger).

    We do run the pre-processing that matters (symbolic shape inference), and the advice points
    users at an image-classification example; it is noise on every run.
    """
    root = logging.getLogger()
    drop = _DropMessage("pre-processing before quantization")
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
