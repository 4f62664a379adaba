"""Embedded runtime: load artifacts written by the toolchain and run them. Never imports torch.

    from runtimes import load
    pipe = load("artifact/")            # backend="auto"
    pipe(["great film", "dull"])        # [{"label": ..., "score": ...}, ...]
"""

from runtimes.common.errors import ArtifactError, BackendUnavailableError, EdgeError, InputError
from runtimes.common.manifest import MANIFEST_NAME, SCHEMA_VERSION, Manifest, Task
from runtimes.embedded.backends import Device, SessionOptions, backend_names, get_backend
from runtimes.embedded.loader import load, open_session
from runtimes.embedded.pipelines import (
    Pipeline,
    QuestionAnsweringPipeline,
    TextClassificationPipeline,
    TokenClassificationPipeline,
)

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "ArtifactError",
    "BackendUnavailableError",
    "Device",
    "EdgeError",
    "InputError",
    "Manifest",
    "Pipeline",
    "QuestionAnsweringPipeline",
    "SessionOptions",
    "Task",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "backend_names",
    "get_backend",
    "load",
    "open_session",
]
