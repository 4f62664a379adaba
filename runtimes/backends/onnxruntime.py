"""ONNX Runtime backend (CPU and CUDA execution providers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BackendUnavailableError, InputError
from .base import Backend, Device, Session, SessionOptions

_PROVIDERS = {
    Device.CPU: ["CPUExecutionProvider"],
    Device.CUDA: ["CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OrtSession(Session):
    backend = "onnxruntime"

    def __init__(self, inner, device: Device):
        self._inner = inner
        self.device = device
        self._inputs = [i.name for i in inner.get_inputs()]
        self._outputs = [o.name for o in inner.get_outputs()]

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise InputError(f"missing model input(s): {', '.join(missing)}")
        values = self._inner.run(self._outputs, {n: feeds[n] for n in self._inputs})
        return dict(zip(self._outputs, values))


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    install_hint = "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)"

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def devices(self) -> list[Device]:
        if not self.available():
            return []
        import onnxruntime as ort

        providers = set(ort.get_available_providers())
        return [d for d, p in _PROVIDERS.items() if p[0] in providers]

    def load(self, model_path: Path, device: Device, options: SessionOptions) -> Session:
        if not self.available():
            raise BackendUnavailableError(f"onnxruntime is not installed: {self.install_hint}")
        if device not in self.devices():
            raise BackendUnavailableError(
                f"onnxruntime has no {device.value} execution provider on this machine "
                f"(available: {', '.join(d.value for d in self.devices()) or 'none'}); {self.install_hint}"
            )
        import onnxruntime as ort

        so = ort.SessionOptions()
        if options.threads is not None:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        inner = ort.InferenceSession(str(model_path), sess_options=so, providers=_PROVIDERS[device])
        if device is not Device.CPU and inner.get_providers()[0] != _PROVIDERS[device][0]:
            raise BackendUnavailableError(
                f"onnxruntime could not start the {_PROVIDERS[device][0]} for {model_path.name} "
                f"(it offered {inner.get_providers()}); check the CUDA/cuDNN install"
            )
        return OrtSession(inner, device)
