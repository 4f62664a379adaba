"""The built-in end-to-end demo: fine-tune MiniLM-L6 on Rotten Tomatoes, then search for its fastest
artifact within a 1-point accuracy budget, beside Optimum and plain OpenVINO + NNCF.

    python -m examples.demo            # the quick story: a short fine-tune, the search with two quick students
    python -m examples.demo --full     # the full fine-tune and the full search (four students)
    python -m examples.demo --smoke    # CI size: a few hundred examples, no students, no peers; same code path

The search is `bench.api.search`, called here as an app would; `./run.sh demo` runs this module.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
from pathlib import Path

from bench.data import (
    DEFAULT_CACHE,
    RT_LABELS,
    Example,
    as_dataset,
    base_model_path,
    load_rotten_tomatoes,
    minilm_l3_path,
)
from bench.finetune import FineTuneConfig, cache_key, fine_tune
from bench.progress import interactive
from runtimes.common.errors import EdgeError
from runtimes.common.manifest import Task
from toolchain.compat import quiet_transformers

QUICK_TRAIN = 4000  # training reviews the quick demo's teacher is fine-tuned on (of 8,530)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="where the data splits, the chosen artifact "
                                                                      "and the search report go")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="fine-tuned model cache")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the fine-tune (default 2)")
    p.add_argument("--max-accuracy-drop", default="1.0", help="the search's budget on validation (default 1.0 point)")
    p.add_argument("--full", action="store_true", help="fine-tune on every training review for up to "
                                                       f"{FineTuneConfig.epochs} epochs and search with all four "
                                                       "students (over an hour on 2 cores)")
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
    from bench.cli.common import run_command
    from bench.cli.search import build_parser

    # the same boundary as `optimise search`: one line for an error, exit codes 0/1/2/3
    return run_command(build_parser(), lambda: run_search(args, ckpt, files), args.verbose,
                       on_stop=lambda exc: "finished candidates are kept: run the demo again to resume")


def run_search(args: argparse.Namespace, ckpt: Path, files: dict[str, Path]) -> int:
    from bench.api import search

    logging.getLogger("bench.search").setLevel(logging.INFO)  # the search's progress lines, in CI logs too
    options: dict = dict(train_data=files["train"], test_data=files["test"], overwrite=True, quick=not args.full)
    if args.smoke:
        options.update(students=False, peers="none", latency_texts=20)
    else:  # a general-distilled 3-layer MiniLM, beside the students cut from the teacher (docs/students.md)
        options["student_starts"] = [minilm_l3_path(args.cache)]
    print(f"search({str(ckpt)!r}, {str(args.out / 'model')!r}, max_accuracy_drop={args.max_accuracy_drop!r}, "
          f"eval_data={str(files['validation'])!r}, " + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")",
          file=sys.stderr)
    result = search(ckpt, args.out / "model", max_accuracy_drop=args.max_accuracy_drop,
                    eval_data=files["validation"], **options)
    if not result.met_budget:
        print(f"demo: {result.message}", file=sys.stderr)
    if result.report is not None:
        print(result.report.read_text())
    if args.smoke:
        print("smoke run: a 192-review fine-tune and no students; these figures say nothing about the method")
    elif not args.full:
        print(f"quick run: the teacher saw {QUICK_TRAIN} reviews for one epoch and the search tried two quick "
              "students (half the teacher's layers, and the pretrained 3-layer MiniLM); `./run.sh demo --full` runs "
              "the full fine-tune and search")
    return result.exit_code


def prepare(args: argparse.Namespace) -> tuple[Path, dict[str, Path]]:
    """Write the splits as CSV and fine-tune the teacher (cached); return it and the split files."""
    splits = load_rotten_tomatoes()
    train, validation, test = splits.train, splits.validation, splits.test
    if args.smoke:
        train, validation, test = train[:192], validation[:64], test[:200]
    elif not args.full:  # the quick story: the teacher sees a part of the training split, once
        train = train[:QUICK_TRAIN]
    print(f"Rotten Tomatoes: {len(train)} train / {len(validation)} validation (early stopping, calibration, the "
          f"budget, the choice) / {len(test)} test (scored once, at the end)", file=sys.stderr)
    data = args.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {name: write_split(examples, data / f"{name}.csv")
             for name, examples in (("train", train), ("validation", validation), ("test", test))}
    base = base_model_path()
    ft_cfg = FineTuneConfig(threads=args.threads, epochs=FineTuneConfig.epochs if args.full else 1)
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
