"""Embedded runtime: load artifacts written by the toolchain and run them. Never imports torch."""

from .backends import Device, SessionOptions, backend_names, get_backend
from .errors import ArtifactError, BackendUnavailableError, EdgeError, InputError
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, Manifest, Task
from .session import open_session

__all__ = [
    "ArtifactError",
    "BackendUnavailableError",
    "Device",
    "EdgeError",
    "InputError",
    "MANIFEST_NAME",
    "Manifest",
    "SCHEMA_VERSION",
    "SessionOptions",
    "Task",
    "backend_names",
    "get_backend",
    "open_session",
]
