"""Export an artifact as a Triton Inference Server model repository, generated from its manifest.

    <repo>/<name>/config.pbtxt      inputs, outputs, dims, max_batch_size, dynamic_batching,
                                    instance_group, accelerator, threads
    <repo>/<name>/labels.txt        class labels (text classification: Triton's classification extension)
    <repo>/<name>/1/model.onnx      ONNX artifacts, ONNX Runtime backend
    <repo>/<name>/1/model.xml|bin   OpenVINO IR artifacts, OpenVINO backend

Triton receives token ids, not text: clients tokenise with the artifact's own tokenizer through
`runtimes.serving.remote.load_remote` (same pre- and post-processing as `runtimes.load`).

The config is written as protobuf text by hand so the export needs nothing beyond the runtime;
`validate_config` parses it with Triton's own `ModelConfig` message from the `tritonclient` package.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path

from runtimes.common.errors import ArtifactError, BackendUnavailableError
from runtimes.common.manifest import Manifest, ModelFormat, TensorSpec
from runtimes.embedded.pipelines import PIPELINES
from runtimes.serving.config import ServingError
from runtimes.serving.protocol import is_int
from runtimes.serving.repository import read_artifact, write_model_folder

log = logging.getLogger(__name__)

CONFIG_NAME = "config.pbtxt"
LABELS_NAME = "labels.txt"

_TRITON_DTYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32",
                  "float16": "TYPE_FP16", "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8"}
# The file name each Triton backend looks for in a version folder.
_BACKEND_FILES = {ModelFormat.ONNX: ("onnxruntime", "model.onnx"),
                  ModelFormat.OPENVINO_IR: ("openvino", "model.xml")}


class Accelerator(str, enum.Enum):
    """Execution accelerator of Triton's ONNX Runtime backend."""

    AUTO = "auto"          # from the artifact's recipe target: cuda -> tensorrt, openvino -> openvino, else none
    NONE = "none"
    TENSORRT = "tensorrt"  # GPU; an fp16 artifact asks TensorRT for FP16
    OPENVINO = "openvino"  # CPU


class InstanceKind(str, enum.Enum):
    AUTO = "auto"  # GPU for TensorRT / cuda-target artifacts, CPU otherwise
    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True)
class TritonOptions:
    """Settings of the generated model; `max_batch_size` and the queue delay drive Triton's dynamic batcher."""

    name: str | None = None  # default: the artifact folder's name
    max_batch_size: int = 32
    max_queue_delay_us: int = 1000
    instances: int = 1
    kind: InstanceKind = InstanceKind.AUTO
    accelerator: Accelerator = Accelerator.AUTO
    threads: int | None = None  # ONNX Runtime intra-op threads per instance

    def __post_init__(self) -> None:
        for field_name, low in (("max_batch_size", 1), ("max_queue_delay_us", 0), ("instances", 1)):
            value = getattr(self, field_name)
            if not (is_int(value) and value >= low):
                raise ServingError(f"{field_name} must be an integer >= {low}, got {value!r}")
        if self.threads is not None and not (is_int(self.threads) and self.threads >= 1):
            raise ServingError(f"threads must be a positive integer, got {self.threads!r}")
        object.__setattr__(self, "kind", InstanceKind(self.kind))
        object.__setattr__(self, "accelerator", Accelerator(self.accelerator))


@dataclass(frozen=True)
class TritonExport:
    """What `export_triton_repository` wrote."""

    model_dir: Path
    config_path: Path
    model_path: Path
    backend: str
    validated: bool  # parsed with Triton's ModelConfig schema (tritonclient installed)


def export_triton_repository(artifact: Path | str, repo: Path | str, options: TritonOptions = TritonOptions(),
                             overwrite: bool = False) -> TritonExport:
    """Write `<repo>/<name>/` for the artifact; model files are copied and checked against the manifest."""
    files = read_artifact(artifact)
    manifest = files.manifest
    name = options.name or Path(artifact).resolve().name
    backend, file_name = _BACKEND_FILES[manifest.format]
    text = render_config(manifest, name, options)  # before touching the repository: a bad option writes nothing

    def fill(folder: Path) -> bool:
        renames = {manifest.model_file: file_name}
        if manifest.format is ModelFormat.OPENVINO_IR:  # OpenVINO's weights sit beside the .xml, same stem
            renames.update({n: "model.bin" for n in manifest.data_files if n.endswith(".bin")})
        files.copy_to(folder / "1", rename=renames)
        (folder / CONFIG_NAME).write_text(text, encoding="utf-8")
        if PIPELINES[manifest.task].labels_per_text and manifest.labels:
            (folder / LABELS_NAME).write_text("\n".join(manifest.labels) + "\n", encoding="utf-8")
        return _validate_if_possible(folder / CONFIG_NAME)

    model_dir, validated = write_model_folder(Path(repo), name, Path(artifact), overwrite, "Triton",
                                              lambda folder: (folder / CONFIG_NAME).is_file(), fill)
    config_path = model_dir / CONFIG_NAME
    log.info("wrote Triton model %s (%s backend)%s", model_dir, backend,
             "" if validated else "; not validated: tritonclient is not installed")
    return TritonExport(model_dir=model_dir, config_path=config_path,
                        model_path=model_dir / "1" / file_name, backend=backend,
                        validated=validated)


def render_config(manifest: Manifest, name: str, options: TritonOptions) -> str:
    """config.pbtxt text for the artifact, from its manifest's signature and recipe."""
    backend, _ = _BACKEND_FILES[manifest.format]
    batched = all(_is_batch_axis(t) for t in (*manifest.signature.inputs, *manifest.signature.outputs))
    target = str(manifest.recipe.get("target", "cpu"))
    accelerator = _pick_accelerator(options.accelerator, target, manifest.format)
    kind = options.kind
    if kind is InstanceKind.AUTO:
        kind = InstanceKind.GPU if accelerator is Accelerator.TENSORRT or target == "cuda" else InstanceKind.CPU
    if accelerator is Accelerator.TENSORRT and kind is not InstanceKind.GPU:
        raise ServingError("the TensorRT accelerator runs on GPU instances; use `kind` gpu (or auto)")
    if accelerator is Accelerator.OPENVINO and kind is not InstanceKind.CPU:
        raise ServingError("the OpenVINO accelerator of the ONNX Runtime backend runs on CPU instances")

    lines = [f'name: "{name}"', f'backend: "{backend}"',
             # 0 tells Triton the model has no batch axis; then the full shapes are the dims.
             f"max_batch_size: {options.max_batch_size if batched else 0}"]
    lines += _tensors("input", manifest.signature.inputs, batched, labels=False)
    lines += _tensors("output", manifest.signature.outputs, batched,
                      labels=PIPELINES[manifest.task].labels_per_text and bool(manifest.labels))
    if batched:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {options.max_queue_delay_us}", "}"]
    lines += ["instance_group [", "  {", f"    count: {options.instances}",
              f"    kind: {'KIND_GPU' if kind is InstanceKind.GPU else 'KIND_CPU'}", "  }", "]"]
    if accelerator is Accelerator.TENSORRT:
        precision = "FP16" if _is_fp16(manifest) else "FP32"
        lines += ["optimization {", "  execution_accelerators {", "    gpu_execution_accelerator: [", "      {",
                  '        name: "tensorrt"',
                  f'        parameters {{ key: "precision_mode" value: "{precision}" }}',
                  "      }", "    ]", "  }", "}"]
    elif accelerator is Accelerator.OPENVINO:
        lines += ["optimization {", "  execution_accelerators {",
                  '    cpu_execution_accelerator: [ { name: "openvino" } ]', "  }", "}"]
    if options.threads is not None and backend == "onnxruntime":
        lines += [f'parameters {{ key: "intra_op_thread_count" value: {{ string_value: "{options.threads:d}" }} }}']
    return "\n".join(lines) + "\n"


def _pick_accelerator(requested: Accelerator, target: str, model_format: ModelFormat) -> Accelerator:
    if model_format is ModelFormat.OPENVINO_IR:
        if requested not in (Accelerator.AUTO, Accelerator.NONE):
            raise ServingError(f"an OpenVINO IR artifact runs on Triton's OpenVINO backend; "
                               f"the {requested.value} accelerator applies to ONNX artifacts only")
        return Accelerator.NONE
    if requested is Accelerator.AUTO:
        return {"cuda": Accelerator.TENSORRT, "openvino": Accelerator.OPENVINO}.get(target, Accelerator.NONE)
    return requested


def _is_fp16(manifest: Manifest) -> bool:
    return any("float16" in str(step) for step in manifest.recipe.get("steps", ())) or any(
        t.dtype == "float16" for t in manifest.signature.outputs)


def _is_batch_axis(spec: TensorSpec) -> bool:
    return bool(spec.shape) and isinstance(spec.shape[0], str)


def _tensors(kind: str, specs: tuple[TensorSpec, ...], batched: bool, labels: bool) -> list[str]:
    lines = [f"{kind} ["]
    for i, spec in enumerate(specs):
        dtype = _TRITON_DTYPES.get(spec.dtype)
        if dtype is None:
            raise ArtifactError(f"{kind} {spec.name} has dtype {spec.dtype}, which has no Triton type here")
        shape = spec.shape[1:] if batched else spec.shape
        dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape)
        lines += ["  {", f'    name: "{spec.name}"', f"    data_type: {dtype}", f"    dims: [ {dims} ]"]
        if labels and spec.name == "logits":
            lines.append(f'    label_filename: "{LABELS_NAME}"')
        lines.append("  }," if i < len(specs) - 1 else "  }")
    lines.append("]")
    return lines


def validate_config(path: Path | str):
    """Parse config.pbtxt with Triton's `ModelConfig` protobuf (from `tritonclient`) and return it.

    Raises `ArtifactError` on anything Triton's parser rejects (unknown field, bad enum, syntax).
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise BackendUnavailableError(f"validating a Triton config needs tritonclient[grpc] ({exc}): "
                                      "pip install 'edge-toolchain[serve]'") from None
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(Path(path).read_text(encoding="utf-8"), config)
    except text_format.ParseError as exc:
        raise ArtifactError(f"{path} is not a valid Triton model config: {exc}") from None
    return config


def _validate_if_possible(path: Path) -> bool:
    try:
        validate_config(path)
    except BackendUnavailableError:
        return False
    return True
