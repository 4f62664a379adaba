"""Exception types shared by the runtime and the toolchain.

`EdgeError` is the one root: the CLI turns any `EdgeError` into a single line and exit code 2.
"""


class EdgeError(Exception):
    """Root of every expected error raised by this project."""


class ArtifactError(EdgeError):
    """An artifact folder is missing, incomplete, tampered with or of an unknown schema."""


class BackendUnavailableError(EdgeError):
    """The requested backend or device is not installed or not present on this machine."""


class InputError(EdgeError):
    """Input passed to a pipeline or session is not usable (wrong type, empty batch, bad names)."""
