"""Open an artifact folder as a backend session, after checking it against its manifest."""

from __future__ import annotations

from pathlib import Path

from .backends import Device, Session, SessionOptions, get_backend
from .manifest import Manifest, verify_model_file


def open_session(
    folder: Path | str,
    backend: str = "onnxruntime",
    device: Device | str = Device.CPU,
    options: SessionOptions | None = None,
) -> tuple[Manifest, Session]:
    """Read the manifest, verify the model file's hash and load it on `backend`/`device`."""
    folder = Path(folder)
    manifest = Manifest.read(folder)
    model_path = verify_model_file(folder, manifest)
    session = get_backend(backend).load(model_path, Device(device), options or SessionOptions())
    return manifest, session
