"""The small interface every inference backend implements."""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BackendUnavailableError, InputError


class Device(str, enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"
    GPU = "gpu"
    NPU = "npu"


@dataclass(frozen=True)
class SessionOptions:
    """Options common to all backends.

    `threads=None` lets the backend choose (usually all physical cores).
    """

    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")


class Session(abc.ABC):
    """A loaded model, ready to run. Implementations must be safe to call from several threads."""

    def __init__(self, backend: str, device: Device, inputs: list[str], outputs: list[str]):
        self.backend = backend
        self.device = device
        self._inputs = list(inputs)
        self._outputs = list(outputs)

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs and return every output by name."""
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise InputError(f"missing model input(s): {', '.join(missing)}")
        return self._run({n: feeds[n] for n in self._inputs})

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class Backend(abc.ABC):
    """A way to run model files. Registered once in `runtimes.backends`."""

    name: str
    install_hint: str
    formats: tuple  # the ModelFormat values this backend can load

    @abc.abstractmethod
    def available(self) -> bool:
        """True when the backend's library can be imported."""

    @abc.abstractmethod
    def devices(self) -> list[Device]:
        """Devices this backend can run on here (empty when unavailable)."""

    def require(self, device: Device) -> None:
        """Raise `BackendUnavailableError`, saying what to install, unless `device` is usable here."""
        if not self.available():
            raise BackendUnavailableError(f"{self.name} is not installed: {self.install_hint}")
        if device not in self.devices():
            offered = ", ".join(d.value for d in self.devices()) or "nothing"
            raise BackendUnavailableError(
                f"{self.name} has no {device.value} support on this machine (it offers: {offered}); {self.install_hint}"
            )

    @abc.abstractmethod
    def load(self, model_path: Path, device: Device, options: SessionOptions) -> Session:
        """Create a session for `model_path` on `device`."""
