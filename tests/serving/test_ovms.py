"""OpenVINO Model Server repositories: layout and config.json checked against OVMS's config schema."""

from __future__ import annotations

import json

import pytest

from runtimes.serving import ServingError
from runtimes.serving.ovms import OvmsOptions, export_ovms_repository

from .conftest import needs_serve_extra

pytestmark = needs_serve_extra

# The part of OVMS's config.json schema (openvinotoolkit/model_server, src/schema.cpp, MODELS_CONFIG_SCHEMA)
# that a model list uses, restated here: OVMS validates config.json against it at start and on reload,
# and refuses unknown keys at both levels.
_MODEL_CONFIG = {
    "type": "object",
    "required": ["name", "base_path"],
    "properties": {
        "name": {"type": "string"}, "base_path": {"type": "string"},
        "batch_size": {"type": ["integer", "string"], "minimum": 0},
        "model_version_policy": {"type": "object"}, "shape": {"type": ["object", "string"]},
        "nireq": {"type": "integer", "minimum": 0}, "target_device": {"type": "string"},
        "plugin_config": {"type": "object"}, "stateful": {"type": "boolean"},
        "idle_sequence_cleanup": {"type": "boolean"}, "low_latency_transformation": {"type": "boolean"},
        "max_sequence_number": {"type": "integer", "minimum": 0},
        "custom_loader_options": {"type": "object"},
    },
    "additionalProperties": False,
}
OVMS_CONFIG_SCHEMA = {
    "type": "object",
    "required": ["model_config_list"],
    "properties": {
        "model_config_list": {"type": "array", "items": {
            "type": "object", "required": ["config"], "properties": {"config": _MODEL_CONFIG},
            "additionalProperties": False}},
        "custom_loader_config_list": {"type": "array"},
        "pipeline_config_list": {"type": "array"},
        "custom_node_library_config_list": {"type": "array"},
    },
    "additionalProperties": False,
}


def check_repository(repo):
    """config.json valid; each model's base_path holds numeric version folders with one model each."""
    import jsonschema

    document = json.loads((repo / "config.json").read_text())
    jsonschema.validate(document, OVMS_CONFIG_SCHEMA)
    for entry in document["model_config_list"]:
        base = repo / entry["config"]["base_path"]
        versions = [p for p in base.iterdir() if p.is_dir()]
        assert versions and all(p.name.isdigit() and int(p.name) > 0 for p in versions)
        for version in versions:
            names = sorted(p.name for p in version.iterdir())
            assert names in (["model.bin", "model.xml"], ["model.onnx"]), names
    return document


def test_ir_and_onnx_models_share_one_repository(ir_artifact, artifact_factory, tmp_path):
    ir = export_ovms_repository(ir_artifact.path, tmp_path, OvmsOptions(name="sentiment", nireq=2, threads=2))
    onnx = export_ovms_repository(artifact_factory("bert", "token-classification").path, tmp_path,
                                  OvmsOptions(name="ner", performance_hint="THROUGHPUT"))
    document = check_repository(tmp_path)
    assert [e["config"]["name"] for e in document["model_config_list"]] == ["sentiment", "ner"]
    sentiment = document["model_config_list"][0]["config"]
    assert sentiment == {"name": "sentiment", "base_path": "sentiment", "target_device": "CPU", "nireq": 2,
                         "plugin_config": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                           "INFERENCE_NUM_THREADS": 2}}
    assert ir.model_path.read_bytes() == (ir_artifact.path / ir_artifact.manifest.model_file).read_bytes()
    assert onnx.model_path.name == "model.onnx"


def test_schema_catches_a_wrong_entry(tmp_path):
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"model_config_list": [{"config": {"name": "m", "base_path": "m", "device": "CPU"}}]},
                            OVMS_CONFIG_SCHEMA)


def test_existing_models_are_kept_and_replaced_only_on_request(ir_artifact, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_config_list": [{"config": {"name": "other", "base_path": "/models/other"}}]}))
    export_ovms_repository(ir_artifact.path, tmp_path, OvmsOptions(name="m"))
    with pytest.raises(ServingError, match="`overwrite`"):
        export_ovms_repository(ir_artifact.path, tmp_path, OvmsOptions(name="m"))
    export_ovms_repository(ir_artifact.path, tmp_path, OvmsOptions(name="m", nireq=4), overwrite=True)
    entries = json.loads((tmp_path / "config.json").read_text())["model_config_list"]
    assert [(e["config"]["name"], e["config"].get("nireq")) for e in entries] == [("other", None), ("m", 4)]
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ServingError, match="not valid JSON"):
        export_ovms_repository(ir_artifact.path, tmp_path, OvmsOptions(name="n"))
    with pytest.raises(ServingError, match=r"PERFORMANCE|performance_hint"):
        OvmsOptions(performance_hint="FAST")


def test_a_checkpoint_or_an_artifact_is_never_taken_for_a_repository(ir_artifact, checkpoint_factory, tmp_path):
    import shutil

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(checkpoint_factory("bert", "text-classification"), checkpoint)
    config = (checkpoint / "config.json").read_bytes()
    with pytest.raises(ServingError, match="checkpoint's folder, not a model repository"):
        export_ovms_repository(ir_artifact.path, checkpoint, OvmsOptions(name="m"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"theme": "dark"}')
    with pytest.raises(ServingError, match="not an OVMS config"):
        export_ovms_repository(ir_artifact.path, tmp_path / "other", OvmsOptions(name="m"))
    assert (tmp_path / "other" / "config.json").read_text() == '{"theme": "dark"}'
    assert (checkpoint / "config.json").read_bytes() == config and not (checkpoint / "m").exists()
    artifact = tmp_path / "art"
    shutil.copytree(ir_artifact.path, artifact)
    files = sorted(p.name for p in artifact.iterdir())
    with pytest.raises(ServingError, match="artifact's folder"):
        export_ovms_repository(ir_artifact.path, artifact, OvmsOptions(name="m"))
    assert sorted(p.name for p in artifact.iterdir()) == files
    (tmp_path / "repo" / "notes").mkdir(parents=True)
    (tmp_path / "repo" / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ServingError, match="not a model folder for OVMS"):
        export_ovms_repository(ir_artifact.path, tmp_path / "repo", OvmsOptions(name="notes"), overwrite=True)
    assert (tmp_path / "repo" / "notes" / "todo.txt").read_text() == "mine"
