"""Importing a BERT encoder that ships only as ONNX (a student start): weights matched structurally, checked
against the graph, nothing written when the check fails."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import build_tokenizer
from toolchain.errors import ConfigError
from toolchain.onnx_import import import_bert_onnx


def _sentence_encoder_onnx(folder: Path, heads: int = 4) -> tuple[Path, Path, torch.nn.Module]:
    """A tiny BertModel wrapped like a sentence-transformers export (prefixed names, no token_type_ids input),
    written with the TorchScript exporter, which stores Linear weights transposed under onnx::MatMul names."""
    import transformers as tf

    tok = build_tokenizer("bert")
    tok_dir = folder / "tokenizer"
    tok.save_pretrained(tok_dir)
    cfg = tf.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=heads,
                        intermediate_size=48, max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(0)
    bert = tf.BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():  # a trained model's biases and norms differ; the exporter merges equal initialisers
        for param in bert.parameters():
            param.add_(0.05 * torch.randn_like(param))

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.auto_model = bert

        def forward(self, input_ids, attention_mask):
            return self.auto_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    class Outer(torch.nn.Module):  # names like model.0.auto_model.embeddings...
        def __init__(self):
            super().__init__()
            self.model = torch.nn.ModuleDict({"0": Wrapper()})

        def forward(self, input_ids, attention_mask):
            return self.model["0"](input_ids, attention_mask)

    outer = Outer().eval()
    enc = tok(["a small test", "another slightly longer test sentence"], padding=True, return_tensors="pt")
    path = folder / "encoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is the point here
        torch.onnx.export(outer, (enc["input_ids"], enc["attention_mask"]), str(path), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=["token_embeddings"],
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in
                                        ("input_ids", "attention_mask", "token_embeddings")}, opset_version=17)
    return path, tok_dir, bert


def test_import_reproduces_the_graph_and_finds_the_head_count(tmp_path):
    path, tok_dir, bert = _sentence_encoder_onnx(tmp_path, heads=4)  # 4 heads of 8: not the first guess
    out = import_bert_onnx(path, tmp_path / "start", tokenizer=tok_dir)
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(out).eval()
    assert model.config.num_attention_heads == 4 and model.config.num_hidden_layers == 2
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok(["the film was fine", "no"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model(**enc).last_hidden_state
        original = bert(**enc).last_hidden_state
    mask = enc["attention_mask"].bool()
    assert np.abs((ours - original)[mask].numpy()).max() < 1e-4
    # a student start: it loads with a new task head
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(out, num_labels=2)


def test_wrong_head_count_or_vocabulary_writes_nothing(tmp_path):
    path, tok_dir, _ = _sentence_encoder_onnx(tmp_path, heads=4)
    with pytest.raises(ConfigError, match="does not reproduce"):
        import_bert_onnx(path, tmp_path / "wrong-heads", tokenizer=tok_dir, num_heads=2)
    assert not (tmp_path / "wrong-heads").exists()
    other = tmp_path / "other-tokenizer"
    build_tokenizer("roberta").save_pretrained(other)
    with pytest.raises(ConfigError, match="tokens but the graph embeds"):
        import_bert_onnx(path, tmp_path / "wrong-vocab", tokenizer=other)
    assert not (tmp_path / "wrong-vocab").exists()


def test_a_graph_that_is_not_a_bert_export_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ConfigError, match="not a BERT-style encoder"):
        import_bert_onnx(path, tmp_path / "out", tokenizer=tmp_path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a readable ONNX model"):
        import_bert_onnx(tmp_path / "junk.onnx", tmp_path / "out", tokenizer=tmp_path)
    assert not (tmp_path / "out").exists()
