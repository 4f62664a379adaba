"""Export an artifact to an OpenVINO Model Server (OVMS) model repository.

    <repo>/config.json              {"model_config_list": [{"config": {...}}, ...]}; other models kept
    <repo>/<name>/1/model.xml|bin   OpenVINO IR artifacts (OVMS also reads model.onnx: ONNX artifacts work too)

OVMS serves token ids over the KServe v2 (and TensorFlow Serving) API: clients tokenise with
`runtimes.serving.remote.load_remote`, which speaks KServe v2 to Triton and OVMS alike.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes.common.manifest import ModelFormat, write_text_atomically
from runtimes.serving.config import ServingError
from runtimes.serving.protocol import is_int
from runtimes.serving.repository import check_model_name, check_repository, read_artifact, write_model_folder

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
_MODEL_FILES = {ModelFormat.OPENVINO_IR: "model.xml", ModelFormat.ONNX: "model.onnx"}


@dataclass(frozen=True)
class OvmsOptions:
    """Settings of the model's entry in config.json."""

    name: str | None = None  # default: the artifact folder's name
    target_device: str = "CPU"
    nireq: int | None = None  # parallel inference requests; OVMS picks from the device when None
    threads: int | None = None  # OpenVINO INFERENCE_NUM_THREADS
    performance_hint: str = "LATENCY"  # LATENCY or THROUGHPUT

    def __post_init__(self) -> None:
        if self.name is not None:
            check_model_name(self.name)
        if not isinstance(self.target_device, str) or not self.target_device:
            raise ServingError(f"target_device must be a device name such as CPU or GPU, got {self.target_device!r}")
        for field_name in ("nireq", "threads"):
            value = getattr(self, field_name)
            if value is not None and not (is_int(value) and value >= 1):
                raise ServingError(f"{field_name} must be a positive integer, got {value!r}")
        if self.performance_hint not in ("LATENCY", "THROUGHPUT"):
            raise ServingError(f"performance_hint must be LATENCY or THROUGHPUT, got {self.performance_hint!r}")


@dataclass(frozen=True)
class OvmsExport:
    model_dir: Path
    config_path: Path
    model_path: Path
    entry: dict[str, Any]


def model_entry(name: str, options: OvmsOptions) -> dict[str, Any]:
    """One `model_config_list` item. `base_path` is relative: OVMS resolves it against config.json's folder,
    so the repository can be mounted anywhere."""
    # f32 inference, as the runtime asks for: lowering precision is an optimisation step with its own
    # parity check, not a serving default.
    plugin_config: dict[str, Any] = {"PERFORMANCE_HINT": options.performance_hint, "INFERENCE_PRECISION_HINT": "f32"}
    if options.threads is not None:
        plugin_config["INFERENCE_NUM_THREADS"] = options.threads
    config: dict[str, Any] = {"name": name, "base_path": name, "target_device": options.target_device,
                              "plugin_config": plugin_config}
    if options.nireq is not None:
        config["nireq"] = options.nireq
    return {"config": config}


def export_ovms_repository(artifact: Path | str, repo: Path | str, options: OvmsOptions = OvmsOptions(),
                           overwrite: bool = False) -> OvmsExport:
    """Write `<repo>/<name>/1/` and add (or, with `overwrite`, replace) the model in `<repo>/config.json`."""
    files = read_artifact(artifact)
    manifest = files.manifest
    name = options.name or check_model_name(Path(artifact).resolve().name)
    repo = Path(repo)
    check_repository(repo)
    config_path = repo / CONFIG_NAME
    document = _read_config(config_path)
    entries = document["model_config_list"]
    existing = [i for i, e in enumerate(entries) if e.get("config", {}).get("name") == name]
    if existing and not overwrite:
        raise ServingError(f"{config_path} already serves a model named {name!r}; pass `overwrite` to replace it")
    renames = {manifest.model_file: _MODEL_FILES[manifest.format]}
    if manifest.format is ModelFormat.OPENVINO_IR:
        renames.update({n: "model.bin" for n in manifest.data_files if n.endswith(".bin")})
    # replaced only if config.json serves it, or it holds nothing but version folders
    model_dir, _ = write_model_folder(
        repo, name, Path(artifact), overwrite, "OVMS",
        lambda folder: bool(existing) or _only_versions(folder),
        lambda folder: files.copy_to(folder / "1", rename=renames))
    entry = model_entry(name, options)
    for index in reversed(existing):
        del entries[index]
    entries.append(entry)
    write_text_atomically(config_path, json.dumps(document, indent=2) + "\n")  # OVMS reloads it when it changes
    log.info("wrote OVMS model %s and %s", model_dir, config_path)
    return OvmsExport(model_dir=model_dir, config_path=config_path,
                      model_path=model_dir / "1" / renames[manifest.model_file], entry=entry)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"model_config_list": []}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServingError(f"{path} exists but is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(document, dict) or not isinstance(document.get("model_config_list"), list):
        raise ServingError(f"{path} exists but is not an OVMS config (no model_config_list list); it is left "
                           "alone: choose another --repo")
    return document


def _only_versions(folder: Path) -> bool:
    """An OVMS model folder: version folders (1, 2, ...) and nothing else."""
    entries = list(folder.iterdir())
    return bool(entries) and all(e.is_dir() and e.name.isdigit() for e in entries)
