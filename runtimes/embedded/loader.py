"""Open artifact folders: `load()` for a task pipeline, `open_session()` for the raw model.

Everything that can be checked before the first call is checked here: the manifest's types and
ranges, every file's sha256, that the model's inputs and outputs are the ones the manifest names,
that the label count matches the model's output size, and that the tokenizer fits the vocabulary.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from runtimes.common.cpu import warn_if_foreign
from runtimes.common.errors import ArtifactError, BackendUnavailableError, InputError
from runtimes.common.manifest import TRUNCATIONS, Manifest, ModelFormat, verify_files
from runtimes.embedded.backends import Backend, Device, Session, SessionOptions, get_backend
from runtimes.embedded.backends.base import check_int
from runtimes.embedded.pipelines import PIPELINES, Pipeline
from runtimes.embedded.text import DEFAULT_MAX_CHARS, INPUT_NAMES

log = logging.getLogger(__name__)

# backend="auto" tries these in order and takes the first that is installed, has the device and
# reads the artifact's format. TensorRT is left out on purpose: its first load builds an engine for
# minutes; ask for it by name.
AUTO_PREFERENCE: tuple[tuple[str, Device], ...] = (
    ("onnxruntime", Device.CUDA),
    ("onnxruntime", Device.CPU),
    ("openvino", Device.CPU),
)
MAX_BATCH_SIZE = 4096


def load(
    folder: Path | str,
    backend: str = "auto",
    device: Device | str | None = None,
    threads: int | None = None,
    batch_size: int = 8,
    warmup: bool = False,
    max_chars: int | None = DEFAULT_MAX_CHARS,
    spinning: bool | None = None,
    max_length: int | None = None,
    truncation: str | None = None,
) -> Pipeline:
    """Load an artifact folder as a task pipeline (text / token classification, QA).

    Every file is verified against the manifest first. `backend="auto"` picks the first usable
    entry of `AUTO_PREFERENCE` (optionally restricted to `device`) and logs its choice; a named
    backend or device that is not usable raises `BackendUnavailableError`, never falls back.
    Texts longer than `max_chars` characters raise `InputError` (None: no limit).

    `threads` and `spinning` left as None take the artifact's own defaults (`manifest.runtime`, what
    `optimise search` measured fastest), else the backend's. `max_length` truncates texts to fewer
    tokens than the artifact's window (`manifest.max_length`, the default); `truncation` ("head" or
    "head+tail", text classification only; default `manifest.truncation`) says which tokens an overlong
    text keeps: its start, or a quarter of the window from its start and the rest from its end.
    """
    check_int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
    if max_chars is not None:
        check_int("max_chars", max_chars, 1, 1 << 40)
    SessionOptions(threads=threads, spinning=spinning)  # checked before any file is read
    if truncation is not None and truncation not in TRUNCATIONS:
        raise InputError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    if not isinstance(folder, (str, os.PathLike)):
        raise InputError(f"load() takes an artifact folder's path, got {type(folder).__name__}")
    folder = Path(folder)
    manifest, files, session = _open(folder, backend, device, SessionOptions(threads=threads, spinning=spinning))
    if max_length is not None:
        check_int("max_length", max_length, 2, manifest.max_length)
        manifest = dataclasses.replace(manifest, max_length=max_length)
    if truncation is not None:
        if truncation not in PIPELINES[manifest.task].truncations:
            raise InputError(f"truncation={truncation!r} is for text classification, not {manifest.task.value}")
        manifest = dataclasses.replace(manifest, truncation=truncation)
    pipeline = PIPELINES[manifest.task](folder, manifest, session, files, batch_size=batch_size, max_chars=max_chars)
    if warmup:
        pipeline.warmup()
    return pipeline


def open_session(
    folder: Path | str,
    backend: str = "auto",
    device: Device | str | None = None,
    options: SessionOptions | None = None,
) -> tuple[Manifest, Session]:
    """Read the manifest, verify the files and load the model on a backend; no tokenizer, no pipeline."""
    manifest, _, session = _open(Path(folder), backend, device, options or SessionOptions())
    return manifest, session


def _open(folder: Path, backend: str, device: Device | str | None,
          options: SessionOptions) -> tuple[Manifest, dict[str, Path], Session]:
    if not isinstance(backend, str):
        raise InputError(f"backend must be a string, got {type(backend).__name__}")
    manifest = Manifest.read(folder)  # the schema, checked as it is read
    PIPELINES[manifest.task].check_manifest(manifest)  # what the task asks of it
    files = verify_files(folder, manifest)
    defaults = manifest.runtime  # what the caller left unset comes from the artifact's measured settings
    options = SessionOptions(threads=options.threads if options.threads is not None else defaults.threads,
                             spinning=options.spinning if options.spinning is not None else defaults.spinning)
    wanted = _parse_device(device)
    if backend == "auto":
        chosen, dev = choose_backend(manifest.format, wanted)
        log.info("backend=auto picked %s on %s for %s", chosen.name, dev.value, folder)
    else:
        chosen = get_backend(backend)
        dev = wanted or Device.CPU
        if manifest.format not in chosen.formats:
            raise BackendUnavailableError(f"{chosen.name} cannot load {manifest.format.value} artifacts")
    if dev is Device.CPU:
        warn_if_foreign(manifest.cpu.int8_target, str(folder))
    session = chosen.load(files[manifest.model_file], dev, options)
    _check_signature(manifest, session)
    session.limit_inputs(manifest.vocab_size, manifest.max_length)
    return manifest, files, session


def _check_signature(manifest: Manifest, session: Session) -> None:
    declared = set(manifest.signature.input_names)
    if set(session.input_names) != declared:
        raise ArtifactError(f"the model's inputs {sorted(session.input_names)} differ from the manifest's "
                            f"{sorted(declared)}")
    unknown = declared - set(INPUT_NAMES)
    if unknown or "input_ids" not in declared:
        raise ArtifactError(f"the model takes inputs {sorted(declared)}; the runtime builds only "
                            f"{', '.join(INPUT_NAMES)} and needs input_ids")
    missing = set(manifest.signature.output_names) - set(session.output_names)
    if missing:
        raise ArtifactError(f"the model lacks the output(s) {sorted(missing)} that the manifest names")


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
