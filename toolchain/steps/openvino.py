"""OpenVINO target: convert to OpenVINO IR, and int8 through NNCF post-training quantisation."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field

from runtimes.manifest import ModelFormat

from ..compat import quiet_openvino_telemetry
from ..data import DataRole
from ..errors import BackendUnavailableError
from ..stages import Artifact, Stage
from .base import StepConfig, StepContext, StepTimer, derive, register_step

log = logging.getLogger(__name__)

IR_FILE, IR_WEIGHTS = "model.xml", "model.bin"


class OpenVinoIR(StepConfig):
    """Convert the ONNX model to OpenVINO IR (model.xml + model.bin), weights kept in fp32."""

    kind: Literal["openvino-ir"] = "openvino-ir"
    consumes = frozenset({Stage.ONNX})  # OpenVINO reads standard ONNX, not ONNX Runtime's fused operators
    produces = Stage.OPENVINO_IR


class OpenVinoInt8(StepConfig):
    """Int8 with NNCF post-training quantisation, calibrated on real texts (transformer preset)."""

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
    except ImportError:
        raise BackendUnavailableError("openvino-int8 needs NNCF: pip install nncf") from None
    timer = StepTimer()
    model = ov.Core().read_model(str(parent.model_path))
    names = parent.manifest.signature.input_names
    texts = ctx.data_for(DataRole.CALIBRATION, cfg.kind).texts[: cfg.calibration_samples]
    encode = lambda text: ctx.checkpoint.encode([text], names)  # noqa: E731 - NNCF's transform function
    quantised = nncf.quantize(model, nncf.Dataset(list(texts), encode), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(texts))
    folder = ctx.new_folder("openvino-int8")
    ov.save_model(quantised, str(folder / IR_FILE), compress_to_fp16=False)
    fake_quant = sum(op.get_type_name() == "FakeQuantize" for op in quantised.get_ops())
    details = {"nncf": nncf.__version__, "calibration_samples": len(texts), "fake_quantize_ops": fake_quant}
    log.info("NNCF int8: %d FakeQuantize operations from %d calibration texts", fake_quant, len(texts))
    return derive(parent, folder, cfg, timer, details, model_file=IR_FILE, data_files=(IR_WEIGHTS,),
                  model_format=ModelFormat.OPENVINO_IR)

