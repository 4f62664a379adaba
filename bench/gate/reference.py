"""A fixed reference workload, timed beside a model to normalise away the speed of the machine.

Comparing against a saved report (the gate's weaker mode) cannot interleave the baseline: it ran
on another day, maybe another machine. Timing this fixed network on the same engine, threads and
process as the model, round by round, turns each model time into "model time / reference time", a
figure a uniformly slower machine leaves alone. It cannot cancel effects that hit the model and the
reference differently (e.g. a CPU without VNNI slows an int8 model, not this fp32 one).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtimes.embedded.backends import Device, SessionOptions, get_backend

# Token ids (1 x 32) through an embedding table, then two transformer-FFN-sized blocks (MatMul
# 384x1536, Relu, MatMul 1536x384, residual Add): about the work of a small encoder layer pair, a
# few ms on 2 cores. Integer ids in, as every session of the runtime takes.
HIDDEN, FFN, TOKENS, LAYERS, VOCAB = 384, 1536, 32, 2, 1000
REFERENCE_VERSION = 1  # bump when the network changes: saved normalised samples become incomparable


@functools.lru_cache(maxsize=1)
def reference_model_path() -> Path:
    """Write the reference ONNX model once per process (weights from a fixed seed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(20240901)
    table = (rng.standard_normal((VOCAB, HIDDEN)) * 0.02).astype(np.float32)
    nodes = [helper.make_node("Gather", ["embeddings", "input_ids"], ["x"])]
    inits, x = [numpy_helper.from_array(table, "embeddings")], "x"
    for i in range(LAYERS):
        w1 = (rng.standard_normal((HIDDEN, FFN)) * 0.02).astype(np.float32)
        w2 = (rng.standard_normal((FFN, HIDDEN)) * 0.02).astype(np.float32)
        inits += [numpy_helper.from_array(w1, f"w1_{i}"), numpy_helper.from_array(w2, f"w2_{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w1_{i}"], [f"h_{i}"]),
                  helper.make_node("Relu", [f"h_{i}"], [f"r_{i}"]),
                  helper.make_node("MatMul", [f"r_{i}", f"w2_{i}"], [f"o_{i}"]),
                  helper.make_node("Add", [x, f"o_{i}"], [f"y_{i}"])]
        x = f"y_{i}"
    graph = helper.make_graph(
        nodes, "reference", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, TOKENS])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, TOKENS, HIDDEN])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime we support
    folder = Path(tempfile.mkdtemp(prefix="edge-reference-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # sessions hold the model in memory
    path = folder / "reference.onnx"
    onnx.save(model, str(path))
    return path


def reference_runner(threads: int | None) -> Callable[[object], object]:
    """A runner that ignores its request and runs the reference network on a fixed input."""
    session = get_backend("onnxruntime").load(reference_model_path(), Device.CPU, SessionOptions(threads=threads))
    feed = {"input_ids": np.random.default_rng(0).integers(0, VOCAB, (1, TOKENS), dtype=np.int64)}
    return lambda _request: session.run(feed)
