"""ONNX Runtime backends: CPU and CUDA execution providers, and the TensorRT provider."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.common.errors import ArtifactError, BackendUnavailableError
from runtimes.common.manifest import ModelFormat
from runtimes.embedded.backends.base import Backend, Device, Session, SessionOptions

# ONNX Runtime 1.29+ sends usage telemetry from Linux too (session creation, model hashes), unless
# ORT_DISABLE_TELEMETRY is set when its environment starts. An app that embeds a model should not
# phone home because of us: it is off unless the user sets EDGE_TELEMETRY=1.
TELEMETRY_OPT_IN = "EDGE_TELEMETRY"
if os.environ.get(TELEMETRY_OPT_IN) != "1":
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


@functools.lru_cache(maxsize=1)
def _ort():
    import onnxruntime as ort

    if os.environ.get(TELEMETRY_OPT_IN) != "1":
        ort.disable_telemetry_events()  # in case onnxruntime was imported before us
    return ort


class OrtSession(Session):
    def __init__(self, inner, backend: str, device: Device):
        super().__init__(backend, device, [i.name for i in inner.get_inputs()], [o.name for o in inner.get_outputs()])
        self._inner = inner

    @property
    def output_shapes(self) -> dict[str, tuple]:
        return {o.name: tuple(o.shape) for o in self._inner.get_outputs()}

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # InferenceSession.run is thread-safe: one session serves every thread.
        return dict(zip(self._outputs, self._inner.run(self._outputs, feeds)))


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with its CPU provider, or the CUDA provider (from `onnxruntime-gpu`)."""

    name = "onnxruntime"
    install_hint = "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)"
    formats = (ModelFormat.ONNX,)

    def _providers(self, device: Device) -> list[Any] | None:
        """The provider list for `device`, first entry the one that must be active; None if unsupported."""
        return {Device.CPU: ["CPUExecutionProvider"],
                Device.CUDA: ["CUDAExecutionProvider", "CPUExecutionProvider"]}.get(device)

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def devices(self) -> list[Device]:
        if not self.available():
            return []
        present = set(_ort().get_available_providers())
        return [d for d in Device if (p := self._providers(d)) and _provider_name(p[0]) in present]

    def load(self, model_path: Path, device: Device, options: SessionOptions) -> Session:
        self.require(device)
        ort = _ort()
        so = ort.SessionOptions()
        so.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
        if options.threads is not None:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        if options.spinning is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
        providers = self._providers(device)
        assert providers is not None  # require() refused every device without providers
        try:
            inner = ort.InferenceSession(str(model_path), sess_options=so, providers=providers)
        except Exception as exc:  # InvalidGraph, InvalidProtobuf, NoSuchFile, Fail: all say the file is unusable
            raise ArtifactError(f"onnxruntime cannot load {model_path.name}: {exc}") from None
        wanted = _provider_name(providers[0])
        if inner.get_providers()[0] != wanted:
            raise BackendUnavailableError(
                f"{self.name} could not start {wanted} for {model_path.name} (active: {inner.get_providers()}); "
                "check the CUDA / cuDNN / TensorRT libraries"
            )
        return OrtSession(inner, self.name, device)


class TensorRtBackend(OnnxRuntimeBackend):
    """ONNX Runtime's TensorRT provider. The first load builds an engine (slow); it is cached on disk."""

    name = "tensorrt"
    install_hint = "pip install onnxruntime-gpu and the TensorRT libraries (pip install tensorrt)"

    def _providers(self, device: Device) -> list[Any] | None:
        if device is not Device.CUDA:
            return None
        cache = os.environ.get("EDGE_TRT_CACHE", str(Path.home() / ".cache" / "edge-toolchain" / "tensorrt"))
        trt = {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache, "trt_timing_cache_enable": True}
        return [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider", "CPUExecutionProvider"]


def _provider_name(provider: Any) -> str:
    return provider[0] if isinstance(provider, tuple) else provider
