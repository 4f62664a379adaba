"""What the toolchain knows about each model family, in one table.

Every step that needs to know where a family keeps its layers, what its config calls the layer
count, whether ONNX Runtime's fuser recognises its attention, or what its task heads are called,
asks this table. Adding a family is adding a row (and a tiny model to the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolchain.errors import UnsupportedModelError


@dataclass(frozen=True)
class PruneLayout:
    """Where one encoder layer keeps what structured pruning slices; paths go from the layer module.

    A head is `head_size` consecutive outputs of each `qkv` projection (of each of its `qkv_parts`
    equal chunks, when q, k and v are packed in one Linear) and the same inputs of `attention_out`;
    an FFN neuron is one output of `ffn_in` (of each of its `ffn_in_parts` chunks: a GLU packs its
    input and gate) and the same input of `ffn_out`.
    """

    attention: str  # the module that holds the head count and head size
    heads_attr: str | None  # its head-count attribute (None: the forward infers it, reshaping with -1)
    head_size_attr: str
    qkv: tuple[str, ...]
    attention_out: str
    ffn_in: str
    ffn_out: str
    qkv_parts: int = 1
    ffn_in_parts: int = 1
    optional_qkv: tuple[str, ...] = ()  # head-sliced projections only some configs have (DeBERTa's pos_*_proj)
    size_attrs: tuple[str, ...] = ("all_head_size",)  # attributes that hold heads x head size, where present
    # a per-head bias computed once for all layers and passed to each layer's attention (MPNet's relative
    # position bias): each layer then selects its own heads from it
    position_bias_arg: str | None = None


_BERT_PRUNE = PruneLayout(attention="attention.self", heads_attr="num_attention_heads",
                          head_size_attr="attention_head_size",
                          qkv=("attention.self.query", "attention.self.key", "attention.self.value"),
                          attention_out="attention.output.dense", ffn_in="intermediate.dense",
                          ffn_out="output.dense")


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
    # where structured pruning (heads, FFN neurons) slices each layer; None: the family cannot be pruned
    prune: PruneLayout | None = None
    why_unprunable: str = ""

    def dims(self, config: dict[str, Any]) -> tuple[int, int, int]:
        """(layers, attention heads per layer, hidden size) of the model described by `config`."""
        return (int(config[self.num_layers_key]), int(config[self.heads_key]), int(config[self.hidden_key]))

    def layer_count(self, config: dict[str, Any]) -> int:
        return int(config[self.num_layers_key])


_BERT_LIKE = dict(backbone="bert", layers="encoder.layer", attention_fuses=True, prune=_BERT_PRUNE)
FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("bert", "BERT (and MiniLM)", **_BERT_LIKE),
    Family("distilbert", "DistilBERT", backbone="distilbert", layers="transformer.layer", num_layers_key="n_layers",
           heads_key="n_heads", hidden_key="dim", ffn_key="hidden_dim", attention_fuses=True,
           head_nodes=("pre_classifier", "classifier", "qa_outputs"),
           prune=PruneLayout(attention="attention", heads_attr="n_heads", head_size_attr="attention_head_size",
                             qkv=("attention.q_lin", "attention.k_lin", "attention.v_lin"),
                             attention_out="attention.out_lin", ffn_in="ffn.lin1", ffn_out="ffn.lin2",
                             size_attrs=())),
    Family("electra", "ELECTRA", backbone="electra", layers="encoder.layer", attention_fuses=True,
           prune=_BERT_PRUNE),
    Family("roberta", "RoBERTa", backbone="roberta", layers="encoder.layer", position_offset=True,
           attention_fuses=True, prune=_BERT_PRUNE),
    Family("xlm-roberta", "XLM-RoBERTa", backbone="roberta", layers="encoder.layer", position_offset=True,
           attention_fuses=True, prune=_BERT_PRUNE),
    Family("camembert", "CamemBERT", backbone="roberta", layers="encoder.layer", position_offset=True,
           attention_fuses=True, prune=_BERT_PRUNE),
    Family("mpnet", "MPNet", backbone="mpnet", layers="encoder.layer", position_offset=True,
           why_unfused="relative position bias inside attention",
           prune=PruneLayout(attention="attention.attn", heads_attr="num_attention_heads",
                             head_size_attr="attention_head_size",
                             qkv=("attention.attn.q", "attention.attn.k", "attention.attn.v"),
                             attention_out="attention.attn.o", ffn_in="intermediate.dense", ffn_out="output.dense",
                             position_bias_arg="position_bias")),
    Family("deberta-v2", "DeBERTa-v2/v3", backbone="deberta", layers="encoder.layer",
           why_unfused="disentangled (content/position) attention",
           prune=PruneLayout(attention="attention.self", heads_attr="num_attention_heads",
                             head_size_attr="attention_head_size",
                             qkv=("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj"),
                             optional_qkv=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
                             attention_out="attention.output.dense", ffn_in="intermediate.dense",
                             ffn_out="output.dense")),
    Family("albert", "ALBERT", backbone="albert", layers="encoder.albert_layer_groups", separate_layers=False,
           why_unfused="layers share one set of weights; the fuser fuses only the first use",
           why_unprunable="its layers share one set of weights, so no layer can have its own heads"),
    Family("modernbert", "ModernBERT", backbone="model", layers="layers", head_nodes=("head", "classifier"),
           why_unfused="rotary position embeddings and fused QKV projection",
           prune=PruneLayout(attention="attn", heads_attr=None, head_size_attr="head_dim", qkv=("attn.Wqkv",),
                             qkv_parts=3, attention_out="attn.Wo", ffn_in="mlp.Wi", ffn_in_parts=2,
                             ffn_out="mlp.Wo", size_attrs=())),
)}


def prunable_family_names() -> str:
    return ", ".join(f.model_type for f in FAMILIES.values() if f.prune is not None)


def family_of(model_type: Any) -> Family:
    """The family row for a `model_type`; `UnsupportedModelError` naming what is supported otherwise."""
    if isinstance(model_type, str) and model_type in FAMILIES:
        return FAMILIES[model_type]
    raise UnsupportedModelError(f"model type {model_type!r} is not supported; supported: {', '.join(FAMILIES)}")
