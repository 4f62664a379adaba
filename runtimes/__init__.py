"""Embedded runtime: load artifacts written by the toolchain and run them. Never imports torch.

    from runtimes import load
    pipe = load("artifact/")            # backend="auto"
    pipe(["great film", "dull"])        # [{"label": ..., "score": ...}, ...]
"""

from .backends import Device, SessionOptions, backend_names, get_backend
from .errors import ArtifactError, BackendUnavailableError, EdgeError, InputError
from .loader import load, open_session
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, Manifest, Task
from .pipelines import (
    Pipeline,
    QuestionAnsweringPipeline,
    TextClassificationPipeline,
    TokenClassificationPipeline,
)

__all__ = [
    "ArtifactError",
    "BackendUnavailableError",
    "Device",
    "EdgeError",
    "InputError",
    "MANIFEST_NAME",
    "Manifest",
    "Pipeline",
    "QuestionAnsweringPipeline",
    "SCHEMA_VERSION",
    "SessionOptions",
    "Task",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "backend_names",
    "get_backend",
    "load",
    "open_session",
]
