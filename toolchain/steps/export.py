"""Export a PyTorch checkpoint to ONNX with dynamic batch and sequence axes."""

from __future__ import annotations

import enum
import inspect
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from runtimes.common.manifest import MAX_LENGTH_LIMIT, Manifest, ModelFormat, Signature, StepRecord, TensorSpec
from toolchain.checkpoint import Checkpoint
from toolchain.compat import quiet_torch_export
from toolchain.errors import ConfigError, UnsupportedModelError
from toolchain.stages import Artifact, Stage, TorchModel
from toolchain.steps.base import StepConfig, StepContext, StepTimer, hash_folder, register_step
from toolchain.tasks import adapter_for
from toolchain.version import __version__

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"


class Exporter(str, enum.Enum):
    # TorchScript tracing is deprecated in torch>=2.9 but its graphs are the ones onnxruntime's
    # transformer optimiser fuses (Attention, EmbedLayerNormalization); torch.export graphs of
    # the same BERT got no Attention fusion with onnxruntime 1.32. Keep it the default until that changes.
    TORCHSCRIPT = "torchscript"
    DYNAMO = "dynamo"


class ExportOnnx(StepConfig):
    """Convert the latest PyTorch model of the run to ONNX: the step that leaves the torch stage."""

    kind: Literal["export-onnx"] = "export-onnx"
    consumes = frozenset({Stage.TORCH})
    produces = Stage.ONNX
    opset: int = Field(default=18, ge=17, le=20, description="ONNX opset (17 has LayerNormalization)")
    exporter: Exporter = Exporter.TORCHSCRIPT
    max_length: int | None = Field(
        default=None, ge=8, le=MAX_LENGTH_LIMIT,
        description="the artifact's window in tokens (longer texts are truncated); default: the model's own window. "
        "On long documents a shorter window is much faster and often as accurate (see `optimise search`)")
    truncation: Literal["head", "head+tail"] = Field(
        default="head",
        description="which tokens the runtime keeps of a text longer than the window: its start (head), or a "
        "quarter of the window from its start and the rest from its end (head+tail; text classification only)")

    def preflight(self, source: Checkpoint) -> None:
        if self.truncation not in adapter_for(source.task).truncations:
            raise ConfigError(f"export-onnx: truncation {self.truncation!r} is for text classification, "
                              f"not {source.task.value}")
        if self.max_length is not None and self.max_length > source.max_length:
            raise ConfigError(f"export-onnx: max_length {self.max_length} is longer than the model's window of "
                              f"{source.max_length} tokens")

    def window(self, source: Checkpoint) -> int:
        return min(self.max_length or source.max_length, source.max_length)


def _input_names(ckpt: Checkpoint, model) -> list[str]:
    accepted = set(inspect.signature(model.forward).parameters)
    names = [n for n in ckpt.tokenizer.model_input_names if n in accepted]
    if "input_ids" not in names:
        raise UnsupportedModelError(f"{ckpt.architecture} does not take input_ids; cannot export it")
    return names


@register_step(ExportOnnx)
def export_onnx(parent: TorchModel, cfg: ExportOnnx, ctx: StepContext) -> Artifact:
    """Trace the task model and write model.onnx plus the HF config and tokenizer files.

    The manifest's lineage continues the torch stage's: the source checkpoint's record, every
    torch-stage step, then this export.
    """
    import onnx
    import torch

    source = parent.checkpoint
    cfg.preflight(source)  # the window may have shrunk since the run started (a student with fewer positions)
    window = cfg.window(source)
    adapter = adapter_for(source.task)
    model = source.load_model()
    input_names = _input_names(source, model)
    folder = ctx.new_folder("export")
    onnx_path = folder / MODEL_FILE

    # Two texts of different lengths, so the trace sees real padding in the attention mask.
    sample = source.tokenizer(
        ["a short example", "a somewhat longer example sentence that forces padding of the first"],
        padding=True, truncation=True, max_length=window, return_tensors="pt",
    )
    args = tuple(sample[n] for n in input_names)
    wrapper = _with_task_outputs(model, input_names, adapter.outputs)
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
    for name in adapter.outputs:
        axes[name] = {0: "batch", 1: "sequence"} if adapter.per_token else {0: "batch"}

    if cfg.exporter is Exporter.DYNAMO:
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=window)
        shapes = (tuple({0: batch, 1: sequence} for _ in args),)  # one entry: forward takes *tensors
        options = dict(dynamo=True, verbose=False, external_data=False, dynamic_shapes=shapes)
    else:
        options = dict(dynamo=False, dynamic_axes=axes, do_constant_folding=True)

    timer = StepTimer()
    with quiet_torch_export(), torch.no_grad():
        try:
            torch.onnx.export(
                wrapper, args, str(onnx_path), input_names=input_names, output_names=list(adapter.outputs),
                opset_version=cfg.opset, **options,
            )
        except Exception as exc:  # torch raises a zoo of types; the message is what matters
            raise UnsupportedModelError(
                f"torch.onnx ({cfg.exporter.value}) could not export {source.architecture}: {exc}"
            ) from exc
    onnx.checker.check_model(str(onnx_path))
    duration = timer.elapsed()

    model.config.save_pretrained(folder)
    source.tokenizer.save_pretrained(folder)

    files = hash_folder(folder)
    digest = files[MODEL_FILE]
    manifest = Manifest(
        toolchain_version=__version__,
        created_at=timer.started_at,
        task=source.task,
        format=ModelFormat.ONNX,
        model_file=MODEL_FILE,
        max_length=window,
        truncation=cfg.truncation,
        vocab_size=model.get_input_embeddings().num_embeddings,
        labels=source.labels,
        source=ctx.source.source_info,
        signature=read_signature(onnx_path),
        recipe={},
        lineage=(*parent.lineage, StepRecord(cfg.kind, Stage.ONNX.value, cfg.to_record(), parent.sha256, digest,
                                             timer.started_at, duration)),
        parity=(),
        files=files,
    )
    log.info("exported %s to ONNX opset %d in %.1fs", source.architecture, cfg.opset, duration)
    return Artifact(folder, manifest, Stage.ONNX)


def read_signature(onnx_path: Path) -> Signature:
    """Describe the graph's inputs and outputs, naming dynamic axes by their dim_param."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(onnx_path), load_external_data=False).graph

    def spec(value) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in tensor.shape.dim)
        return TensorSpec(value.name, str(tensor_dtype_to_np_dtype(tensor.elem_type)), dims)

    initializers = {i.name for i in graph.initializer}
    return Signature(
        inputs=tuple(spec(v) for v in graph.input if v.name not in initializers),
        outputs=tuple(spec(v) for v in graph.output),
    )


def _with_task_outputs(model, input_names: list[str], output_names: tuple[str, ...]):
    """Wrap the model so the graph takes positional tensors and returns exactly the task's outputs."""
    import torch

    class TaskOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            out = self.model(**dict(zip(input_names, tensors)), return_dict=True)
            return tuple(out[name] for name in output_names)

    return TaskOutputs().eval()
