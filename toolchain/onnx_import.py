"""Import a BERT-style encoder that ships only as an ONNX graph into a transformers folder (a student start).

Small general-purpose encoders are often published as ONNX files for inference (sentence
embeddings); distillation needs them as PyTorch weights. An exported BERT keeps its parameters as
initialisers: embeddings, layer norms and biases under their module names, and every `nn.Linear`
weight as the right-hand side of a `MatMul`, transposed and usually renamed (`onnx::MatMul_470`).
The weights are therefore matched structurally: a `MatMul` whose result is added to the bias
`P.bias` holds `P.weight`, transposed. What the weights do not record is read from the graph (layer
norm epsilon, activation) or found by trial (the number of heads: the one whose outputs match).

The import is checked like an export: the new model's last hidden state must match the graph's on
real batches (padded ones included), or nothing is written.

    from toolchain.onnx_import import import_bert_onnx
    import_bert_onnx("paraphrase-MiniLM-L3-v2.onnx", "l3-start", tokenizer="all-MiniLM-L6-v2")
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import ConfigError
from toolchain.output import claim_output, plan_output, publish

log = logging.getLogger(__name__)
TOLERANCE = 1e-4  # max |difference| of the last hidden state, graph vs the imported model (fp32)
_PROBE_TEXTS = ("a quiet, beautifully acted film that never quite finds its footing",
                "terrible.", "the plot twists are predictable but the cast sells every scene, and the "
                "score lifts the slow middle hour")
_LAYER = re.compile(r"encoder\.layer\.(\d+)\.")
_LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
            "intermediate.dense", "output.dense")


def import_bert_onnx(onnx_file: Path | str, out: Path | str, tokenizer: Path | str,
                     num_heads: int | None = None) -> Path:
    """Write the BERT encoder in `onnx_file` as a transformers `BertModel` folder at `out`, with the tokenizer
    of the folder `tokenizer` (its vocabulary must have the graph's size). `num_heads`: when None, each head
    count that divides the width is tried (64-wide heads first) and the one whose outputs match is kept.
    `out` must not exist yet (or be empty). Raises `ConfigError` when the graph is not a BERT encoder or no
    setting reproduces its outputs."""
    import onnx
    from transformers import AutoTokenizer

    onnx_file = Path(onnx_file)
    if not onnx_file.is_file():
        raise ConfigError(f"`onnx_file` {onnx_file} does not exist")
    out = plan_output(out, [onnx_file, tokenizer], "the imported model")
    try:
        graph = onnx.load(str(onnx_file)).graph
    except Exception as exc:  # onnx raises DecodeError, OSError, ...: all mean the same to the user
        raise ConfigError(f"`onnx_file` {onnx_file} is not a readable ONNX model: {exc}") from None
    state, facts = _bert_weights(graph)
    try:
        tok = AutoTokenizer.from_pretrained(Path(tokenizer), local_files_only=True)
    except Exception as exc:  # transformers raises many types for an unusable folder
        raise ConfigError(f"`tokenizer` {tokenizer} is not a tokenizer folder: {exc}") from None
    if len(tok) != facts["vocab_size"]:
        raise ConfigError(f"`tokenizer` {tokenizer} has {len(tok)} tokens but the graph embeds "
                          f"{facts['vocab_size']}: it is not this model's vocabulary")
    probe = _probe_batch(tok, graph, facts["max_position_embeddings"])
    reference = _run_graph(onnx_file, probe)
    width = facts["hidden_size"]
    tried = []
    for heads in [num_heads] if num_heads else _head_counts(width):
        model = _build(state, facts, heads)
        diff = _difference(model, probe, reference)
        tried.append(f"{heads} heads: {diff:.2g}")
        if diff <= TOLERANCE:
            break
    else:
        raise ConfigError(f"the imported model does not reproduce {onnx_file.name} (max |difference| of the last "
                          f"hidden state: {'; '.join(tried)}; tolerance {TOLERANCE:g})")
    log.info("imported %s: %d layers, width %d, %d heads, FFN %d; last hidden state within %.2g of the graph",
             onnx_file.name, facts["num_hidden_layers"], width, heads, facts["intermediate_size"], diff)
    with claim_output(out, overwrite=False) as workspace:
        folder = workspace.path / "model"
        model.config.architectures = ["BertModel"]
        model.save_pretrained(folder, safe_serialization=True)
        tok.model_max_length = min(int(tok.model_max_length), facts["max_position_embeddings"])
        tok.save_pretrained(folder)
        publish(folder, out)
    return out


def _bert_weights(graph) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The encoder's state dict (BertModel names) and what its config needs, read from the graph."""
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    anchor = next((n for n in inits if n.endswith("embeddings.word_embeddings.weight")), None)
    if anchor is None:
        raise ConfigError("the graph has no `embeddings.word_embeddings.weight`: not a BERT-style encoder export")
    prefix = anchor[: -len("embeddings.word_embeddings.weight")]
    state = {name[len(prefix):]: numpy_helper.to_array(t) for name, t in inits.items() if name.startswith(prefix)}
    # a MatMul against an initialiser, added to a named bias: that bias's Linear, its weight transposed
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weight = next((i for i in node.input if i in inits), None)
        if weight is None:
            continue
        for add in consumers.get(node.output[0], []):
            bias = next((i for i in add.input if i.startswith(prefix) and i.endswith(".bias")), None) \
                if add.op_type == "Add" else None
            if bias is not None:
                state[bias[len(prefix):-len(".bias")] + ".weight"] = numpy_helper.to_array(inits[weight]).T.copy()
    layers = sorted({int(m.group(1)) for name in state if (m := _LAYER.match(name))})
    if not layers or layers != list(range(len(layers))):
        raise ConfigError("the graph's encoder layers are not numbered 0..n-1: not a BERT-style encoder export")
    missing = [f"encoder.layer.{i}.{p}.weight" for i in layers for p in _LINEARS
               if f"encoder.layer.{i}.{p}.weight" not in state]
    if missing:
        raise ConfigError(f"no MatMul weight found for {len(missing)} linear layer(s), e.g. {missing[0]}: the graph "
                          "is not a plain BERT export (fused or quantised graphs cannot be imported)")
    state = {k: v for k, v in state.items() if not k.startswith("pooler.")}  # students never use the pooler
    epsilon = next((a.f for n in graph.node if n.op_type == "LayerNormalization" for a in n.attribute
                    if a.name == "epsilon"), 1e-12)
    ops = {n.op_type for n in graph.node}
    facts = {
        "vocab_size": int(state["embeddings.word_embeddings.weight"].shape[0]),
        "hidden_size": int(state["embeddings.word_embeddings.weight"].shape[1]),
        "max_position_embeddings": int(state["embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(state.get("embeddings.token_type_embeddings.weight", np.zeros((2, 1))).shape[0]),
        "num_hidden_layers": len(layers),
        "intermediate_size": int(state["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "layer_norm_eps": float(epsilon),
        "hidden_act": "gelu" if "Erf" in ops or "Gelu" in ops else "gelu_new" if "Tanh" in ops else "relu",
    }
    return state, facts


def _head_counts(width: int) -> list[int]:
    """Head counts that divide `width`, the common head sizes first (64, 32, then the rest by size)."""
    sizes = sorted((s for s in range(8, width + 1) if width % s == 0), key=lambda s: (s not in (64, 32), -s))
    return [width // s for s in sizes]


def _build(state: dict[str, np.ndarray], facts: dict[str, Any], heads: int):
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(**facts, num_attention_heads=heads)
    model = BertModel(config, add_pooling_layer=False)
    tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}
    result = model.load_state_dict(tensors, strict=False)
    # token type embeddings may be missing from a graph that never takes token_type_ids: they stay zero
    absent = [k for k in result.missing_keys if k != "embeddings.token_type_embeddings.weight"
              and not k.endswith("position_ids")]
    if absent or result.unexpected_keys:
        raise ConfigError(f"the graph's weights do not fit a BertModel: missing {absent[:3]}, "
                          f"unexpected {result.unexpected_keys[:3]}")
    if "embeddings.token_type_embeddings.weight" in result.missing_keys:
        with torch.no_grad():
            model.embeddings.token_type_embeddings.weight.zero_()
    return model.eval()


def _probe_batch(tok, graph, max_positions: int) -> dict[str, np.ndarray]:
    enc = tok(list(_PROBE_TEXTS), padding=True, truncation=True, max_length=min(64, max_positions),
              return_tensors="np")
    names = {i.name for i in graph.input}
    return {k: v.astype(np.int64) for k, v in enc.items() if k in names}


def _run_graph(onnx_file: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The graph's token-level output on `feeds`: its 3-D output as wide as the model."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    batch, length = next(iter(feeds.values())).shape
    for value in session.run(None, feeds):
        if value.ndim == 3 and value.shape[:2] == (batch, length):
            return value
    raise ConfigError(f"{onnx_file.name} has no token-level output (batch x tokens x width) to check the import "
                      "against")


def _difference(model, feeds: dict[str, np.ndarray], reference: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        hidden = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    if hidden.shape != reference.shape:
        return float("inf")
    mask = feeds["attention_mask"].astype(bool)  # padded positions carry no meaning in either model
    return float(np.abs(hidden[mask] - reference[mask]).max())
