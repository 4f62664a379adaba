"""Triton model repositories, checked with Triton's own ModelConfig protobuf (tritonclient), and the
tokenising client checked against the generated config's contract."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from runtimes import ArtifactError, load
from runtimes.serving import ServingError
from runtimes.serving.remote import bucket_width, load_remote
from runtimes.serving.triton import TritonOptions, export_triton_repository, render_config, validate_config

from .conftest import needs_serve_extra

pytestmark = needs_serve_extra


def parsed(export):
    return validate_config(export.config_path)


@pytest.mark.parametrize("task, outputs", [
    ("text-classification", {"logits": [3]}),
    ("token-classification", {"logits": [-1, 5]}),
    ("question-answering", {"start_logits": [-1], "end_logits": [-1]}),
])
def test_onnx_repository_follows_the_manifest(artifact_factory, tmp_path, task, outputs):
    from tritonclient.grpc import model_config_pb2 as pb

    art = artifact_factory("bert", task)
    options = TritonOptions(name="m", max_batch_size=16, max_queue_delay_us=500, instances=2, threads=2)
    export = export_triton_repository(art.path, tmp_path, options)
    config = parsed(export)
    assert export.validated and export.backend == "onnxruntime"
    assert (config.name, config.backend, config.max_batch_size) == ("m", "onnxruntime", 16)
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        (n, pb.TYPE_INT64, [-1]) for n in art.manifest.signature.input_names]
    assert {o.name: list(o.dims) for o in config.output} == outputs
    assert all(o.data_type == pb.TYPE_FP32 for o in config.output)
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, pb.ModelInstanceGroup.KIND_CPU)]
    assert config.parameters["intra_op_thread_count"].string_value == "2"
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    assert (tmp_path / "m" / "1" / "model.onnx").read_bytes() == art.model_path.read_bytes()
    if task == "text-classification":
        assert config.output[0].label_filename == "labels.txt"
        assert (tmp_path / "m" / "labels.txt").read_text().split() == list(art.manifest.labels)


def test_openvino_ir_repository(ir_artifact, tmp_path):
    export = export_triton_repository(ir_artifact.path, tmp_path, TritonOptions(name="ir"))
    config = parsed(export)
    assert config.backend == "openvino" and config.max_batch_size == 32
    assert sorted(p.name for p in (tmp_path / "ir" / "1").iterdir()) == ["model.bin", "model.xml"]
    with pytest.raises(ServingError, match="OpenVINO backend"):
        export_triton_repository(ir_artifact.path, tmp_path / "x", TritonOptions(accelerator="tensorrt"))


def test_accelerators_follow_the_target(artifact_factory):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    manifest = artifact_factory("bert", "text-classification").manifest
    cuda = dataclasses.replace(manifest, recipe={**manifest.recipe, "target": "cuda"})
    config = text_format.Parse(render_config(cuda, "m", TritonOptions()), pb.ModelConfig())
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP32"
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    config = text_format.Parse(render_config(manifest, "m", TritonOptions(accelerator="openvino")), pb.ModelConfig())
    assert config.optimization.execution_accelerators.cpu_execution_accelerator[0].name == "openvino"
    with pytest.raises(ServingError, match="GPU instances"):
        render_config(manifest, "m", TritonOptions(accelerator="tensorrt", kind="cpu"))


def test_refusals_leave_nothing_behind(artifact_factory, tmp_path):
    art = artifact_factory("bert", "text-classification")
    export_triton_repository(art.path, tmp_path, TritonOptions(name="m"))
    with pytest.raises(ServingError, match="`overwrite`"):
        export_triton_repository(art.path, tmp_path, TritonOptions(name="m"))
    with pytest.raises(ServingError, match="max_batch_size"):
        TritonOptions(max_batch_size=0)
    with pytest.raises(ServingError, match="threads must be a positive integer, got True"):
        TritonOptions(threads=True)  # a bool is not a thread count
    tampered = tmp_path / "tampered"
    shutil.copytree(art.path, tampered)
    with open(tampered / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactError, match="does not match"):
        export_triton_repository(tampered, tmp_path / "repo", TritonOptions(name="t"))
    assert not (tmp_path / "repo" / "t").exists()


def test_a_config_triton_would_reject_fails_validation(tmp_path):
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "m"\nmax_batch_size: 8\ninput [ { name: "x" data_type: TYPE_WHATEVER dims: [ -1 ] } ]\n')
    with pytest.raises(ArtifactError, match="not a valid Triton model config"):
        validate_config(bad)


class ContractServer:
    """Stands in for Triton's HTTP endpoint in-process: each request is checked against the parsed
    config.pbtxt the way Triton checks it (known input names, datatype, dims with -1 wildcards,
    batch <= max_batch_size), decoded from tritonclient's binary tensors, and run on the repository's
    own model file with ONNX Runtime. Not a server test: a check of what our client sends."""

    def __init__(self, export):
        import onnxruntime as ort

        self.config = validate_config(export.config_path)
        self.session = ort.InferenceSession(str(export.model_path), providers=["CPUExecutionProvider"])
        self.shapes_seen: list[tuple[int, ...]] = []

    def infer(self, model_name, inputs, outputs=None, **_):
        from tritonclient.grpc import model_config_pb2 as pb
        from tritonclient.utils import triton_to_np_dtype

        assert model_name == self.config.name
        declared = {i.name: i for i in self.config.input}
        assert sorted(t.name() for t in inputs) == sorted(declared)
        feeds = {}
        for tensor in inputs:
            spec = declared[tensor.name()]
            shape = tensor.shape()
            assert tensor.datatype() == pb.DataType.Name(spec.data_type).removeprefix("TYPE_")
            assert 1 <= shape[0] <= self.config.max_batch_size
            assert len(shape[1:]) == len(spec.dims)
            assert all(d == -1 or d == s for d, s in zip(spec.dims, shape[1:]))
            data = np.frombuffer(tensor._get_binary_data(), dtype=triton_to_np_dtype(tensor.datatype()))
            feeds[tensor.name()] = data.reshape(shape)
        self.shapes_seen.append(tuple(feeds["input_ids"].shape))
        names = [o.name() for o in outputs] if outputs else [o.name for o in self.config.output]
        return _Result(dict(zip(names, self.session.run(names, feeds))))


class _Result:
    def __init__(self, arrays):
        self.arrays = arrays

    def as_numpy(self, name):
        return self.arrays[name]


@pytest.mark.parametrize("task", ["text-classification", "token-classification", "question-answering"])
def test_tokenising_client_matches_the_local_pipeline(artifact_factory, tmp_path, task):
    art = artifact_factory("bert", task)
    export = export_triton_repository(art.path, tmp_path, TritonOptions(name="m", max_batch_size=8))
    server = ContractServer(export)
    remote = load_remote(art.path, url="127.0.0.1:8000", model_name="m", client=server)
    local = load(art.path)
    if task == "question-answering":
        kwargs = dict(question=["who wrote it?", "where?"],
                      context=["the report was written by ada in paris", "in paris " * 40])
        got, want = remote(**kwargs), local(**kwargs)
    else:
        texts = ["the film was great", "Überraschend gut 😀", "", "bad " * 80]
        got, want = remote(texts), local(texts)
    assert _labels(got) == _labels(want)
    assert np.allclose(_scores(got), _scores(want), atol=1e-5)
    assert all(shape[1] in (16, 32, 64) for shape in server.shapes_seen), server.shapes_seen


def test_bucket_widths():
    assert [bucket_width(w, 64) for w in (1, 16, 17, 33, 64)] == [16, 16, 32, 64, 64]
    assert bucket_width(100, 512) == 128 and bucket_width(70, 64) == 70


def _labels(value):
    if isinstance(value, dict):
        return {k: _labels(v) for k, v in value.items() if k != "score"}
    if isinstance(value, list):
        return [_labels(v) for v in value]
    return value


def _scores(value):
    if isinstance(value, dict):
        return [value["score"]] if "score" in value else []
    if isinstance(value, list):
        return [s for v in value for s in _scores(v)]
    return []


def _tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_the_artifact_or_a_folder_that_is_not_a_model(artifact_factory, tmp_path):
    art = artifact_factory("bert", "text-classification")
    models = tmp_path / "models"
    shutil.copytree(art.path, models / "sentiment")
    before = _tree(models / "sentiment")
    # the default name is the artifact folder's: its parent as --repo points at the artifact itself
    with pytest.raises(ServingError, match="is the artifact being exported"):
        export_triton_repository(models / "sentiment", models, TritonOptions(), overwrite=True)
    assert _tree(models / "sentiment") == before
    (models / "photos").mkdir()
    (models / "photos" / "a.txt").write_text("mine")
    with pytest.raises(ServingError, match="not a model folder for Triton"):
        export_triton_repository(art.path, models, TritonOptions(name="photos"), overwrite=True)
    assert (models / "photos" / "a.txt").read_text() == "mine"
    with pytest.raises(ServingError, match="artifact's folder, not a model repository"):
        export_triton_repository(art.path, models / "sentiment", TritonOptions(name="m"))
    assert _tree(models / "sentiment") == before


def test_a_failed_replacement_keeps_the_old_model(artifact_factory, tmp_path):
    art = artifact_factory("bert", "text-classification")
    export_triton_repository(art.path, tmp_path, TritonOptions(name="m"))
    before = _tree(tmp_path / "m")
    tampered = tmp_path / "tampered"
    shutil.copytree(art.path, tampered)
    with open(tampered / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactError, match="does not match"):
        export_triton_repository(tampered, tmp_path, TritonOptions(name="m"), overwrite=True)
    assert _tree(tmp_path / "m") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "tampered"]  # no staging folder left
    export = export_triton_repository(art.path, tmp_path, TritonOptions(name="m", instances=2), overwrite=True)
    assert "count: 2" in export.config_path.read_text() and export.model_path.is_file()
