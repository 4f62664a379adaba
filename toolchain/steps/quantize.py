"""Int8 quantisation with ONNX Runtime's quantiser: dynamic (no data) and static QDQ (calibrated)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from runtimes.embedded.backends import Device, SessionOptions, get_backend
from toolchain.compat import quiet_quantiser
from toolchain.data import DataRole
from toolchain.errors import ConfigError, ParityError, UnsupportedModelError
from toolchain.families import family_of
from toolchain.stages import Artifact, Stage
from toolchain.steps.base import NodePatterns, StepConfig, StepContext, StepTimer, derive, match_nodes, register_step
from toolchain.steps.cpu_target import CpuInt8Step, cpu_details, measured_speedup

log = logging.getLogger(__name__)


class DynamicInt8(CpuInt8Step):
    """Int8 weights, activations quantised on the fly. Best run after `fuse-graph`.

    The format follows `cpu` (this machine by default): `reduce_range="auto"` uses 7-bit weights on CPUs
    without VNNI (avx2, avx512), where the u8 x s8 instruction can saturate, and full 8-bit ones on VNNI
    and ARM. When `cpu` is this machine's class the step measures its speed against the fp32 parent and
    warns when int8 does not pay here. With `accuracy_budget` (points of accuracy, or of entity F1 for
    token classification, on the labelled validation data) the step keeps the task head, then also the
    first and last layers, then also the embeddings in fp32 until the drop fits, and fails if it never does.
    """

    kind: Literal["quantize-dynamic-int8"] = "quantize-dynamic-int8"
    consumes = frozenset({Stage.ONNX, Stage.ONNX_FUSED})
    per_channel: bool = True
    reduce_range: Literal["auto", "yes", "no"] = "auto"
    embeddings: bool = True  # quantise the embedding tables: most of a small model's size
    keep_fp32: NodePatterns = ()  # regexes of node names to leave in fp32
    accuracy_budget: float | None = Field(default=None, gt=0, le=100)
    # check the budget on the drop's upper bound at this confidence (a paired bootstrap over the validation
    # examples) instead of on the measured drop, which a small split moves by a point either way
    accuracy_confidence: float | None = Field(default=None, ge=0.5, lt=1)
    lossy = True

    def data_roles(self) -> frozenset[DataRole]:
        return frozenset({DataRole.VALIDATION}) if self.accuracy_budget is not None else frozenset()


class StaticInt8(CpuInt8Step):
    """Int8 weights and activations with scales calibrated on real texts, as QDQ pairs.

    ONNX Runtime fuses the QDQ pairs into int8 kernels when it loads the model. Run it on the
    unfused export: its fused contrib operators have no QDQ form. For a CPU without VNNI (`cpu`
    avx2 or avx512, or this machine when it is one) the weights are 7-bit, which the saturating
    u8 x s8 kernels there compute exactly.
    """

    kind: Literal["quantize-static-int8"] = "quantize-static-int8"
    consumes = frozenset({Stage.ONNX})  # fused contrib operators have no QDQ form
    cacheable = True  # calibration runs the model on hundreds of texts
    calibration_samples: int = Field(default=300, ge=8, le=100_000)
    method: Literal["minmax", "percentile", "entropy"] = "minmax"
    per_channel: bool = True
    keep_fp32: NodePatterns = ()
    lossy = True
    needs_data = frozenset({DataRole.CALIBRATION})


@register_step(DynamicInt8)
def quantize_dynamic_int8(parent: Artifact, cfg: DynamicInt8, ctx: StepContext) -> Artifact:
    """Int8 weights with onnxruntime's dynamic quantiser, after symbolic shape inference.

    With an accuracy budget, sensitive parts (named by the model-family table) stay in fp32 step by
    step until the drop on the labelled data fits; every attempt is recorded.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    timer = StepTimer()
    if cfg.accuracy_budget is not None:
        _check_accuracy_data(ctx)
    reduce_range = {"yes": True, "no": False, "auto": cfg.target.isa.saturates}[cfg.reduce_range]
    ops = ["MatMul", "Attention"] + (["EmbedLayerNormalization", "Gather"] if cfg.embeddings else [])
    source = _with_shapes(parent.model_path, ctx.new_folder("shapes"))
    family = family_of(parent.config.get("model_type"))
    layers = family.layer_count(parent.config)
    stages = [("nothing", ())]  # beyond `keep_fp32`
    if cfg.accuracy_budget is not None:  # each stage keeps more of the sensitive parts in fp32
        head = "(" + "|".join(family.head_nodes) + ")"
        edges = (head, _layer(0), _layer(layers - 1))
        stages += [("task head in fp32", (head,)),
                   ("task head, first and last layer in fp32", edges),
                   ("task head, first and last layer, embeddings in fp32",
                    (*edges, "EmbedLayerNormalization", "Gather"))]
    baseline = _predict(parent, parent.model_path, ctx) if cfg.accuracy_budget is not None else None
    attempts = []
    for label, extra in stages:
        folder = ctx.new_folder("int8")
        out = folder / parent.manifest.model_file
        excluded = _matching_nodes(source, cfg.keep_fp32 + extra)
        with quiet_quantiser():
            quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=cfg.per_channel,
                             reduce_range=reduce_range, op_types_to_quantize=ops, nodes_to_exclude=excluded)
        attempt: dict = {"kept_fp32": label, "nodes_kept_fp32": len(excluded)}
        if baseline is not None:
            attempt.update(_judge(baseline, _predict(parent, out, ctx), ctx, cfg.accuracy_confidence))
        attempts.append(attempt)
        if baseline is None or attempt["checked_drop"] <= cfg.accuracy_budget + 1e-9:
            break
        log.warning("int8 (%s) costs %.2f points > budget %.2f; keeping more in fp32",
                    label, attempt["checked_drop"], cfg.accuracy_budget)
    else:
        tried = "; ".join(f"{a['kept_fp32']}: -{a['checked_drop']:.2f}" for a in attempts)
        bound = (f", checked on the drop's {cfg.accuracy_confidence:.0%} upper bound"
                 if cfg.accuracy_confidence else "")
        raise ParityError(f"dynamic int8 exceeds the accuracy budget of {cfg.accuracy_budget} points{bound} "
                          f"on {min(len(ctx.data[DataRole.VALIDATION]), _QUALITY_LIMIT)} labelled validation "
                          f"examples whatever stays fp32 ({tried})")
    details = {**cpu_details(cfg), "reduce_range": reduce_range, "op_types": ops,
               "quantised_ops": _count_quantised(out), "attempts": attempts,
               "speedup_vs_parent_cpu": measured_speedup(parent.model_path, out, parent.manifest.format, ctx,
                                                         target=cfg.target, what="dynamic int8")}
    if baseline is not None:
        details["baseline_accuracy"] = _score(baseline, ctx)
    log.info("dynamic int8: %s", details["quantised_ops"])
    return derive(parent, folder, cfg, timer, details)


@register_step(StaticInt8)
def quantize_static_int8(parent: Artifact, cfg: StaticInt8, ctx: StepContext) -> Artifact:
    """Int8 weights and activations as QDQ pairs, calibrated on the run's dataset; records its speed-up."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    timer = StepTimer()
    source = _with_shapes(parent.model_path, ctx.new_folder("shapes"))
    texts = ctx.data_for(DataRole.CALIBRATION, cfg.kind).texts[: cfg.calibration_samples]
    reader = _CalibrationReader(ctx, texts, parent.manifest.signature.input_names)
    folder = ctx.new_folder("int8-static")
    out = folder / parent.manifest.model_file
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[cfg.method]
    # u8 activations (asymmetric) x s8 weights: the combination x86 int8 kernels run fast. Symmetric s8
    # activations measured 9x slower than u8 on the demo model (onnxruntime 1.32, AVX-512 VNNI), and less accurate.
    # Without VNNI, u8 x s8 pairs are summed in a saturating int16: 7-bit weights keep every sum in range.
    reduce_range = cfg.target.isa.saturates
    with quiet_quantiser():
        quantize_static(str(source), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=cfg.per_channel,
                        reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                        op_types_to_quantize=["MatMul", "Gemm"],
                        nodes_to_exclude=_matching_nodes(source, cfg.keep_fp32))
    details = {**cpu_details(cfg), "reduce_range": reduce_range, "calibration_samples": len(texts),
               "method": cfg.method, "quantised_ops": _count_quantised(out),
               "speedup_vs_parent_cpu": measured_speedup(parent.model_path, out, parent.manifest.format, ctx,
                                                         target=cfg.target, what="static int8")}
    return derive(parent, folder, cfg, timer, details)


class _CalibrationReader:
    """Feeds calibration texts one at a time, all padded to the longest of them.

    The histogram calibrators (percentile, entropy) stack what they see, so every sample must
    have the same shape.
    """

    def __init__(self, ctx: StepContext, texts: tuple[str, ...], names: list[str]):
        longest = ctx.checkpoint.encode(list(texts), ["input_ids"])["input_ids"].shape[1]
        self._samples = iter([ctx.checkpoint.encode([text], names, pad_to=longest) for text in texts])

    def get_next(self):
        return next(self._samples, None)


def _with_shapes(model_path: Path, folder: Path) -> Path:
    """Annotate every tensor's type and shape, fused contrib operators included.

    ONNX's own shape inference stops at com.microsoft operators (Attention, SkipLayerNormalization),
    and the quantiser then cannot type the MatMuls behind them ("Unable to find data type for
    weight_name ..."): the error Optimum's O2 + dynamic-int8 chain hits with onnxruntime 1.32.
    ONNX Runtime's symbolic shape inference knows those operators.
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(model_path))
    try:
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as exc:  # it raises plain Exceptions on unknown patterns
        raise UnsupportedModelError(f"symbolic shape inference failed on {model_path.name}: {exc}") from exc
    out = folder / "with_shapes.onnx"
    onnx.save(inferred, str(out))
    return out


def _layer(i: int) -> str:
    # Unfused nodes carry the module path ("layer.3/", "layers.3/"); fused attention nodes are numbered by layer.
    return rf"(layers?\.{i}/|^Attention_{i}$)"


def _matching_nodes(model_path: Path, patterns: tuple[str, ...]) -> list[str]:
    import onnx

    if not patterns:
        return []
    return match_nodes([n.name for n in onnx.load(str(model_path), load_external_data=False).graph.node], patterns)


def _count_quantised(model_path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(model_path), load_external_data=False).graph.node:
        if node.op_type in ("MatMulInteger", "QAttention", "QEmbedLayerNormalization", "QGemm",
                            "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QuantizeLinear", "DequantizeLinear"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _check_accuracy_data(ctx: StepContext) -> None:
    from toolchain.tasks import adapter_for

    needs = adapter_for(ctx.checkpoint.task).accuracy_budget_needs
    if needs is None:
        raise ConfigError("accuracy_budget is available for text and token classification, not question answering")
    data = ctx.data_for(DataRole.VALIDATION, "quantize-dynamic-int8 with accuracy_budget")
    if not adapter_for(ctx.checkpoint.task).is_supervised(data):
        raise ConfigError(f"accuracy_budget needs labelled validation data: pass `eval_data` with {needs}")


_QUALITY_LIMIT = 1000  # validation examples the budget is checked on


def _predict(parent: Artifact, model_path: Path, ctx: StepContext) -> list:
    """An ONNX model's answers on (at most 1,000 of) the labelled validation data through the runtime's own
    pipeline (its window, truncation and decoding: what an app will get): a class id per text, or a tag per
    word for token classification (the pipeline's entities mapped back to the words)."""
    import dataclasses

    from runtimes.embedded.pipelines import PIPELINES
    from toolchain.tasks import adapter_for

    manifest = dataclasses.replace(parent.manifest, model_file=model_path.name)
    session = get_backend("onnxruntime").load(model_path, Device.CPU, SessionOptions())
    session.limit_inputs(manifest.vocab_size, manifest.max_length)
    files = {name: parent.path / name for name in manifest.files}
    pipe = PIPELINES[manifest.task](parent.path, manifest, session, files, batch_size=32, max_chars=None)
    adapter = adapter_for(manifest.task)
    examples = adapter.gold_examples(ctx.data[DataRole.VALIDATION].head(_QUALITY_LIMIT), manifest.labels)
    # token classification: words_to_tags reads spans of the words joined by spaces
    return adapter.answers(pipe(examples.requests), manifest.labels, examples.words)


def _score(predicted: list, ctx: StepContext, rows: list[int] | None = None) -> float:
    """The task's quality (0..1) of `predicted` on the validation examples at `rows` (all by default):
    top-1 accuracy, or seqeval entity F1 for token classification."""
    from runtimes.measure.quality import accuracy, entity_scores  # the one measurement layer

    data = ctx.data[DataRole.VALIDATION].head(_QUALITY_LIMIT)
    rows = list(range(len(predicted))) if rows is None else rows
    if data.labels is not None:
        return accuracy([data.labels[i] for i in rows], [predicted[i] for i in rows])
    assert data.tags is not None
    names = ctx.checkpoint.labels
    return entity_scores([[names[t] for t in data.tags[i]] for i in rows], [predicted[i] for i in rows])["entity_f1"]


def _judge(baseline: list, predicted: list, ctx: StepContext, confidence: float | None) -> dict:
    """The attempt's quality and drop in points; `checked_drop` is what the budget is held to: the drop, or
    its upper bound at `confidence` from a paired bootstrap."""
    from runtimes.measure.quality import paired_drop_bound

    quality = _score(predicted, ctx)
    found = {"accuracy": quality, "drop_points": 100 * (_score(baseline, ctx) - quality)}
    found["checked_drop"] = found["drop_points"]
    if confidence is not None:
        found["checked_drop"] = found["drop_bound"] = paired_drop_bound(
            lambda rows: 100 * (_score(baseline, ctx, rows) - _score(predicted, ctx, rows)), len(predicted),
            confidence)
    return found


class Float16(StepConfig):
    """fp16 weights and compute for GPU targets; inputs and outputs stay as they were (int64 / fp32).

    Weights beyond the fp16 range would overflow: the nodes that use them stay in fp32. fp16 pays
    on GPUs (tensor cores), not on CPUs, so presets use it for the CUDA target only.
    """

    kind: Literal["convert-fp16"] = "convert-fp16"
    consumes = frozenset({Stage.ONNX, Stage.ONNX_FUSED})
    keep_fp32: tuple[str, ...] = ()  # operator types to keep in fp32, besides those the converter keeps
    lossy = True


_FP16_MAX = 65504.0


@register_step(Float16)
def convert_fp16(parent: Artifact, cfg: Float16, ctx: StepContext) -> Artifact:
    """fp16 weights and compute with fp32 inputs/outputs; nodes fed by weights beyond fp16's range stay fp32."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.transformers.onnx_model import OnnxModel

    timer = StepTimer()
    model = onnx.load(str(parent.model_path))
    too_big = {i.name for i in model.graph.initializer
               if i.data_type == onnx.TensorProto.FLOAT and np.abs(numpy_helper.to_array(i)).max(initial=0) > _FP16_MAX}
    guarded = [n.name for n in model.graph.node if too_big & set(n.input)]
    wrapped = OnnxModel(model)
    wrapped.convert_float_to_float16(keep_io_types=True, op_block_list=list(cfg.keep_fp32) or None,
                                     node_block_list=guarded or None)
    folder = ctx.new_folder("fp16")
    wrapped.save_model_to_file(str(folder / parent.manifest.model_file), use_external_data_format=False)
    halves = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in wrapped.model.graph.initializer)
    details = {"fp16_initializers": halves, "nodes_kept_fp32_for_range": guarded,
               "speedup_vs_parent_cuda": measured_speedup(parent.model_path, folder / parent.manifest.model_file,
                                                          parent.manifest.format, ctx, Device.CUDA, what="fp16")}
    return derive(parent, folder, cfg, timer, details)
