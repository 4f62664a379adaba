"""Checkpoint validation: each bad input gets its own clear error before anything heavy runs."""

import json
import re
import shutil

import pytest

from runtimes.common.manifest import Task
from toolchain import CheckpointError, UnsupportedModelError, inspect_checkpoint, optimise
from toolchain.tasks import parse_task


@pytest.fixture()
def ckpt_copy(bert_cls, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(bert_cls, dst)
    return dst


def test_infers_task_from_architecture(checkpoint_factory):
    for task in Task:
        assert inspect_checkpoint(checkpoint_factory("bert", task.value)).task is task


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        inspect_checkpoint(tmp_path / "nope")


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckpointError, match="is not a folder"):
        inspect_checkpoint(tmp_path / "f")


def test_no_config(ckpt_copy):
    (ckpt_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match=re.escape("no config.json")):
        inspect_checkpoint(ckpt_copy)


def test_broken_config(ckpt_copy):
    (ckpt_copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        inspect_checkpoint(ckpt_copy)


def test_unsupported_model_type(ckpt_copy):
    config = json.loads((ckpt_copy / "config.json").read_text())
    (ckpt_copy / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(UnsupportedModelError, match="'gpt2' is not supported"):
        inspect_checkpoint(ckpt_copy)


def test_no_weights(ckpt_copy):
    (ckpt_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        inspect_checkpoint(ckpt_copy)


def test_pickle_weights_need_opt_in(ckpt_copy, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(ckpt_copy)
    (ckpt_copy / "model.safetensors").unlink()
    import torch

    torch.save(model.state_dict(), ckpt_copy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        inspect_checkpoint(ckpt_copy)
    artifact = optimise(ckpt_copy, tmp_path / "out", allow_pickle=True)
    assert artifact.manifest.parity[0].passed
    assert "pytorch_model.bin" in artifact.manifest.source.weights_sha256


def test_corrupt_weights(ckpt_copy, tmp_path):
    (ckpt_copy / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not safetensors"):
        optimise(ckpt_copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_weights(ckpt_copy, tmp_path):
    weights = ckpt_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a valid header, half the data
    with pytest.raises(CheckpointError, match="could not load the model"):
        optimise(ckpt_copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_task():
    with pytest.raises(UnsupportedModelError, match="unknown task 'summarization'"):
        parse_task("summarization")


def test_task_must_match_head(bert_cls):
    with pytest.raises(UnsupportedModelError, match="does not match"):
        inspect_checkpoint(bert_cls, task=Task.QUESTION_ANSWERING)


def test_bare_encoder_needs_task_and_trained_head(bert_cls, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    bare = tmp_path / "bare"
    AutoModel.from_pretrained(bert_cls).save_pretrained(bare)  # the encoder without any task head
    AutoTokenizer.from_pretrained(bert_cls).save_pretrained(bare)
    with pytest.raises(UnsupportedModelError, match="pass --task"):
        inspect_checkpoint(bare)
    with pytest.raises(CheckpointError, match="would be random"):
        optimise(bare, tmp_path / "out", task=Task.TOKEN_CLASSIFICATION)
    assert not (tmp_path / "out").exists()
