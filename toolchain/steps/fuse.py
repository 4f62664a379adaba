"""Graph fusion with ONNX Runtime's transformer optimiser (attention, layer norm, GELU, embeddings)."""

from __future__ import annotations

import logging
from typing import Literal

from ..errors import OptimiseError
from .base import Artifact, StepConfig, StepContext, StepTimer, derive, register_step

log = logging.getLogger(__name__)

# Families whose attention ONNX Runtime's BERT fuser recognises in our exports (checked by tests).
# MPNet's relative position bias is not a pattern it knows; its layer norms and GELUs still fuse.
ATTENTION_FUSES = frozenset({"bert", "distilbert", "electra", "roberta"})


class FusionError(OptimiseError):
    """A fusion that the recipe asked for did not happen."""


class FuseGraph(StepConfig):
    """Fuse the encoder's subgraphs into ONNX Runtime's fused operators.

    `attention="auto"` requires one fused Attention per layer for the families in
    `ATTENTION_FUSES` and accepts none elsewhere; `"require"` demands it for any family.
    """

    kind: Literal["fuse-graph"] = "fuse-graph"
    attention: Literal["auto", "require", "off"] = "auto"
    gelu_approximation: bool = False  # FastGelu: faster, not exact; off keeps parity at fp32 level


def model_dims(config: dict) -> tuple[int, int, int]:
    """(layers, heads, hidden size) from an HF config, whatever the family calls them."""
    layers = config.get("num_hidden_layers", config.get("n_layers"))
    heads = config.get("num_attention_heads", config.get("n_heads"))
    hidden = config.get("hidden_size", config.get("dim"))
    return int(layers), int(heads), int(hidden)


@register_step(FuseGraph)
def fuse_graph(parent: Artifact, cfg: FuseGraph, ctx: StepContext) -> Artifact:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    timer = StepTimer()
    model_type = ctx.checkpoint.model_type
    layers, heads, hidden = model_dims(ctx.checkpoint.config)
    options = FusionOptions("bert")
    options.enable_attention = cfg.attention != "off"
    options.enable_gelu_approximation = cfg.gelu_approximation
    optimised = optimize_model(str(parent.model_path), model_type="bert", num_heads=heads, hidden_size=hidden,
                               optimization_options=options, opt_level=0)
    counts = {op: n for op, n in optimised.get_fused_operator_statistics().items() if n}
    fused_attention = counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0)
    wanted = cfg.attention == "require" or (cfg.attention == "auto" and model_type in ATTENTION_FUSES)
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
