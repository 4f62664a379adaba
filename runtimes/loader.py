"""Open artifact folders: `load()` for a task pipeline, `open_session()` for the raw model."""

from __future__ import annotations

import logging
from pathlib import Path

from .backends import Backend, Device, Session, SessionOptions, get_backend
from .errors import BackendUnavailableError, InputError
from .manifest import Manifest, ModelFormat, verify_model_file
from .pipelines import PIPELINES, Pipeline

log = logging.getLogger(__name__)

# backend="auto" tries these in order and takes the first that is installed, has the device and
# reads the artifact's format. TensorRT is left out on purpose: its first load builds an engine for
# minutes; ask for it by name.
AUTO_PREFERENCE: tuple[tuple[str, Device], ...] = (
    ("onnxruntime", Device.CUDA),
    ("onnxruntime", Device.CPU),
    ("openvino", Device.CPU),
)


def load(
    folder: Path | str,
    backend: str = "auto",
    device: Device | str | None = None,
    threads: int | None = None,
    batch_size: int = 8,
    warmup: bool = False,
) -> Pipeline:
    """Load an artifact folder as a task pipeline (text / token classification, QA).

    The manifest is read and the model file's hash verified first. `backend="auto"` picks the
    first usable entry of `AUTO_PREFERENCE` (optionally restricted to `device`) and logs its choice;
    a named backend or device that is not usable raises `BackendUnavailableError`, never falls back.
    """
    folder = Path(folder)
    manifest, session = open_session(folder, backend, device, SessionOptions(threads=threads))
    pipeline = PIPELINES[manifest.task](folder, manifest, session, batch_size=batch_size)
    if warmup:
        pipeline.warmup()
    return pipeline


def open_session(
    folder: Path | str,
    backend: str = "auto",
    device: Device | str | None = None,
    options: SessionOptions | None = None,
) -> tuple[Manifest, Session]:
    """Read the manifest, verify the model file and load it on a backend; no tokenizer, no pipeline."""
    folder = Path(folder)
    manifest = Manifest.read(folder)
    model_path = verify_model_file(folder, manifest)
    wanted = _parse_device(device)
    if backend == "auto":
        chosen, dev = choose_backend(manifest.format, wanted)
        log.info("backend=auto picked %s on %s for %s", chosen.name, dev.value, folder)
    else:
        chosen = get_backend(backend)
        dev = wanted or Device.CPU
        if manifest.format not in chosen.formats:
            raise BackendUnavailableError(f"{chosen.name} cannot load {manifest.format.value} artifacts")
    session = chosen.load(model_path, dev, options or SessionOptions())
    return manifest, session


def _parse_device(device: Device | str | None) -> Device | None:
    if device is None or isinstance(device, Device):
        return device
    try:
        return Device(device)
    except ValueError:
        raise InputError(f"unknown device {device!r}; choose one of: {', '.join(d.value for d in Device)}") from None


def choose_backend(model_format: ModelFormat, device: Device | None = None) -> tuple[Backend, Device]:
    """The first entry of `AUTO_PREFERENCE` that is installed, has the device and reads the format."""
    tried = []
    for name, dev in AUTO_PREFERENCE:
        if device is not None and dev is not device:
            continue
        candidate = get_backend(name)
        if model_format in candidate.formats and dev in candidate.devices():
            return candidate, dev
        tried.append(f"{name}/{dev.value}")
    raise BackendUnavailableError(
        f"no installed backend can run this {model_format.value} artifact"
        + (f" on {device.value}" if device else "")
        + f" (tried: {', '.join(tried) or 'nothing matches that device'}); "
        "pip install onnxruntime, onnxruntime-gpu or openvino"
    )
