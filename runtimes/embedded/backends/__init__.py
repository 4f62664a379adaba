"""The one registry of inference backends. Code elsewhere looks a backend up here by name."""

from __future__ import annotations

from runtimes.common.errors import BackendUnavailableError
from runtimes.embedded.backends.base import Backend, Device, Session, SessionOptions
from runtimes.embedded.backends.onnxruntime import OnnxRuntimeBackend, TensorRtBackend
from runtimes.embedded.backends.openvino import OpenVinoBackend

_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    _REGISTRY[backend.name] = backend
    return backend


def get_backend(name: str) -> Backend:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise BackendUnavailableError(f"unknown backend {name!r}; known backends: {known}") from None


def backend_names() -> list[str]:
    return list(_REGISTRY)


register(OnnxRuntimeBackend())
register(OpenVinoBackend())
register(TensorRtBackend())

__all__ = ["Backend", "Device", "Session", "SessionOptions", "backend_names", "get_backend", "register"]
