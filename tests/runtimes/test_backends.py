"""Backend selection and the non-default backends. GPU ones skip with a reason where absent."""

import logging

import numpy as np
import pytest

from runtimes import BackendUnavailableError, Device, InputError, get_backend, load

has_openvino = get_backend("openvino").available()
has_cuda = Device.CUDA in get_backend("onnxruntime").devices()
has_trt = Device.CUDA in get_backend("tensorrt").devices()


def test_auto_picks_and_says_which(artifact_factory, caplog):
    with caplog.at_level(logging.INFO, logger="runtimes"):
        pipe = load(artifact_factory("bert", "text-classification").path)
    expected = "cuda" if has_cuda else "cpu"
    assert (pipe.backend, pipe.device) == ("onnxruntime", expected)
    assert f"picked onnxruntime on {expected}" in caplog.text


def test_unknown_backend_and_device(artifact_factory):
    path = artifact_factory("bert", "text-classification").path
    with pytest.raises(BackendUnavailableError, match="unknown backend 'tflite'"):
        load(path, backend="tflite")
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        load(path, device="tpu")


@pytest.mark.skipif(has_cuda, reason="this machine has CUDA; the missing-device error cannot be seen")
def test_missing_device_is_an_error_not_a_fallback(artifact_factory):
    path = artifact_factory("bert", "text-classification").path
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        load(path, backend="onnxruntime", device="cuda")
    with pytest.raises(BackendUnavailableError, match=r"no installed backend .* on cuda"):
        load(path, device="cuda")
    with pytest.raises(BackendUnavailableError):
        load(path, backend="tensorrt", device="cuda")


def _same_predictions(path, tolerance=1e-4, **kwargs):
    texts = ["a fine film", "Überraschend gut 😀", "", "word " * 500]
    ref, got = load(path, backend="onnxruntime")(texts), load(path, **kwargs)(texts)
    assert [r["label"] for r in ref] == [g["label"] for g in got]
    assert [r["score"] for r in ref] == pytest.approx([g["score"] for g in got], abs=tolerance)


@pytest.mark.skipif(not has_openvino, reason="openvino is not installed (pip install openvino)")
def test_openvino_cpu_matches_onnxruntime(artifact_factory):
    path = artifact_factory("roberta", "text-classification").path
    _same_predictions(path, backend="openvino", device="cpu", threads=1)
    pipe = load(artifact_factory("bert", "token-classification").path, backend="openvino")
    assert pipe.backend == "openvino" and isinstance(pipe(["Ada in Paris"])[0], list)


@pytest.mark.skipif(not has_cuda, reason="no CUDA device / onnxruntime-gpu on this machine")
def test_onnxruntime_cuda_matches_cpu(artifact_factory):
    _same_predictions(artifact_factory("bert", "text-classification").path,
                      backend="onnxruntime", device="cuda")


@pytest.mark.skipif(not has_trt, reason="no TensorRT execution provider on this machine")
def test_tensorrt_matches_cpu(artifact_factory):
    _same_predictions(artifact_factory("bert", "text-classification").path,
                      backend="tensorrt", device="cuda")


def test_session_outputs_are_numpy(artifact_factory):
    pipe = load(artifact_factory("bert", "question-answering").path)
    feeds = {n: np.ones((1, 5), dtype=np.int64) for n in pipe.session.input_names}
    out = pipe.session.run(feeds)
    assert set(out) == {"start_logits", "end_logits"} and out["start_logits"].shape == (1, 5)


@pytest.mark.skipif(not has_cuda, reason="no CUDA device / onnxruntime-gpu on this machine")
def test_fp16_artifact_on_cuda(checkpoint_factory, tmp_path):
    from toolchain import optimise, preset

    artifact = optimise(checkpoint_factory("bert", "text-classification"), tmp_path / "fp16",
                        recipe=preset("fp16", "cuda"))
    assert artifact.manifest.lineage[-1].details["speedup_vs_parent_cuda"] is not None
    # fp16 kernels differ between CPU and GPU: same labels, scores close
    _same_predictions(artifact.path, tolerance=1e-2, backend="onnxruntime", device="cuda")
