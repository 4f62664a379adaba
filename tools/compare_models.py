"""Compare ONNX classifier files side by side (ours against a peer tool's, say) on Rotten Tomatoes.

    python -m tools.compare_models --tokenizer out/demo/cpu-int8 \\
        ours=out/demo/cpu-int8/model.onnx optimum=/tmp/peer/optimum-o2-int8/model_optimized_quantized.onnx

Every file gets the same token ids and the same ONNX Runtime settings; latency is batch 1, model
only, the files taking turns block by block in one process. Accuracy is on the fixed test split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.data import load_rotten_tomatoes
from bench.latency import compare_latency
from runtimes.embedded.backends import Device, SessionOptions, get_backend
from runtimes.measure.quality import accuracy as accuracy_of


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.compare_models", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", metavar="NAME=PATH", help="ONNX files to compare")
    p.add_argument("--tokenizer", type=Path, required=True, help="folder with tokenizer.json")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--latency-samples", type=int, default=300)
    args = p.parse_args(argv)
    from tokenizers import Tokenizer

    models = dict(m.split("=", 1) for m in args.models)
    tok = Tokenizer.from_file(str(args.tokenizer / "tokenizer.json"))
    tok.enable_truncation(512)
    backend = get_backend("onnxruntime")
    sessions = {name: backend.load(Path(path), Device.CPU, SessionOptions(threads=args.threads))
                for name, path in models.items()}
    test = load_rotten_tomatoes().test

    def feeds(text: str, names: list[str]) -> dict[str, np.ndarray]:
        enc = tok.encode(text)
        arrays = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
        return {n: np.array([arrays[n]], dtype=np.int64) for n in names}

    accuracy = {}
    for name, session in sessions.items():
        predictions = [int(session.run(feeds(e.text, session.input_names))["logits"].argmax()) for e in test]
        accuracy[name] = accuracy_of([e.label for e in test], predictions)
    inputs = [e.text for e in test[: args.latency_samples]]
    def runner(session):
        return lambda text: session.run(feeds(text, session.input_names))

    runners = {name: runner(session) for name, session in sessions.items()}
    latency = compare_latency(runners, inputs)
    first = next(iter(models))
    print(f"{'model':12s} {'accuracy':>9s} {'p50 ms':>8s} {'p90 ms':>8s} {'vs ' + first:>10s} {'size MB':>8s}")
    for name, path in models.items():
        r = latency[name]
        print(f"{name:12s} {accuracy[name]:9.4f} {r.p50_ms:8.2f} {r.p90_ms:8.2f} "
              f"{latency[first].p50_ms / r.p50_ms:9.2f}x {Path(path).stat().st_size / 1e6:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
