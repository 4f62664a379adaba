"""Sizes on disk: what a device has to store and load."""

from __future__ import annotations

from pathlib import Path

from runtimes.common.manifest import Manifest


def artifact_size_bytes(folder: Path | str) -> int:
    """Bytes of the model files the manifest names (graph plus external weights), tokenizer excluded."""
    folder = Path(folder)
    manifest = Manifest.read(folder)
    names = [manifest.model_file, *manifest.data_files]
    return sum((folder / name).stat().st_size for name in names)


def checkpoint_size_bytes(folder: Path | str) -> int:
    """Bytes of a Hugging Face checkpoint's weight files (safetensors, else pickle)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"{folder} has no weight files (*.safetensors or pytorch_model*.bin)")
    return sum(p.stat().st_size for p in files)
