"""Expected failures of the toolchain. The CLI prints their message on one line and exits 2."""

from runtimes.common.errors import ArtifactError, BackendUnavailableError, EdgeError, InputError


class OptimiseError(EdgeError):
    """Root of every expected toolchain error."""


class ConfigError(OptimiseError):
    """A recipe, preset or option is invalid."""


class CheckpointError(OptimiseError):
    """The checkpoint folder is missing, incomplete or unsafe to load."""


class UnsupportedModelError(OptimiseError):
    """The architecture or task is not one the toolchain can export."""


class ParityError(OptimiseError):
    """An artifact's outputs disagree with the PyTorch model beyond the allowed tolerance."""


class OutputError(OptimiseError):
    """The output folder cannot be written."""


__all__ = [
    "ArtifactError",
    "BackendUnavailableError",
    "CheckpointError",
    "ConfigError",
    "EdgeError",
    "InputError",
    "OptimiseError",
    "OutputError",
    "ParityError",
    "UnsupportedModelError",
]
