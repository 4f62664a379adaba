"""Where an artifact is written, and how, so that no run can destroy what it was not asked to replace.

- `--out` must not be the source checkpoint or an input file, nor contain one; not the current
  folder, the home folder or a file-system root, nor contain them.
- An existing, non-empty `--out` is replaced only with `--overwrite`, and only when it is a
  complete artifact of ours: a manifest that reads, and no file the manifest does not list.
- One run at a time per `--out`: a lock file beside it (`.NAME.lock`), held with flock, so the
  kernel releases it when a run dies however it dies.
- All work happens in a private folder beside `--out` (`.NAME.partial-XXXXXXXX`, same file system,
  so the final move is a rename). Temporary files of the libraries go there too. Work folders of
  killed runs are removed by the next run for the same `--out`.
- The new artifact replaces the old one in a single atomic exchange (renameat2 on Linux,
  renamex_np on macOS): at every instant `--out` holds the old or the new artifact.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runtimes.common.errors import ArtifactError
from runtimes.common.manifest import MANIFEST_NAME, Manifest, check_plain_name, parse_json, read_text_file
from toolchain.compat import exchange_paths, signals_deferred, try_lock
from toolchain.errors import OutputError

log = logging.getLogger(__name__)

_PARTIAL = ".partial-"
_WORK_MARKER = ".edge-toolchain-work"  # written first into every work folder: only such folders are ever cleaned
_PREVIOUS = "previous"  # inside a work folder: the replaced artifact, until the work folder is removed
_SUFFIX_BYTES = len(_PARTIAL) + 8 + 1  # ".NAME" + ".partial-" + 8 hex characters
# File-system errors that are the environment's, not ours: one clear line, exit 2.
USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG,
               errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.EXDEV, errno.ENOTDIR}


@dataclass(frozen=True)
class Workspace:
    """The private folder of one run; `tmp` receives the temporary files of the libraries it calls."""

    path: Path

    @property
    def tmp(self) -> Path:
        return self.path / "tmp"


def plan_output(out: Path | str, inputs: Iterable[Path | str] = (), what: str = "the artifact") -> Path:
    """Check `out` against everything it must never be or contain; return its absolute path.

    `inputs` are the files and folders the run reads (checkpoint, data, recipe); `what` is what goes there.
    """
    if not str(out).strip():
        raise OutputError("`out` is empty; name the artifact folder to create")
    path = Path(os.path.abspath(out))  # normalises '.', '..' and trailing slashes without following links
    if path.parent == path:
        raise OutputError(f"`out` {out} is a file-system root; name a folder for {what}")
    if path.is_symlink():
        raise OutputError(f"`out` {out} is a symbolic link; name the real folder")
    real = path.resolve()
    protected = [(Path.cwd(), "the current folder")]
    with contextlib.suppress(RuntimeError, KeyError):  # no home folder for some service accounts
        protected.append((Path.home(), "your home folder"))
    protected += [(Path(p), f"the input {p}") for p in inputs]
    for other, other_what in protected:
        other = other.resolve()
        if real == other or real in other.parents:
            is_same = real == other
            raise OutputError(f"`out` {out} {'is' if is_same else 'contains'} {other_what}; "
                              f"choose a new folder for {what}")
    limit = _name_max(path.parent)
    if len(os.fsencode(path.name)) + _SUFFIX_BYTES > limit:
        raise OutputError(f"`out` name {path.name[:40]}… is too long: this file system allows {limit} bytes per "
                          f"name and the run needs {_SUFFIX_BYTES} more for its work folder")
    return path


def _name_max(folder: Path) -> int:
    for candidate in (folder, *folder.parents):
        try:
            return os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


@contextlib.contextmanager
def claim_output(out: Path, overwrite: bool) -> Iterator[Workspace]:
    """Lock `out`, check what is there, clean up after killed runs, and yield a fresh work folder.

    The work folder and the lock are removed on the way out, whatever happens.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out.parent}: {exc.strerror}") from None
    with _locked(out):
        _clean_stale_work(out)
        check_existing(out, overwrite)
        workspace = _new_workspace(out)
        try:
            with _temporary_files_in(workspace.tmp):
                yield workspace
        finally:
            shutil.rmtree(workspace.path, ignore_errors=True)


def check_existing(out: Path, overwrite: bool) -> None:
    """Refuse to touch anything at `out` except an empty folder, or a complete artifact with `overwrite`."""
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder; choose another `out`")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not overwrite:
        raise OutputError(f"{out} already exists; choose another `out`, or pass `overwrite` to replace "
                          "the artifact in it")
    listed = artifact_files(out)
    if listed is None:
        raise OutputError(f"{out} is not an artifact written by this toolchain (no readable {MANIFEST_NAME}); "
                          "`overwrite` only ever replaces an artifact. Choose another `out`")
    extra = [name for name in entries if name not in listed]
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise OutputError(f"{out} holds files that are not part of its artifact ({shown}); `overwrite` would "
                          "delete them. Move them away or choose another `out`")


def artifact_files(folder: Path) -> set[str] | None:
    """The names an artifact folder may hold (manifest included), or None if it is not an artifact.

    Artifacts written by an older toolchain (an older manifest schema, or fields this version reads
    differently) are recognised by the file list their manifest gives, so that they can be replaced.
    """
    try:
        manifest = Manifest.read(folder)
        return {MANIFEST_NAME, *manifest.files}
    except ArtifactError:
        pass
    try:
        data = parse_json(read_text_file(folder / MANIFEST_NAME, 1 << 24), "manifest")
        if not isinstance(data, dict) or not isinstance(data.get("model_file"), str) \
                or not isinstance(data.get("toolchain_version"), str):
            return None
        if data.get("schema_version") == 1:  # the model file and its data files, plus the HF files beside them
            return {MANIFEST_NAME, data["model_file"], *dict(data.get("data_files") or {}), "config.json",
                    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                    "merges.txt"}
        files = data.get("files")  # schema 2 and later hash every file they hold
        if not isinstance(files, dict):
            return None
        for name in files:
            check_plain_name(name, "manifest.files")
        return {MANIFEST_NAME, *files}
    except (ArtifactError, TypeError, ValueError):
        return None


def publish(folder: Path, out: Path) -> None:
    """Move a finished artifact folder to `out`, exchanging it with the old artifact atomically.

    `folder` must sit in the work folder beside `out` (same file system). SIGINT/SIGTERM are held
    back while the folders move, so an interrupt lands before or after, never between.
    """
    moved = False
    try:
        with signals_deferred():
            if os.path.lexists(out) and any(out.iterdir()):
                if not exchange_paths(folder, out):
                    _replace_in_two_steps(folder, out)
            else:
                if os.path.lexists(out):
                    out.rmdir()  # empty: rename cannot move a folder onto it everywhere
                os.rename(folder, out)
            moved = True
            _fsync_folder(out.parent)
    except BaseException as exc:  # a signal held back during the move is raised here, after it
        exc.published = moved  # type: ignore[attr-defined]  # read by the CLI to say what happened
        raise


def _replace_in_two_steps(folder: Path, out: Path) -> None:
    """For file systems without an atomic exchange: park the old artifact in the work folder, then move.

    If the process dies between the two renames, the next run for `out` puts the parked artifact back.
    """
    parked = folder.parent / _PREVIOUS
    os.rename(out, parked)
    try:
        os.rename(folder, out)
    except OSError:
        os.rename(parked, out)
        raise


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    lock = out.parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write to {out.parent}: {exc.strerror}") from None
        if not try_lock(fd):
            os.close(fd)
            raise OutputError(f"another optimise run is writing {out} right now; wait for it to finish "
                              "or choose another --out")
        try:  # the previous holder may have removed the file between our open and our lock
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _work_pattern(out: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(out.name)}{re.escape(_PARTIAL)}[0-9a-f]{{8}}")


def _new_workspace(out: Path) -> Workspace:
    path = out.parent / f".{out.name}{_PARTIAL}{secrets.token_hex(4)}"
    try:
        os.mkdir(path)  # with the user's umask: the artifact folder inherits nothing stricter
        (path / _WORK_MARKER).touch()
        os.mkdir(path / "tmp")
    except OSError as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise OutputError(f"cannot create a work folder in {out.parent}: {exc.strerror}") from None
    return Workspace(path)


def _clean_stale_work(out: Path) -> None:
    """Remove work folders that killed runs left beside `out` (we hold its lock: no live run owns them).

    An artifact parked by a run that died mid-replacement goes back to `out` first.
    """
    pattern = _work_pattern(out)
    for entry in out.parent.iterdir():
        if not pattern.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        if not (entry / _WORK_MARKER).is_file():
            with contextlib.suppress(OSError):
                entry.rmdir()  # an empty folder from a run killed before it wrote its marker
            continue
        parked = entry / _PREVIOUS
        if parked.is_dir() and not os.path.lexists(out):
            log.warning("restoring %s, which a killed run had moved aside while replacing it", out)
            os.rename(parked, out)
        log.info("removing %s, left behind by a run that was killed", entry)
        shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def _temporary_files_in(folder: Path) -> Iterator[None]:
    """Point Python's tempfile (used by onnxruntime's quantiser, NNCF, torch.onnx) at the run's own folder."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def filesystem_error(exc: OSError, out: Path) -> OutputError | None:
    """An `OutputError` for the file-system failures that are the environment's (disk full, read-only...)."""
    if exc.errno not in USER_ERRNOS:
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    return OutputError(f"{exc.strerror or os.strerror(exc.errno)}{where}; nothing was written to {out}")


def disk_full(folder: Path, needed: int = 1 << 20) -> bool:
    """True when the file system of `folder` has less than `needed` bytes free.

    Libraries written in C++ (onnx, onnxruntime, openvino) report a full disk as a generic error;
    this tells the user what actually happened.
    """
    try:
        return shutil.disk_usage(folder).free < needed
    except OSError:
        return False


# -- report folders (optimise bench --out, optimise search's OUT-search/) -----------------------------------

def check_report_folder(folder: Path, ours: Iterable[str], what: str, inputs: Iterable[Path | str] = (),
                        flag: str = "`out`") -> Path:
    """Check, before any work, that `folder` may receive a command's report files; return its absolute path.

    It must be absent, empty, or hold nothing but an earlier report of the same command (the names in
    `ours`), which is replaced: an artifact, a checkpoint or anyone's other files are never written into.
    """
    path = plan_output(folder, inputs, f"the {what}")
    if not os.path.lexists(path):
        return path
    if path.is_symlink() or not path.is_dir():
        raise OutputError(f"{flag} {folder} exists and is not a folder; choose a folder for the {what}")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return path
    model_files = [name for name in (MANIFEST_NAME, "config.json") if name in entries]
    if model_files:
        raise OutputError(f"{flag} {folder} holds a model ({model_files[0]}); the {what} is never written into "
                          f"a model's folder. Choose another {flag}")
    foreign = [name for name in entries if name not in set(ours)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{flag} {folder} holds files that are not an earlier {what} ({shown}); nothing is "
                          f"written there. Move them away or choose another {flag}")
    return path
