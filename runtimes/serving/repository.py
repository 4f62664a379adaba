"""What the Triton and OpenVINO Model Server exports share: reading an artifact's model files,
copying them verified, and naming models."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from runtimes.common.errors import ArtifactError
from runtimes.common.manifest import MANIFEST_NAME, Manifest
from runtimes.serving.config import ServingError

T = TypeVar("T")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_model_name(name: str) -> str:
    """Model names become folder names on the server: letters, digits, '_', '.', '-' only."""
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise ServingError(f"model name {name!r} must be 1-63 letters, digits, '_', '.' or '-', "
                           "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class ModelFiles:
    """The artifact's model file and the files it needs beside it (OpenVINO's .bin, ONNX external data)."""

    folder: Path
    manifest: Manifest

    @property
    def names(self) -> tuple[str, ...]:
        return (self.manifest.model_file, *self.manifest.data_files)

    def copy_to(self, destination: Path, rename: dict[str, str] | None = None) -> list[Path]:
        """Copy each file into `destination`, hashing as it goes; a copy that does not match the
        manifest's sha256 is an `ArtifactError` (the artifact changed, or the copy went wrong)."""
        destination.mkdir(parents=True, exist_ok=True)
        written = []
        for name in self.names:
            expected = self.manifest.files.get(name)
            if expected is None:
                raise ArtifactError(f"{self.folder}: the manifest lists {name} as a model file "
                                    "but gives no sha256 for it")
            source = self.folder / name
            if not source.is_file():
                raise ArtifactError(f"{self.folder}: model file {name} is missing")
            target = destination / (rename or {}).get(name, name)
            actual = _copy_hashing(source, target)
            if actual != expected:
                target.unlink(missing_ok=True)
                raise ArtifactError(f"{source} does not match its manifest (sha256 {actual[:12]}… != {expected[:12]}…)")
            written.append(target)
        return written


def read_artifact(folder: Path | str) -> ModelFiles:
    folder = Path(folder)
    return ModelFiles(folder=folder, manifest=Manifest.read(folder))


def write_model_folder(repo: Path, name: str, artifact: Path, overwrite: bool, server: str,
                       is_model_folder: Callable[[Path], bool], fill: Callable[[Path], T]) -> tuple[Path, T]:
    """Write `<repo>/<name>/` through `fill(folder)` and return it with what `fill` returned.

    The model is written in a hidden folder beside its place and moved there when complete, so a server
    watching the repository never loads half a model, and a failed export leaves the old one in place.
    An existing `<repo>/<name>` is replaced only with `overwrite`, and only when `is_model_folder` says
    it is a model of this server; the folder of the artifact being exported, or one holding it, never is.
    """
    target = repo / check_model_name(name)
    source = Path(artifact).resolve()
    check_repository(repo)
    if target.resolve() == source or target.resolve() in source.parents:
        raise ServingError(f"{target} is the artifact being exported (or holds it); choose another `repo` or `name`")
    if os.path.lexists(target):
        if not overwrite:
            raise ServingError(f"{target} exists; pass `overwrite` to replace it")
        if target.is_symlink() or not target.is_dir() or not is_model_folder(target):
            raise ServingError(f"{target} exists and is not a model folder for {server}; `overwrite` only replaces "
                               "a model. Choose another --name, or move it away yourself")
    repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=repo))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the server may run as another user
        result = fill(staging)
        if os.path.lexists(target):
            parked = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=repo))
            os.replace(target, parked / name)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(parked / name, target)
                raise
            shutil.rmtree(parked, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, result


def check_repository(repo: Path) -> None:
    """A model repository is a folder of model folders: never an artifact's or a checkpoint's folder."""
    if os.path.lexists(repo) and not repo.is_dir():
        raise ServingError(f"`repo` {repo} exists and is not a folder")
    if (repo / MANIFEST_NAME).is_file():
        raise ServingError(f"`repo` {repo} is an artifact's folder, not a model repository; choose another `repo`")
    config = repo / "config.json"
    if config.is_file():
        try:
            document = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            document = None
        if isinstance(document, dict) and "model_type" in document:
            raise ServingError(f"`repo` {repo} is a model checkpoint's folder, not a model repository; "
                               "choose another `repo`")


def _copy_hashing(source: Path, target: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while block := src.read(chunk):
            digest.update(block)
            dst.write(block)
    return digest.hexdigest()
