"""The small interface every inference backend implements."""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtimes.common.errors import ArtifactError, BackendUnavailableError, EdgeError, InputError

MAX_THREADS = 1024


class Device(str, enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"
    GPU = "gpu"
    NPU = "npu"


@dataclass(frozen=True)
class SessionOptions:
    """Options common to all backends.

    `threads=None` lets the backend choose (usually all physical cores). `spinning` (ONNX Runtime
    only; None: its default, on) keeps idle worker threads spinning for the next call: lower latency
    on a quiet machine, wasted cycles on a busy one.
    """

    threads: int | None = None
    spinning: bool | None = None

    def __post_init__(self) -> None:
        if self.threads is not None:
            check_int("threads", self.threads, 1, MAX_THREADS)
        if self.spinning is not None and not isinstance(self.spinning, bool):
            raise InputError(f"spinning must be True, False or None, got {self.spinning!r}")


def check_int(name: str, value: object, low: int, high: int) -> int:
    """`value` if it is an int (not a bool) within [low, high]; `InputError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


class Session(abc.ABC):
    """A loaded model, ready to run. Implementations must be safe to call from several threads.

    `run` checks its feeds before the backend sees them: integer (batch, sequence) arrays of one
    shape, and, once `limit_inputs` was called (the loader does it from the manifest), token ids
    inside the vocabulary and sequences no longer than the model's window. A backend failure on
    checked feeds is raised as `ArtifactError`, never as the backend's own exception type.
    """

    def __init__(self, backend: str, device: Device, inputs: list[str], outputs: list[str]):
        self.backend = backend
        self.device = device
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self._vocab_size: int | None = None
        self._max_length: int | None = None

    def limit_inputs(self, vocab_size: int, max_length: int) -> None:
        """Refuse token ids >= `vocab_size` and sequences longer than `max_length` in `run`."""
        self._vocab_size, self._max_length = vocab_size, max_length

    @property
    def output_shapes(self) -> dict[str, tuple]:
        """Each output's shape as the backend reports it: ints for fixed axes, None or a name otherwise."""
        return {}

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs and return every output by name."""
        return self.run_prepared(self._check_feeds(feeds))

    def run_prepared(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`run` without the checks of the inputs, for feeds the runtime's own encoder built: int64 arrays of
        one shape, cut to the window, with ids of a tokenizer the pipeline checked against the model's
        vocabulary when it loaded. The checks cost about 40 µs a call, a fifth of the time a small student
        spends outside its network."""
        try:
            return self._run(feeds)
        except EdgeError:
            raise
        except Exception as exc:  # onnxruntime and openvino raise their own types (InvalidArgument, RuntimeError)
            raise ArtifactError(f"{self.backend} failed to run the model: {exc}") from None

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, Mapping):
            raise InputError(f"feeds must be a mapping of input name to array, got {type(feeds).__name__}")
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise InputError(f"missing model input(s): {', '.join(missing)}")
        checked: dict[str, np.ndarray] = {}
        shape: tuple[int, ...] | None = None
        for name in self._inputs:
            value = feeds[name]
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "iu":
                kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
                raise InputError(f"input {name!r} must be a numpy array of integers, got {kind}")
            if value.ndim != 2 or value.size == 0:
                raise InputError(f"input {name!r} must be a non-empty (batch, sequence) array, got shape {value.shape}")
            if shape is not None and value.shape != shape:
                raise InputError(f"inputs have different shapes: {shape} and {value.shape} ({name!r})")
            shape = value.shape
            checked[name] = value.astype(np.int64, copy=False)
        if self._max_length is not None and shape is not None and shape[1] > self._max_length:
            raise InputError(f"sequence length {shape[1]} exceeds the model's window of {self._max_length} tokens")
        ids = checked.get("input_ids")
        if self._vocab_size is not None and ids is not None and (ids.min() < 0 or ids.max() >= self._vocab_size):
            raise InputError(f"input_ids must lie in 0..{self._vocab_size - 1} (the model's vocabulary); "
                             f"got values from {ids.min()} to {ids.max()}")
        return checked

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class Backend(abc.ABC):
    """A way to run model files. Registered once in `runtimes.embedded.backends`."""

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
