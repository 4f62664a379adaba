"""Graph fusion with ONNX Runtime's transformer optimiser (attention, layer norm, GELU, embeddings)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal

import numpy as np

from toolchain.errors import OptimiseError
from toolchain.families import family_of
from toolchain.stages import Artifact, Stage
from toolchain.steps.base import StepConfig, StepContext, StepTimer, derive, register_step
from toolchain.surgery import is_pruned, layer_shapes

log = logging.getLogger(__name__)


class FusionError(OptimiseError):
    """A fusion that the recipe asked for did not happen."""


class FuseGraph(StepConfig):
    """Fuse the encoder's subgraphs into ONNX Runtime's fused operators.

    `attention="auto"` requires one fused Attention per layer for the families whose attention ONNX
    Runtime recognises (`toolchain.families`) and accepts none elsewhere; `"require"` demands it for
    any family. The result uses ONNX Runtime's contrib operators, so only ONNX Runtime reads it.
    """

    kind: Literal["fuse-graph"] = "fuse-graph"
    consumes = frozenset({Stage.ONNX})
    produces = Stage.ONNX_FUSED
    attention: Literal["auto", "require", "off"] = "auto"
    gelu_approximation: bool = False  # FastGelu: faster, not exact; off keeps parity at fp32 level


@register_step(FuseGraph)
def fuse_graph(parent: Artifact, cfg: FuseGraph, ctx: StepContext) -> Artifact:
    """Run ONNX Runtime's transformer optimiser; the fused-operator counts go into the lineage.

    The model's shape (layers, heads, hidden size) is read from the artifact's own config, so a
    model with dropped layers fuses one Attention per remaining layer, and a pruned model (layers
    with their own head counts) one Attention per layer carrying that layer's heads; the heads of
    the fused operators are checked against the model's.
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    timer = StepTimer()
    family = family_of(parent.config.get("model_type"))
    model_type = family.model_type
    layers, heads, hidden = family.dims(parent.config)
    expected_heads = [shape.heads for shape in layer_shapes(family, parent.config)]
    options = FusionOptions("bert")
    options.enable_attention = cfg.attention != "off"
    options.enable_gelu_approximation = cfg.gelu_approximation
    source = str(parent.model_path)
    pinned = 0
    if is_pruned(parent.config):
        # Layers have their own head counts, so no single num_heads fits; the export reshapes q, k and v
        # with -1 heads, which the fuser cannot read. Writing each layer's count there lets it detect
        # them node by node (num_heads=0, hidden_size=0).
        source, pinned = _pin_head_counts(onnx.load(source))
        heads = hidden = 0
    with _quiet_pruned_width_warning():
        optimised = optimize_model(source, model_type="bert", num_heads=heads, hidden_size=hidden,
                                   optimization_options=options, opt_level=0)
    counts = {op: n for op, n in optimised.get_fused_operator_statistics().items() if n}
    fused_attention = counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0)
    wanted = cfg.attention == "require" or (cfg.attention == "auto" and family.attention_fuses)
    if wanted and fused_attention != layers:
        raise FusionError(
            f"attention fusion failed: {fused_attention} of {layers} layers fused for {model_type} "
            f"({counts or 'nothing fused'}); the exported attention pattern is not one ONNX Runtime "
            "recognises. Use attention='off' to fuse the rest, or report the model."
        )
    fused_heads = _attention_heads(optimised)
    if len(fused_heads) == layers and fused_heads != expected_heads:
        raise FusionError(f"the fused Attention operators carry {fused_heads} heads, but the model's layers have "
                          f"{expected_heads}; use attention='off' to fuse the rest, or report the model")
    folder = ctx.new_folder("fuse")
    optimised.save_model_to_file(str(folder / parent.manifest.model_file), use_external_data_format=False)
    log.info("fused %s: %s", model_type, counts)
    details = {"fused_operators": counts, "attention_expected": wanted, "layers": layers}
    if fused_heads:
        details["attention_heads"] = fused_heads
    if pinned:
        details["pinned_head_reshapes"] = pinned
    return derive(parent, folder, cfg, timer, details)


class _DropPrunedWidth(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "is not same as weight matrix dimension of q,k,v" not in record.getMessage()


@contextlib.contextmanager
def _quiet_pruned_width_warning() -> Iterator[None]:
    """The fuser warns for every layer whose heads x head size is not the model width: after pruning that is
    the point (its Attention takes the full-width input and projects to the kept heads), not a mistake."""
    logger = logging.getLogger("fusion_attention")  # onnxruntime imports its fusion modules top-level
    drop = _DropPrunedWidth()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _attention_heads(optimised) -> list[int]:
    """num_heads of each fused attention operator in graph order, which is layer order: optimize_model
    sorts the graph topologically, and each layer's attention feeds the next."""
    found = []
    for node in optimised.model.graph.node:
        if node.op_type in ("Attention", "MultiHeadAttention"):
            found.extend(int(a.i) for a in node.attribute if a.name == "num_heads")
    return found


def _pin_head_counts(model) -> tuple[object, int]:
    """Replace the -1 head axis of each q/k/v reshape by the count it stands for; the graph computes the same.

    The pattern is the TorchScript export's: MatMul(x, W) -> Add(bias) -> Reshape(Concat(batch, sequence,
    -1, head_size)); the count is W's output width over head_size. Returns the model and how many reshapes
    were pinned (none: the fuser falls back to what it finds, and the checks after fusion decide).
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1

    def constant(name: str):
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        node = producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def projection_width(name: str) -> int | None:
        node = producer.get(name)
        if node is not None and node.op_type == "Add":  # the bias: then the MatMul is the other input
            node = next((producer[i] for i in node.input if i in producer and producer[i].op_type == "MatMul"), None)
        if node is None or node.op_type != "MatMul":
            return None
        weight = constant(node.input[1])
        return int(weight.shape[-1]) if weight is not None and weight.ndim == 2 else None

    pinned = 0
    clones: dict[str, list] = {}  # output of a shared Concat -> its copies, placed right after it
    for reshape in [n for n in graph.node if n.op_type == "Reshape"]:
        concat = producer.get(reshape.input[1])
        if concat is None or concat.op_type != "Concat" or len(concat.input) != 4:
            continue
        axis, size = constant(concat.input[2]), constant(concat.input[3])
        width = projection_width(reshape.input[0])
        if axis is None or size is None or axis.size != 1 or size.size != 1 or int(axis.flat[0]) != -1 or not width:
            continue
        head_size = int(size.flat[0])
        if head_size <= 0 or width % head_size:
            continue
        heads = numpy_helper.from_array(np.array([width // head_size], dtype=axis.dtype),
                                        f"{reshape.name or reshape.output[0]}_pinned_heads")
        graph.initializer.append(heads)
        if consumers.get(concat.output[0], 0) > 1:  # shared with another reshape: give this one its own
            clone = onnx.helper.make_node("Concat", list(concat.input), [f"{heads.name}_shape"],
                                          name=f"{heads.name}_concat", axis=0)
            clones.setdefault(concat.output[0], []).append(clone)
            consumers[concat.output[0]] -= 1
            reshape.input[1] = clone.output[0]
            concat = clone
        concat.input[2] = heads.name
        pinned += 1
    if clones:
        ordered = []
        for node in graph.node:
            ordered.append(node)
            ordered.extend(clones.get(node.output[0], []) if node.op_type == "Concat" else [])
        del graph.node[:]
        graph.node.extend(ordered)
    return model, pinned
