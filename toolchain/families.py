"""What the toolchain knows about each model family, in one table.

Every step that needs to know where a family keeps its layers, what its config calls the layer
count, whether ONNX Runtime's fuser recognises its attention, or what its task heads are called,
asks this table. Adding a family is adding a row (and a tiny model to the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UnsupportedModelError


@dataclass(frozen=True)
class Family:
    """One model family (a transformers `model_type`)."""

    model_type: str
    name: str  # for messages and the README
    backbone: str  # attribute of the task model that holds the encoder ("bert", "roberta", ...)
    layers: str  # path from the backbone to the ModuleList of layers
    # config keys (DistilBERT names them differently)
    num_layers_key: str = "num_hidden_layers"
    heads_key: str = "num_attention_heads"
    hidden_key: str = "hidden_size"
    ffn_key: str = "intermediate_size"
    # RoBERTa-style position ids start at pad_token_id + 1, so that many positions are unusable
    position_offset: bool = False
    # ONNX Runtime's transformer optimiser fuses one Attention per layer of our export
    attention_fuses: bool = False
    why_unfused: str = ""
    # node-name fragments of the task heads (kept in fp32 first when an accuracy budget is tight)
    head_nodes: tuple[str, ...] = ("pooler", "classifier", "qa_outputs")
    # every layer has its own weights (ALBERT shares one set across layers: no layer surgery)
    separate_layers: bool = True

    def dims(self, config: dict[str, Any]) -> tuple[int, int, int]:
        """(layers, attention heads per layer, hidden size) of the model described by `config`."""
        return (int(config[self.num_layers_key]), int(config[self.heads_key]), int(config[self.hidden_key]))

    def layer_count(self, config: dict[str, Any]) -> int:
        return int(config[self.num_layers_key])


_BERT_LIKE = dict(backbone="bert", layers="encoder.layer", attention_fuses=True)
FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("bert", "BERT (and MiniLM)", **_BERT_LIKE),
    Family("distilbert", "DistilBERT", backbone="distilbert", layers="transformer.layer", num_layers_key="n_layers",
           heads_key="n_heads", hidden_key="dim", ffn_key="hidden_dim", attention_fuses=True,
           head_nodes=("pre_classifier", "classifier", "qa_outputs")),
    Family("electra", "ELECTRA", backbone="electra", layers="encoder.layer", attention_fuses=True),
    Family("roberta", "RoBERTa", backbone="roberta", layers="encoder.layer", position_offset=True,
           attention_fuses=True),
    Family("xlm-roberta", "XLM-RoBERTa", backbone="roberta", layers="encoder.layer", position_offset=True,
           attention_fuses=True),
    Family("camembert", "CamemBERT", backbone="roberta", layers="encoder.layer", position_offset=True,
           attention_fuses=True),
    Family("mpnet", "MPNet", backbone="mpnet", layers="encoder.layer", position_offset=True,
           why_unfused="relative position bias inside attention"),
    Family("deberta-v2", "DeBERTa-v2/v3", backbone="deberta", layers="encoder.layer",
           why_unfused="disentangled (content/position) attention"),
    Family("albert", "ALBERT", backbone="albert", layers="encoder.albert_layer_groups", separate_layers=False,
           why_unfused="layers share one set of weights; the fuser fuses only the first use"),
    Family("modernbert", "ModernBERT", backbone="model", layers="layers", head_nodes=("head", "classifier"),
           why_unfused="rotary position embeddings and fused QKV projection"),
)}


def family_of(model_type: Any) -> Family:
    """The family row for a `model_type`; `UnsupportedModelError` naming what is supported otherwise."""
    if isinstance(model_type, str) and model_type in FAMILIES:
        return FAMILIES[model_type]
    raise UnsupportedModelError(f"model type {model_type!r} is not supported; supported: {', '.join(FAMILIES)}")
