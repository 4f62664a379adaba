"""OpenVINO backend: CPU, and GPU / NPU devices where OpenVINO reports them."""

from __future__ import annotations

import importlib.util
import threading
from functools import cached_property
from pathlib import Path

import numpy as np

from runtimes.common.errors import ArtifactError
from runtimes.common.manifest import ModelFormat
from runtimes.embedded.backends.base import Backend, Device, Session, SessionOptions

_OV_DEVICE = {Device.CPU: "CPU", Device.GPU: "GPU", Device.NPU: "NPU"}


class OpenVinoSession(Session):
    def __init__(self, model, compiled, device: Device):
        # Names from the model as read: after compilation a port may answer to a fused tensor's name first.
        super().__init__("openvino", device, [p.get_any_name() for p in model.inputs],
                         [p.get_any_name() for p in model.outputs])
        self._compiled = compiled
        self._shapes = {p.get_any_name(): tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape())
                        for p in model.outputs}
        self._local = threading.local()  # an infer request is not thread-safe: one per thread

    @property
    def output_shapes(self) -> dict[str, tuple]:
        return dict(self._shapes)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        result = request.infer(feeds)
        return {n: np.array(result[self._compiled.output(n)]) for n in self._outputs}


class OpenVinoBackend(Backend):
    name = "openvino"
    install_hint = "pip install openvino (or edge-toolchain[openvino])"
    formats = (ModelFormat.ONNX, ModelFormat.OPENVINO_IR)

    def available(self) -> bool:
        return importlib.util.find_spec("openvino") is not None

    @cached_property
    def _core(self):
        import openvino as ov

        return ov.Core()

    def devices(self) -> list[Device]:
        if not self.available():
            return []
        present = {name.split(".")[0] for name in self._core.available_devices}
        return [d for d, ov_name in _OV_DEVICE.items() if ov_name in present]

    def load(self, model_path: Path, device: Device, options: SessionOptions) -> Session:
        self.require(device)
        # OpenVINO would otherwise run bf16 on CPUs that have it and f16 on GPUs; lowering precision is
        # a toolchain step with its own parity check, never a silent runtime default.
        config: dict[str, str | int] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if options.threads is not None and device is Device.CPU:
            config["INFERENCE_NUM_THREADS"] = options.threads
        try:
            model = self._core.read_model(str(model_path))
            compiled = self._core.compile_model(model, _OV_DEVICE[device], config)
        except Exception as exc:  # openvino raises RuntimeError for unreadable or unsupported models
            raise ArtifactError(f"openvino cannot load {model_path.name}: {str(exc).strip().splitlines()[0]}") from None
        return OpenVinoSession(model, compiled, device)
