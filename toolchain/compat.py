"""Version shims and third-party warning filters, kept in one place."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def quiet_torch_export() -> Iterator[None]:
    """Silence warnings that torch.onnx prints on every export of an encoder.

    The TorchScript exporter is deprecated in torch>=2.9 (we still choose it by default: see
    `toolchain.steps.export`), and tracing transformers' mask helpers emits TracerWarnings about
    shape checks that are constant for encoders (the key length always equals the mask length).
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*aten::index.*")
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
        yield


def quiet_transformers() -> None:
    """Turn off transformers' own progress bars and load reports; for command-line entry points.

    The library never calls this: only the CLI and the demo, which own the terminal.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


@contextlib.contextmanager
def quiet_quantiser() -> Iterator[None]:
    """Drop onnxruntime's quantiser advice to 'run pre-processing' (it logs on the root logger).

    We do run the pre-processing that matters (symbolic shape inference), and the advice points
    users at an image-classification example; it is noise on every run.
    """
    root = logging.getLogger()
    drop = _DropMessage("pre-processing before quantization")
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


# -- file-system primitives that differ by platform -----------------------------------------------

_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAME_SWAP = 2  # macOS stdio.h, for renamex_np
_AT_FDCWD = -100


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2, macOS renamex_np).

    Returns False where the platform or file system cannot, so the caller can fall back; raises
    OSError for any other failure.
    """
    import ctypes
    import errno
    import sys

    libc = ctypes.CDLL(None, use_errno=True)
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        result = libc.renamex_np(os.fsencode(a), os.fsencode(b), _RENAME_SWAP)
    elif hasattr(libc, "renameat2"):
        result = libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    else:
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False if another process holds it.

    The kernel drops the lock when the process dies, however it dies, so a killed run never
    leaves a lock behind.
    """
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for a short critical section (main thread only); they fire after."""
    import signal
    import threading

    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


# -- third-party telemetry ----------------------------------------------------------------------

TELEMETRY_OPT_IN = "EDGE_TELEMETRY"


def quiet_openvino_telemetry() -> None:
    """Make OpenVINO's model converter and NNCF send no usage telemetry from this process.

    Both report to Google Analytics unless the user ran `opt_in_out --opt_out`, which writes a
    file in their home folder. We change nothing on disk: the consent check of the
    openvino-telemetry package answers "declined" for this process. EDGE_TELEMETRY=1 keeps the
    libraries' own default.
    """
    if os.environ.get(TELEMETRY_OPT_IN) == "1":
        return
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # not installed: nothing can be sent
        return
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED
