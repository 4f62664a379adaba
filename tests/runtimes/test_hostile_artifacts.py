"""What an app can meet: tampered artifacts and hostile inputs raise `EdgeError` subclasses, nothing else.

Checked at `load` where possible (manifest types and ranges, every file's hash, labels against the
output size, input names, tokenizer against the vocabulary), per call otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal

import numpy as np
import pytest

from runtimes import ArtifactError, BackendUnavailableError, InputError, load, open_session
from runtimes.common.manifest import MANIFEST_NAME, sha256_file


@pytest.fixture()
def art(artifact_factory, tmp_path):
    dst = tmp_path / "art"
    shutil.copytree(artifact_factory("bert", "text-classification").path, dst)
    return dst


@pytest.fixture(scope="module")
def classifier(artifact_factory):
    return load(artifact_factory("bert", "text-classification").path)


@pytest.fixture(scope="module")
def qa(artifact_factory):
    return load(artifact_factory("bert", "question-answering").path)


def edit_manifest(folder, change):
    data = json.loads((folder / MANIFEST_NAME).read_text())
    change(data)
    (folder / MANIFEST_NAME).write_text(json.dumps(data))


def rehash(folder, name):
    edit_manifest(folder, lambda d: d["files"].update({name: sha256_file(folder / name)}))


# -- tampered artifacts: refused at load -------------------------------------------------------------

def test_edited_labels_in_config(art):
    config = json.loads((art / "config.json").read_text())
    config["id2label"] = {"0": "positive", "1": "neutral", "2": "negative"}  # swapped: silently wrong answers
    (art / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match=re.escape("config.json does not match its manifest")):
        load(art)
    rehash(art, "config.json")  # even with a matching hash, config and manifest must agree
    with pytest.raises(ArtifactError, match="id2label differs from the manifest's labels"):
        load(art)


def test_swapped_tokenizer(art, artifact_factory):
    shutil.copyfile(artifact_factory("roberta", "text-classification").path / "tokenizer.json", art / "tokenizer.json")
    with pytest.raises(ArtifactError, match=re.escape("tokenizer.json does not match its manifest")):
        load(art)
    rehash(art, "tokenizer.json")
    with pytest.raises(ArtifactError, match="does not belong to this model"):
        load(art)


@pytest.mark.parametrize("name", ["../model.onnx", "/etc/passwd", "sub/model.onnx", "..", ""])
def test_manifest_paths_must_be_plain_names(art, name):
    edit_manifest(art, lambda d: (d.update(model_file=name), d["files"].update({name: "0" * 64})))
    with pytest.raises(ArtifactError, match="not a plain file name"):
        load(art)


def test_symlink_leaving_the_folder(art, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.move(art / "model.onnx", outside)
    (art / "model.onnx").symlink_to(outside)
    with pytest.raises(ArtifactError, match="points outside the artifact folder"):
        load(art)


def test_model_file_is_a_fifo(art):
    (art / "model.onnx").unlink()
    os.mkfifo(art / "model.onnx")
    signal.alarm(30)  # a FIFO opened for reading would block forever
    try:
        with pytest.raises(ArtifactError, match="not a regular file"):
            load(art)
    finally:
        signal.alarm(0)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(max_length=10**12), "max_length"),
    (lambda d: d.update(max_length=0), "max_length"),
    (lambda d: d.update(vocab_size=-1), "vocab_size"),
    (lambda d: d.update(labels=[]), "labels is empty"),
    (lambda d: d.update(labels=["a", "a", "b"]), "duplicate"),
    (lambda d: d.update(labels=["a", 1, "b"]), "labels"),
    (lambda d: d["files"].update({"model.onnx": "not-a-digest"}), "sha256"),
    (lambda d: d["files"].pop("tokenizer.json"), "tokenizer.json"),
    (lambda d: d.update(schema_version=1), "schema_version 1 is not supported"),
    (lambda d: d.update(task=["text-classification"]), "task"),
])
def test_manifest_types_and_ranges(art, change, message):
    edit_manifest(art, change)
    with pytest.raises(ArtifactError, match=message):
        load(art)


def test_labels_must_match_output_size(art):
    edit_manifest(art, lambda d: d.update(labels=["negative", "positive"]))  # the model has 3 outputs
    config = json.loads((art / "config.json").read_text())
    config["id2label"] = {"0": "negative", "1": "positive"}
    (art / "config.json").write_text(json.dumps(config))
    rehash(art, "config.json")
    with pytest.raises(ArtifactError, match="outputs 3 scores per item but the manifest names 2 labels"):
        load(art)


def test_vocabulary_smaller_than_tokenizer(art):
    edit_manifest(art, lambda d: d.update(vocab_size=10))
    with pytest.raises(ArtifactError, match="does not belong to this model"):
        load(art)


def test_manifest_bombs(art):
    (art / MANIFEST_NAME).write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ArtifactError, match="nested too deeply"):
        load(art)
    with open(art / MANIFEST_NAME, "wb") as fh:
        fh.truncate(20 << 20)
    with pytest.raises(ArtifactError, match="larger than"):
        load(art)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="no such folder"):
        load(tmp_path / "missing")
    with pytest.raises(ArtifactError, match=re.escape("manifest.json is missing")):
        load(tmp_path)


def test_corrupt_model_file(art):
    (art / "model.onnx").write_bytes(b"not a protobuf")
    rehash(art, "model.onnx")
    with pytest.raises(ArtifactError, match=re.escape("onnxruntime cannot load model.onnx")):
        load(art)


def test_corrupt_tokenizer(art):
    (art / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    rehash(art, "tokenizer.json")
    with pytest.raises(ArtifactError, match="cannot be read as a tokenizer"):
        load(art)


# -- hostile inputs to a loaded pipeline -------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("fine \ud800 text", "not valid Unicode"),
    (["ok", "also \udcff"], r"texts\[1\] is not valid Unicode"),
    (b"bytes", "got bytes"),
    ([["nested"]], "is a list, not a string"),
    ("x" * 100_001, "more than the limit of 100,000"),
])
def test_bad_text(classifier, text, message):
    with pytest.raises(InputError, match=message):
        classifier(text)


def test_text_limit_is_configurable(artifact_factory):
    pipe = load(artifact_factory("bert", "text-classification").path, max_chars=None)
    assert pipe("word " * 30_000)["label"] in ("negative", "neutral", "positive")
    with pytest.raises(InputError, match="max_chars"):
        load(artifact_factory("bert", "text-classification").path, max_chars=0)


@pytest.mark.parametrize("words", [50, 55, 58, 61, 64, 200])
def test_long_question_is_an_input_error_not_a_panic(qa, words):
    """A question that leaves no room for overlapping context windows used to panic inside tokenizers."""
    question = " ".join(["the"] * words) + "?"
    context = "the film was great and the report was written by ada in paris " * 3
    try:
        answer = qa(question=question, context=context)
    except InputError as exc:
        assert "question 0 is too long" in str(exc)
    else:
        assert set(answer) == {"answer", "score", "start", "end"}


def test_long_question_with_short_context_still_answers(qa):
    answer = qa(question=" ".join(["the"] * 52) + "?", context="ada")
    assert answer["answer"] in ("", "ada")


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 0}, "top_k"),
    ({"top_k": True}, "top_k"),
    ({"top_k": 1.5}, "top_k"),
])
def test_bad_call_options(classifier, kwargs, message):
    with pytest.raises(InputError, match=message):
        classifier("fine", **kwargs)


def test_bad_qa_and_ner_options(qa, artifact_factory):
    with pytest.raises(InputError, match="max_answer_len"):
        qa(question="who?", context="ada", max_answer_len=0)
    with pytest.raises(InputError, match="got 2 questions but 1 contexts"):
        qa(question=["who?", "what?"], context=["ada"])
    ner = load(artifact_factory("bert", "token-classification").path)
    with pytest.raises(InputError, match="ignore_labels"):
        ner("ada in paris", ignore_labels="O")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": True}, InputError, "batch_size"),
    ({"batch_size": 0}, InputError, "batch_size"),
    ({"threads": 2**70}, InputError, "threads"),
    ({"threads": "2"}, InputError, "threads"),
    ({"backend": ["onnxruntime"]}, InputError, "backend must be a string"),
    ({"backend": "tflite"}, BackendUnavailableError, "unknown backend"),
    ({"device": "tpu"}, InputError, "unknown device"),
])
def test_bad_load_options(artifact_factory, kwargs, error, message):
    with pytest.raises(error, match=message):
        load(artifact_factory("bert", "text-classification").path, **kwargs)


@pytest.mark.parametrize("feeds, message", [
    ({"input_ids": np.ones((1, 4), dtype=np.float32)}, "numpy array of integers"),
    ({"input_ids": [[1, 2, 3]]}, "numpy array of integers"),
    ({"input_ids": np.ones((1, 2, 3), dtype=np.int64)}, r"\(batch, sequence\)"),
    ({"input_ids": np.ones((0, 3), dtype=np.int64)}, "non-empty"),
    ({"input_ids": np.full((1, 3), 10**6, dtype=np.int64)}, "vocabulary"),
    ({"input_ids": np.full((1, 3), -1, dtype=np.int64)}, "vocabulary"),
    ({"input_ids": np.ones((1, 65), dtype=np.int64)}, "exceeds the model's window"),
    ({}, "missing model input"),
    ("not a mapping", "feeds must be a mapping"),
])
def test_raw_session_feeds(artifact_factory, feeds, message):
    _, session = open_session(artifact_factory("bert", "text-classification").path)
    if isinstance(feeds, dict) and feeds:
        ids = feeds["input_ids"]
        shape = ids.shape if isinstance(ids, np.ndarray) and ids.ndim == 2 else (1, 3)
        feeds = {**{n: np.ones(shape, dtype=np.int64) for n in session.input_names}, **feeds}
    with pytest.raises(InputError, match=message):
        session.run(feeds)


def test_raw_session_mismatched_shapes_and_int32(artifact_factory):
    _, session = open_session(artifact_factory("bert", "text-classification").path)
    feeds = {n: np.ones((1, 4), dtype=np.int32) for n in session.input_names}
    assert session.run(feeds)["logits"].shape == (1, 3)  # any integer dtype is accepted
    feeds["attention_mask"] = np.ones((1, 5), dtype=np.int64)
    with pytest.raises(InputError, match="different shapes"):
        session.run(feeds)


def test_telemetry_is_off_unless_asked(tmp_path):
    import subprocess
    import sys

    probe = "import os, runtimes.embedded.backends.onnxruntime; print(os.environ.get('ORT_DISABLE_TELEMETRY'))"
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "EDGE_TELEMETRY")}
    off = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    on = subprocess.run([sys.executable, "-c", probe], env={**env, "EDGE_TELEMETRY": "1"}, capture_output=True,
                        text=True, check=True)
    assert off.stdout.strip() == "1" and on.stdout.strip() == "None"


def test_load_takes_a_folder_path_and_says_so(tmp_path):
    for wrong in (None, 123, ["a"]):
        with pytest.raises(InputError, match="takes an artifact folder's path"):
            load(wrong)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ArtifactError, match=r"is not an artifact folder \(a file\)"):
        load(tmp_path / "afile")
