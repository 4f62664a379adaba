"""The manifest's schema: round-trips, strict validation, tamper detection."""

import dataclasses
import json
import re

import pytest

from runtimes import ArtifactError, Manifest
from runtimes.common.manifest import SCHEMA_VERSION, verify_files


def test_round_trip(artifact_factory):
    m = artifact_factory("roberta", "question-answering").manifest
    again = Manifest.from_json(m.to_json())
    assert again == m
    assert json.loads(again.to_json()) == json.loads(m.to_json())
    assert again.schema_version == SCHEMA_VERSION


def test_unknown_schema_version(artifact_factory):
    data = artifact_factory("bert", "text-classification").manifest.to_dict()
    with pytest.raises(ArtifactError, match="schema_version 99 is not supported"):
        Manifest.from_dict({**data, "schema_version": 99})


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d.pop("task"), "missing field 'task'"),
        (lambda d: d.update(task="translation"), "not one of"),
        (lambda d: d.update(max_length="long"), "max_length: expected int"),
        (lambda d: d["signature"]["inputs"][0].update(shape=[1.5]), "matches none"),
        (lambda d: d["parity"][0].update(samples=None), "samples: expected int"),
    ],
)
def test_strict_validation(artifact_factory, change, message):
    data = json.loads(artifact_factory("bert", "text-classification").manifest.to_json())
    change(data)
    with pytest.raises(ArtifactError, match=message):
        Manifest.from_dict(data)


def test_not_json():
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Manifest.from_json("{")


def test_tampered_model_is_rejected(artifact_factory, tmp_path):
    import shutil

    src = artifact_factory("bert", "text-classification").path
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    manifest = Manifest.read(dst)
    assert verify_files(dst, manifest)["model.onnx"] == (dst / "model.onnx").resolve()
    with open(dst / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        verify_files(dst, manifest)
    (dst / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="file is missing"):
        verify_files(dst, manifest)


def test_missing_manifest(tmp_path):
    with pytest.raises(ArtifactError, match=re.escape("manifest.json is missing")):
        Manifest.read(tmp_path)


def test_write_is_atomic_and_readable(artifact_factory, tmp_path):
    m = artifact_factory("bert", "text-classification").manifest
    updated = dataclasses.replace(m, metrics={"test_accuracy": 0.5})
    updated.write(tmp_path)
    assert Manifest.read(tmp_path).metrics == {"test_accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
