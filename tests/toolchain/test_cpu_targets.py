"""Int8 follows the CPU that will serve: each class's format, with every branch run here by faking the detected CPU.

Oracles: the weights' integer range in the quantised graphs (7-bit where u8 x s8 sums saturate, full 8-bit
where they cannot), parity with PyTorch, and what the manifest, the summary and `runtimes.load` say.
"""

import json
import logging
import os
import platform
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bench.cli.optimise import main as cli_main
from runtimes import load
from runtimes.common.manifest import Manifest
from toolchain import DynamicInt8, ExportOnnx, FuseGraph, OpenVinoInt8, OpenVinoIR, Recipe, StaticInt8, optimise
from toolchain.recipe import preset

from .test_steps import CALIBRATION

CPUS = ["avx2", "avx512", "avx512_vnni", "arm64"]
SATURATING = {"avx2", "avx512"}


def onnx_int8_weight_peak(path) -> int:
    """The largest |value| of the graph's int8 initializers (the quantised weights)."""
    graph = onnx.load(str(path)).graph
    return max(int(np.abs(numpy_helper.to_array(i).astype(np.int32)).max()) for i in graph.initializer
               if i.data_type == onnx.TensorProto.INT8)


def openvino_matmul_weight_peak(path) -> int:
    """The largest |value| of the int8 constants that feed a MatMul (embedding tables are looked up, not multiplied)."""
    import openvino as ov

    peak = 0
    for op in ov.Core().read_model(str(path)).get_ops():
        if op.get_type_name() != "Constant" or op.get_element_type().get_type_name() != "i8":
            continue
        node, feeds_matmul = op, False
        for _ in range(4):  # Constant -> Convert -> (Subtract) -> Multiply -> MatMul
            targets = list(node.outputs()[0].get_target_inputs())
            if not targets:
                break
            node = targets[0].get_node()
            feeds_matmul = feeds_matmul or node.get_type_name() == "MatMul"
        if feeds_matmul:
            peak = max(peak, int(np.abs(op.get_data().astype(np.int32)).max()))
    return peak


@pytest.mark.parametrize("target", CPUS)
def test_dynamic_int8_format_follows_the_named_cpu(bert_cls, tmp_path, fake_cpu, target):
    fake_cpu("avx512_vnni")  # the build machine; the artifact is for `target`
    a = optimise(bert_cls, tmp_path / "a", recipe=preset("int8", f"cpu:{target}"))
    details = a.manifest.lineage[-1].details
    assert details["reduce_range"] is (target in SATURATING)
    assert details["cpu_target"] == target and details["built_on_isa"] == "avx512_vnni"
    # 7-bit weights where VPMADDUBSW sums two u8*s8 products in int16; full range elsewhere
    peak = onnx_int8_weight_peak(a.model_path)
    assert peak <= 64 if target in SATURATING else peak > 64
    assert a.manifest.parity[-1].passed
    # speed is measured only on the class it is for
    measured = details["speedup_vs_parent_cpu"]
    assert (measured is not None) == (target == "avx512_vnni")
    assert a.manifest.cpu.int8_target == target and a.manifest.cpu.requested == target
    assert a.manifest.cpu.built_on_isa == "avx512_vnni"


@pytest.mark.parametrize("machine", CPUS)
def test_native_int8_is_made_for_the_machine_it_is_built_on(bert_cls, tmp_path, fake_cpu, machine):
    fake_cpu(machine)
    recipe = Recipe(steps=[ExportOnnx(), StaticInt8(calibration_samples=16)])
    a = optimise(bert_cls, tmp_path / "a", recipe=recipe, dataset=CALIBRATION)
    details = a.manifest.lineage[-1].details
    assert details["cpu_requested"] == "native" and details["cpu_target"] == machine
    assert details["reduce_range"] is (machine in SATURATING)
    peak = onnx_int8_weight_peak(a.model_path)
    assert peak <= 64 if machine in SATURATING else peak > 64
    assert details["speedup_vs_parent_cpu"] > 0  # native: this machine's class, so measured
    assert a.manifest.parity[-1].passed
    assert Manifest.read(a.path).cpu == a.manifest.cpu  # the record round-trips through manifest.json


@pytest.mark.parametrize("target", ["avx2", "avx512_vnni"])
def test_nncf_int8_overflow_fix_follows_the_cpu(bert_cls, tmp_path, target):
    recipe = Recipe(target="openvino", steps=[ExportOnnx(), OpenVinoIR(), OpenVinoInt8(calibration_samples=16,
                                                                                      cpu=target)])
    a = optimise(bert_cls, tmp_path / "a", recipe=recipe, dataset=CALIBRATION)
    details = a.manifest.lineage[-1].details
    assert details["overflow_fix"] == ("enable" if target == "avx2" else "disable")
    peak = openvino_matmul_weight_peak(a.model_path)
    assert peak <= 64 if target == "avx2" else peak > 64
    assert a.manifest.parity[-1].passed and a.manifest.cpu.int8_target == target


def test_a_shared_cache_keeps_each_machines_native_int8_apart(bert_cls, tmp_path, fake_cpu):
    from toolchain.cache import StepCache

    cache = StepCache(tmp_path / "cache")
    recipe = Recipe(steps=[ExportOnnx(), StaticInt8(calibration_samples=16)])
    fake_cpu("avx512_vnni")
    vnni = optimise(bert_cls, tmp_path / "vnni", recipe=recipe, dataset=CALIBRATION, cache=cache)
    fake_cpu("avx2")
    avx2 = optimise(bert_cls, tmp_path / "avx2", recipe=recipe, dataset=CALIBRATION, cache=cache)
    assert not avx2.manifest.lineage[-1].cached and avx2.manifest.lineage[-1].details["reduce_range"] is True
    again = optimise(bert_cls, tmp_path / "again", recipe=recipe, dataset=CALIBRATION, cache=cache)
    assert again.manifest.lineage[-1].cached and again.manifest.model_sha256 == avx2.manifest.model_sha256
    assert vnni.manifest.model_sha256 != avx2.manifest.model_sha256


def test_cli_names_the_target_and_load_warns_once_on_another_class(bert_cls, tmp_path, fake_cpu, capsys):
    fake_cpu("avx512_vnni")
    for target in ("cpu:avx2", "cpu:arm64"):
        assert cli_main([str(bert_cls), "--out", str(tmp_path / target.replace(":", "-")), "--target", target]) == 0
        shown = capsys.readouterr().out
        assert f"int8 made for: {target} (another CPU: checked here, speed not measured here" in shown
        assert "speedup vs parent cpu: None" in shown
    assert cli_main([str(bert_cls), "--out", str(tmp_path / "native")]) == 0
    assert "int8 made for: cpu:avx512_vnni (the CPU it was built on" in capsys.readouterr().out
    load(tmp_path / "native")  # made for this class: no warning
    for _ in range(2):
        load(tmp_path / "cpu-avx2")
    # (the CLI replaced the root logger's handlers, so the warning reaches stderr through logging's last resort)
    err = capsys.readouterr().err
    assert err.count("was tuned for") == 1 and "tuned for non-VNNI x86 int8 (cpu:avx2)" in err


@pytest.mark.parametrize(("target", "error"), [
    ("cpu:sse", "unknown CPU 'sse'"), ("cuda:avx2", "cuda takes no CPU"), ("tpu", "unknown target 'tpu'")])
def test_cli_refuses_an_unknown_target_in_one_line(bert_cls, tmp_path, capsys, target, error):
    assert cli_main([str(bert_cls), "--out", str(tmp_path / "a"), "--target", target]) == 2
    err = capsys.readouterr().err
    assert error in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_int8_that_does_not_pay_here_says_so_with_the_ratio(bert_cls, tmp_path, monkeypatch, caplog):
    """Whatever this CPU makes of the tiny model, a ratio below 1 is reported as a warning naming it."""
    import toolchain.steps.cpu_target as cpu_target

    class Slower:
        def __init__(self, p50_ms):
            self.p50_ms = p50_ms

    class Times:
        def __init__(self, p50_ms):
            self._p50 = p50_ms

        def stats(self):
            return Slower(self._p50)

    monkeypatch.setattr("runtimes.measure.time_interleaved",
                        lambda runs, feeds, warmup: {"parent": Times(1.0), "child": Times(1.25)})
    with caplog.at_level(logging.WARNING, logger=cpu_target.__name__):
        a = optimise(bert_cls, tmp_path / "a", recipe=Recipe(steps=[ExportOnnx(), FuseGraph(), DynamicInt8()]))
    assert a.manifest.lineage[-1].details["speedup_vs_parent_cpu"] == 0.8
    assert any("dynamic int8 made the model slower on this cpu (x0.80" in r.getMessage() for r in caplog.records)


_AVX2_PARITY = """
import json, sys
from pathlib import Path
from toolchain import ExportOnnx, OpenVinoInt8, OpenVinoIR, Recipe, TextDataset, optimise
from toolchain.parity import PARITY_TEXTS
found = {}
for cpu in ("avx2", "avx512_vnni"):
    int8 = OpenVinoInt8(cpu=cpu, calibration_samples=32)
    recipe = Recipe(target="openvino", steps=[ExportOnnx(), OpenVinoIR(), int8])
    a = optimise(sys.argv[1], Path(sys.argv[2]) / cpu, recipe=recipe, dataset=TextDataset(tuple(PARITY_TEXTS) * 6))
    found[cpu] = {"max_abs_diff": a.manifest.parity[-1].outputs[0].max_abs_diff,
                  "kernels": a.manifest.lineage[-1].details["matmul_kernels"]}
print(json.dumps(found))
"""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN's AVX2 kernels are x86's")
def test_on_avx2_kernels_nncf_int8_made_for_avx2_saturates_less(bert_cls, tmp_path):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes OpenVINO pick the kernels an AVX2 CPU runs (on one, it changes nothing), so
    this runs the saturating instruction for real on any x86 machine: int8 made for avx2 (overflow fix) must follow
    PyTorch far more closely there than int8 made for a VNNI CPU, whose full-range weights overflow the int16 sums."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", _AVX2_PARITY, str(bert_cls), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert all("avx512" not in kernel for kernel in found["avx2"]["kernels"])  # AVX2 kernels ran
    assert found["avx2"]["max_abs_diff"] < 0.5 * found["avx512_vnni"]["max_abs_diff"], found
