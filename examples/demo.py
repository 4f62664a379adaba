"""The built-in end-to-end demo: fine-tune MiniLM-L6 on Rotten Tomatoes, then search for its fastest
artifact within a 1-point accuracy budget, beside Optimum and plain OpenVINO + NNCF.

    python -m examples.demo            # full run (README: Quick start says how long)
    python -m examples.demo --smoke    # CI size: a few hundred examples, no students, no peers; same code path
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from pathlib import Path

from bench.data import DEFAULT_CACHE, RT_LABELS, Example, as_dataset, base_model_path, load_rotten_tomatoes
from bench.finetune import FineTuneConfig, cache_key, fine_tune
from bench.progress import interactive
from runtimes.common.errors import EdgeError
from runtimes.common.manifest import Task
from toolchain.compat import quiet_transformers


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="where the data splits, the chosen artifact "
                                                                      "and the search report go")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="fine-tuned model cache")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the fine-tune (default 2)")
    p.add_argument("--max-accuracy-drop", default="1.0", help="the search's budget on validation (default 1.0 point)")
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
        ckpt, files = prepare(args)
    except EdgeError as exc:
        if args.verbose:
            raise
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    from bench.search.run import main as search

    argv = [str(ckpt), "--max-accuracy-drop", args.max_accuracy_drop, "--train-data", str(files["train"]),
            "--eval-data", str(files["validation"]), "--test-data", str(files["test"]),
            "--out", str(args.out / "model"), "--overwrite"]
    if args.smoke:
        argv += ["--no-students", "--peers", "none", "--latency-texts", "20"]
    print("optimise " + " ".join(argv), file=sys.stderr)
    code = search(argv + (["-v"] if args.verbose else []))
    if args.smoke:
        print("smoke run: a 192-review fine-tune and no students; these figures say nothing about the method")
    return code


def prepare(args: argparse.Namespace) -> tuple[Path, dict[str, Path]]:
    """Write the splits as CSV and fine-tune the teacher (cached); return it and the split files."""
    splits = load_rotten_tomatoes()
    train, validation, test = splits.train, splits.validation, splits.test
    if args.smoke:
        train, validation, test = train[:192], validation[:64], test[:200]
    print(f"Rotten Tomatoes: {len(train)} train / {len(validation)} validation (early stopping, calibration, the "
          f"budget, the choice) / {len(test)} test (scored once, at the end)", file=sys.stderr)
    data = args.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {name: write_split(examples, data / f"{name}.csv")
             for name, examples in (("train", train), ("validation", validation), ("test", test))}
    base = base_model_path()
    ft_cfg = FineTuneConfig(threads=args.threads, epochs=1 if args.smoke else FineTuneConfig.epochs)
    train_ds, validation_ds = as_dataset(train), as_dataset(validation)
    ckpt = args.cache / f"minilm-l6-rotten-tomatoes-{cache_key(base, RT_LABELS, train_ds, ft_cfg, validation_ds)}"
    if ckpt.is_dir():
        print(f"using the cached fine-tuned model {ckpt}", file=sys.stderr)
    else:
        print(f"fine-tuning MiniLM-L6 on {len(train)} reviews (at most {ft_cfg.epochs} epochs, early stopping on "
              f"validation; cached in {ckpt})", file=sys.stderr)
        args.cache.mkdir(parents=True, exist_ok=True)
        fine_tune(base, Task.TEXT_CLASSIFICATION, RT_LABELS, train_ds, validation_ds, ckpt, ft_cfg)
    return ckpt, files


def write_split(examples: list[Example], path: Path) -> Path:
    """A split as CSV (text, label name): what `optimise`, `optimise search` and `optimise bench` read."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([e.text, RT_LABELS[e.label]] for e in examples)
    return path


if __name__ == "__main__":
    sys.exit(main())
