"""Optimum's documented CPU pipeline, run by `bench.search.peers` in Optimum's own virtual environment.

    python peer_optimum.py CHECKPOINT TASK OUT CPU

Export with `ORTModelFor*.from_pretrained(export=True)`, optimise with `AutoOptimizationConfig.O2()`,
then dynamic int8 with the `AutoQuantizationConfig` Optimum gives for CPU (avx2, avx512, avx512_vnni or
arm64), e.g. `AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)`: the chain
Optimum's documentation gives for that CPU (its avx2 config quantises weights as u8, which the
saturating AVX2 kernels compute exactly). This file imports only what that environment
has (optimum-onnx, transformers<4.58, onnxruntime); it prints one JSON line with what it did.

On onnxruntime >= 1.2x the quantiser stops at the O2 graph's fused operators ("Unable to find data
type for weight_name"); when that happens the script runs onnxruntime's symbolic shape inference on
the O2 graph and quantises again, and says so in `workaround`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODELS = {"text-classification": "ORTModelForSequenceClassification",
          "token-classification": "ORTModelForTokenClassification",
          "question-answering": "ORTModelForQuestionAnswering"}


def main(checkpoint: str, task: str, out: str, cpu: str) -> None:
    import optimum.onnxruntime as ort_optimum
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    root = Path(out)
    model = getattr(ort_optimum, MODELS[task]).from_pretrained(checkpoint, export=True)
    exported = root / "exported"
    model.save_pretrained(exported)
    optimised = root / "o2"
    ORTOptimizer.from_pretrained(model).optimize(save_dir=optimised, optimization_config=AutoOptimizationConfig.O2())
    qconfig = getattr(AutoQuantizationConfig, cpu)(is_static=False, per_channel=True)
    quantised = root / "o2-int8"
    workaround = None
    try:
        ORTQuantizer.from_pretrained(optimised, file_name="model_optimized.onnx").quantize(
            save_dir=quantised, quantization_config=qconfig)
    except Exception as exc:
        import onnx
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        graph = optimised / "model_optimized.onnx"
        inferred = SymbolicShapeInference.infer_shapes(onnx.load(str(graph)), auto_merge=True)
        onnx.save(inferred, str(graph))
        workaround = f"quantiser failed ({str(exc).splitlines()[0][:200]}); ran symbolic shape inference first"
        ORTQuantizer.from_pretrained(optimised, file_name="model_optimized.onnx").quantize(
            save_dir=quantised, quantization_config=qconfig)
    import optimum
    import transformers

    print(json.dumps({"o2": str(optimised / "model_optimized.onnx"),
                      "o2_int8": str(next(quantised.glob("*.onnx"))), "workaround": workaround,
                      "quantization_config": f"AutoQuantizationConfig.{cpu}(is_static=False, per_channel=True)",
                      "versions": {"optimum": getattr(optimum, "__version__", "?"),
                                   "transformers": transformers.__version__}}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
