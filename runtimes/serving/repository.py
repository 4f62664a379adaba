"""What the Triton and OpenVINO Model Server exports share: reading an artifact's model files,
copying them verified, and naming models."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError
from ..manifest import Manifest
from .config import ServingError

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


def prepare_model_folder(repo: Path, name: str, overwrite: bool) -> Path:
    """`<repo>/<name>`, fresh. An existing one is replaced only with `overwrite`."""
    target = repo / check_model_name(name)
    if target.exists():
        if not overwrite:
            raise ServingError(f"{target} exists; pass --overwrite to replace it")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    return target


def _copy_hashing(source: Path, target: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while block := src.read(chunk):
            digest.update(block)
            dst.write(block)
    return digest.hexdigest()
