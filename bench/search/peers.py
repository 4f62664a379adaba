"""The peers a search is compared with, built from the same checkpoint and measured in the same run.

- `optimum`: Optimum's documented CPU chain (export, O2, dynamic int8 with the `AutoQuantizationConfig`
  Optimum gives for the CPU: avx2, avx512, avx512_vnni or arm64) in its own virtual environment
  (optimum-onnx pins transformers below 4.58), installed from `bench/search/optimum.lock` once under the
  cache folder. The script it runs is `bench/search/peer_optimum.py`.
- `openvino-nncf`: OpenVINO's own PyTorch conversion, then NNCF post-training int8 with the
  transformer preset, calibrated on the same data as ours: the plain OpenVINO + NNCF path.

Each peer's model is wrapped as an artifact folder (its file, the checkpoint's config and tokenizer,
a manifest that names the peer in its lineage), so that the runtime serves and times it exactly as it
serves ours. A peer that cannot be built is reported as missing, with the reason; never dropped.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtimes.common.cpu import CpuIsa, detect_isa
from runtimes.common.manifest import Manifest, ModelFormat, Signature, StepRecord, TensorSpec
from runtimes.embedded.pipelines import validated

log = logging.getLogger(__name__)

PEERS = ("optimum", "openvino-nncf")
OPTIMUM_LOCK = Path(__file__).with_name("optimum.lock")  # optimum-onnx 0.1.0, transformers 4.57.6, our torch
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class Peer:
    name: str  # as shown in reports
    path: Path | None  # the wrapped artifact; None when the peer is missing
    reason: str = ""  # why it is missing, or what had to be done to make it work
    details: dict[str, Any] = field(default_factory=dict)


def build_peers(names: list[str], checkpoint, calibration, work: Path, venv_root: Path,
                cpu: CpuIsa | None = None) -> list[Peer]:
    """Build each named peer under `work` (reused when already there) for `cpu` (default: this one);
    missing ones say why."""
    cpu = cpu or detect_isa()
    found = []
    for name in names:
        started = time.perf_counter()
        try:
            peer = _optimum(checkpoint, work, venv_root, cpu) if name == "optimum" else _openvino_nncf(
                checkpoint, calibration, work)
        except PeerUnavailable as exc:
            peer = Peer(title(name, cpu), None, str(exc))
        log.info("peer %s: %s (%.0f s)", name, "built" if peer.path else f"missing: {peer.reason}",
                 time.perf_counter() - started)
        found.append(peer)
    return found


def title(name: str, cpu: CpuIsa | None = None) -> str:
    """The peer's name in reports; Optimum's names the quantisation config it was given."""
    return {"optimum": f"Optimum O2 + dynamic int8 ({(cpu or detect_isa()).value})",
            "openvino-nncf": "OpenVINO + NNCF int8 (plain)"}[name]


class PeerUnavailable(Exception):
    pass


def _run(cmd: list[str], timeout: int, what: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"{what} took longer than {timeout} s") from None
    except OSError as exc:
        raise PeerUnavailable(f"{what}: {exc.strerror}") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise PeerUnavailable(f"{what} failed: {lines[-1][:300] if lines else f'exit {done.returncode}'}")
    return done.stdout


def optimum_python(venv_root: Path) -> Path:
    """Optimum's virtual environment (created on first use): its python."""
    import hashlib

    lock = hashlib.sha256(OPTIMUM_LOCK.read_bytes()).hexdigest()[:12]
    venv = venv_root / f"optimum-onnx-0.1.0-{lock}"  # a new lock is a new environment
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python
    log.info("creating Optimum's virtual environment in %s (once; a few minutes)", venv)
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)], 300, "python -m venv")
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(OPTIMUM_LOCK)], 1800,
         f"pip install -r {OPTIMUM_LOCK.name}")
    (venv / ".complete").write_text("ok\n")
    return python


def _optimum(checkpoint, work: Path, venv_root: Path, cpu: CpuIsa) -> Peer:
    out = work / f"optimum-{cpu.value}"
    wrapped = out / "artifact"
    if (wrapped / "manifest.json").is_file():
        return Peer(title("optimum", cpu), wrapped, **json.loads((out / "peer.json").read_text()))
    python = optimum_python(venv_root)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    script = Path(__file__).with_name("peer_optimum.py")
    stdout = _run([str(python), str(script), str(checkpoint.path), checkpoint.task.value, str(out), cpu.value],
                  3600, "Optimum's pipeline")
    result = json.loads(stdout.strip().splitlines()[-1])
    reason = result["workaround"] or ""
    details = {"versions": result["versions"], "workaround": result["workaround"],
               "quantization_config": result["quantization_config"]}
    wrap_artifact([Path(result["o2_int8"])], ModelFormat.ONNX, checkpoint, wrapped, "peer:optimum-o2-int8", details)
    (out / "peer.json").write_text(json.dumps({"reason": reason, "details": details}))
    return Peer(title("optimum", cpu), wrapped, reason, details)


def _openvino_nncf(checkpoint, calibration, work: Path) -> Peer:
    out = work / "openvino-nncf"
    wrapped = out / "artifact"
    if (wrapped / "manifest.json").is_file():
        return Peer(title("openvino-nncf"), wrapped)
    try:
        import nncf
        import openvino as ov
        import torch
    except ImportError as exc:
        raise PeerUnavailable(f"{exc.name} is not installed") from None
    from toolchain.tasks import adapter_for

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    model = checkpoint.load_model()
    names = list(checkpoint.tokenizer.model_input_names)
    example = {k: torch.from_numpy(v) for k, v in checkpoint.encode(["an example input"], names).items()}
    try:
        converted = ov.convert_model(model, example_input=example)
        for port, name in zip(converted.outputs, adapter_for(checkpoint.task).outputs):
            port.get_tensor().set_names({name})
        items = [checkpoint.encode([t], names) for t in calibration.texts[:300]]  # QA: the contexts alone
        quantised = nncf.quantize(converted, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(items))
    except Exception as exc:
        raise PeerUnavailable(f"OpenVINO + NNCF failed: {str(exc).splitlines()[0][:300]}") from None
    ov.save_model(quantised, str(out / "model.xml"), compress_to_fp16=False)
    wrap_artifact([out / "model.xml", out / "model.bin"], ModelFormat.OPENVINO_IR, checkpoint, wrapped,
                  "peer:openvino-nncf-int8", {"openvino": ov.__version__, "nncf": nncf.__version__})
    return Peer(title("openvino-nncf"), wrapped)


def wrap_artifact(model_files: list[Path], fmt: ModelFormat, checkpoint, out: Path, step: str,
                  details: dict[str, Any]) -> Path:
    """An artifact folder around a model file made by another tool: the runtime checks and serves it as ours."""
    from toolchain.api import source_record
    from toolchain.steps.base import StepTimer, hash_folder
    from toolchain.version import __version__

    timer = StepTimer()
    out.mkdir(parents=True)
    model_name = "model.onnx" if fmt is ModelFormat.ONNX else "model.xml"
    shutil.copyfile(model_files[0], out / model_name)
    data_files: tuple[str, ...] = ()
    if fmt is ModelFormat.OPENVINO_IR:
        shutil.copyfile(model_files[1], out / "model.bin")
        data_files = ("model.bin",)
    for name in TOKENIZER_FILES:
        if (checkpoint.path / name).is_file():
            shutil.copyfile(checkpoint.path / name, out / name)
    files = hash_folder(out)
    manifest = Manifest(
        toolchain_version=__version__, created_at=timer.started_at, task=checkpoint.task, format=fmt,
        model_file=model_name, data_files=data_files, max_length=checkpoint.max_length,
        vocab_size=int(checkpoint.config["vocab_size"]), labels=checkpoint.labels, source=checkpoint.source_info,
        signature=_signature(out / model_name, fmt), recipe={"name": step},
        lineage=(source_record(checkpoint), StepRecord(step, fmt.value, {}, checkpoint.sha256, files[model_name],
                                                       timer.started_at, timer.elapsed(), details)),
        parity=(), files=files)
    validated(manifest).write(out)
    return out


def _signature(path: Path, fmt: ModelFormat) -> Signature:
    if fmt is ModelFormat.ONNX:
        from toolchain.steps.export import read_signature

        return read_signature(path)
    import numpy as np
    import openvino as ov

    model = ov.Core().read_model(str(path))

    def spec(port) -> TensorSpec:
        shape = tuple(d.get_length() if d.is_static else f"dim{i}" for i, d in enumerate(port.get_partial_shape()))
        return TensorSpec(port.get_any_name(), np.dtype(port.get_element_type().to_dtype()).name, shape)

    return Signature(tuple(spec(p) for p in model.inputs), tuple(spec(p) for p in model.outputs))
