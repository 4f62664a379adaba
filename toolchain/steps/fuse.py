"""Graph fusion with ONNX Runtime's transformer optimiser (attention, layer norm, GELU, embeddings)."""

from __future__ import annotations

import logging
from typing import Literal

from ..errors import OptimiseError
from ..families import family_of
from ..stages import Artifact, Stage
from .base import StepConfig, StepContext, StepTimer, derive, register_step

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
    model with dropped layers fuses one Attention per remaining layer.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    timer = StepTimer()
    family = family_of(parent.config.get("model_type"))
    model_type = family.model_type
    layers, heads, hidden = family.dims(parent.config)
    options = FusionOptions("bert")
    options.enable_attention = cfg.attention != "off"
    options.enable_gelu_approximation = cfg.gelu_approximation
    optimised = optimize_model(str(parent.model_path), model_type="bert", num_heads=heads, hidden_size=hidden,
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
    folder = ctx.new_folder("fuse")
    optimised.save_model_to_file(str(folder / parent.manifest.model_file), use_external_data_format=False)
    log.info("fused %s: %s", model_type, counts)
    details = {"fused_operators": counts, "attention_expected": wanted, "layers": layers}
    return derive(parent, folder, cfg, timer, details)
