"""OpenVINO target: convert to OpenVINO IR, and int8 through NNCF post-training quantisation."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field

from runtimes.common.manifest import ModelFormat
from toolchain.compat import quiet_openvino_telemetry
from toolchain.data import DataRole
from toolchain.errors import BackendUnavailableError
from toolchain.stages import Artifact, Stage
from toolchain.steps.base import StepConfig, StepContext, StepTimer, derive, register_step
from toolchain.steps.cpu_target import CpuInt8Step, cpu_details, measured_speedup

log = logging.getLogger(__name__)

IR_FILE, IR_WEIGHTS = "model.xml", "model.bin"


class OpenVinoIR(StepConfig):
    """Convert the ONNX model to OpenVINO IR (model.xml + model.bin), weights kept in fp32."""

    kind: Literal["openvino-ir"] = "openvino-ir"
    consumes = frozenset({Stage.ONNX})  # OpenVINO reads standard ONNX, not ONNX Runtime's fused operators
    produces = Stage.OPENVINO_IR


class OpenVinoInt8(CpuInt8Step):
    """Int8 with NNCF post-training quantisation, calibrated on real texts (transformer preset).

    For a CPU without VNNI (`cpu` avx2 or avx512, or this machine when it is one) NNCF's overflow fix is
    on for every layer: weights use half their 8-bit range, which the saturating u8 x s8 kernels there
    compute exactly. On VNNI and ARM it is off: the full range is exact there and more precise.
    """

    kind: Literal["openvino-int8"] = "openvino-int8"
    consumes = frozenset({Stage.OPENVINO_IR})
    cacheable = True
    calibration_samples: int = Field(default=300, ge=8, le=100_000)
    lossy = True
    needs_data = frozenset({DataRole.CALIBRATION})


def _openvino():
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError("the OpenVINO target needs openvino: pip install openvino") from None
    quiet_openvino_telemetry()  # the converter and NNCF would otherwise report usage to Google Analytics
    return openvino


@register_step(OpenVinoIR)
def convert_openvino_ir(parent: Artifact, cfg: OpenVinoIR, ctx: StepContext) -> Artifact:
    """Convert standard ONNX to OpenVINO IR with `openvino.convert_model`; weights stay fp32."""
    ov = _openvino()
    timer = StepTimer()
    model = ov.convert_model(str(parent.model_path))
    folder = ctx.new_folder("openvino")
    ov.save_model(model, str(folder / IR_FILE), compress_to_fp16=False)
    details = {"openvino": ov.__version__, "operations": len(model.get_ops())}
    return derive(parent, folder, cfg, timer, details, model_file=IR_FILE, data_files=(IR_WEIGHTS,),
                  model_format=ModelFormat.OPENVINO_IR)


@register_step(OpenVinoInt8)
def quantize_openvino_int8(parent: Artifact, cfg: OpenVinoInt8, ctx: StepContext) -> Artifact:
    """NNCF post-training int8 (transformer preset), calibrated on the run's dataset, encoded by the
    latest torch stage's tokenizer."""
    ov = _openvino()
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    except ImportError:
        raise BackendUnavailableError("openvino-int8 needs NNCF: pip install nncf") from None
    timer = StepTimer()
    model = ov.Core().read_model(str(parent.model_path))
    names = parent.manifest.signature.input_names
    texts = ctx.data_for(DataRole.CALIBRATION, cfg.kind).texts[: cfg.calibration_samples]

    def encode(text: str) -> dict:
        return ctx.checkpoint.encode([text], names)

    overflow_fix = OverflowFix.ENABLE if cfg.target.isa.saturates else OverflowFix.DISABLE
    quantised = nncf.quantize(model, nncf.Dataset(list(texts), encode), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(texts),
                              advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow_fix))
    folder = ctx.new_folder("openvino-int8")
    ov.save_model(quantised, str(folder / IR_FILE), compress_to_fp16=False)
    fake_quant = sum(op.get_type_name() == "FakeQuantize" for op in quantised.get_ops())
    details = {**cpu_details(cfg), "overflow_fix": overflow_fix.value, "nncf": nncf.__version__,
               "calibration_samples": len(texts), "fake_quantize_ops": fake_quant,
               "matmul_kernels": matmul_kernels(ov, folder / IR_FILE, len(names)),  # on this machine
               "speedup_vs_parent_cpu": measured_speedup(parent.model_path, folder / IR_FILE, parent.manifest.format,
                                                         ctx, target=cfg.target, what="NNCF int8")}
    log.info("NNCF int8: %d FakeQuantize operations from %d calibration texts", fake_quant, len(texts))
    generic = sum(n for kernel, n in details["matmul_kernels"].items() if "jit_gemm" in kernel)
    if generic:
        log.warning("OpenVINO runs %d int8 matrix products through oneDNN's generic gemm on this CPU (%s: no int8 "
                    "brgemm kernel without VNNI); they are usually slower than its fp32 kernels at small batches",
                    generic, details["built_on_isa"])
    return derive(parent, folder, cfg, timer, details, model_file=IR_FILE, data_files=(IR_WEIGHTS,),
                  model_format=ModelFormat.OPENVINO_IR)


def matmul_kernels(ov, model_path, inputs: int, tokens: int = 64) -> dict[str, int]:
    """How many matrix products OpenVINO's CPU plugin runs with each kernel here ("FullyConnected
    brgemm_avx512_amx_I8": 12), read from the compiled model at batch 1, `tokens` long.

    The kernel says whether int8 pays: without VNNI the plugin has no int8 brgemm and multiplies int8
    through oneDNN's generic gemm (jit_gemm_*), slower than its fp32 kernels on small batches."""
    model = ov.Core().read_model(str(model_path))
    model.reshape({port.get_any_name(): [1, tokens] for port in model.inputs[:inputs]})
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else ""
        if layer in ("FullyConnected", "MatMul"):
            key = f"{layer} {info['primitiveType'].astype(str)}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
