"""`optimise CKPT --out ART`: turn a fine-tuned Hugging Face checkpoint into a validated edge artifact.

Parses, builds the recipe, then calls `toolchain.optimise` (`bench.api.optimise`). Exit codes: 0 written;
2 bad input (one line on stderr); 3 internal error.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from runtimes.common.cli_boundary import EXIT_OK, Parser, option_names, parse, run_boundary
from runtimes.common.cpu import TARGET_NAMES, same_int8_class
from toolchain.cache import StepCache, default_cache_dir
from toolchain.checkpoint import inspect_checkpoint
from toolchain.data import DataRole
from toolchain.errors import ConfigError
from toolchain.recipe import DEFAULT_PRESET, DEFAULT_TARGET, PRESETS, Recipe, for_cpu, parse_target, preset
from toolchain.steps import Exporter
from toolchain.tasks import load_dataset, load_transfer_data, parse_task
from toolchain.version import __version__


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="optimise",
        description="Export a fine-tuned Hugging Face checkpoint to ONNX, check it against PyTorch "
        "and write a self-describing artifact folder.",
    )
    p.add_argument("checkpoint", type=Path, help="local Hugging Face checkpoint folder")
    p.add_argument("--out", "-o", type=Path, required=True, help="artifact folder to create")
    p.add_argument("--task", help="text-classification, token-classification or question-answering "
                   "(default: inferred from the checkpoint's architecture)")
    p.add_argument("--target", default=DEFAULT_TARGET.value, metavar="cpu[:CPU]|openvino[:CPU]|cuda",
                   help="where the artifact runs: ONNX Runtime on cpu or cuda, or OpenVINO (default: cpu). CPU is "
                   f"the processor int8 is made for: {', '.join(TARGET_NAMES)} (default native: this machine; "
                   "another CPU's int8 is checked here but not timed)")
    presets = "; ".join(f"{t.value}: {', '.join(names)}" for t, names in PRESETS.items())
    p.add_argument("--preset", default=None, help=f"named recipe for the target ({presets}); default: {DEFAULT_PRESET}")
    p.add_argument("--recipe", type=Path, help="JSON or TOML recipe file (instead of --target/--preset)")
    data = p.add_argument_group("data (CSV, JSONL, Parquet, a datasets folder, or CoNLL for token classification; "
                                "never your test set)")
    data.add_argument("--train-data", type=Path, help="what students learn from (distillation, pruning scores)")
    data.add_argument("--eval-data", type=Path, help="validation: early stopping, choices and accuracy budgets")
    data.add_argument("--calibration-data", type=Path, help="activation ranges for static int8 / NNCF "
                      "(default: the validation data, else the training data)")
    data.add_argument("--transfer-data", type=Path, help="unlabelled inputs distillation adds to the training data, "
                      "labelled by the teacher (a text per line of a .txt file, or a table's text column)")
    data.add_argument("--data", type=Path, help="one file for both validation and calibration")
    data.add_argument("--text-column", default="text", help="text column (default: text)")
    data.add_argument("--label-column", default="label", help="label column, ids or label names (default: label)")
    data.add_argument("--tokens-column", default="tokens", help="token classification: list of words (default: tokens)")
    data.add_argument("--tags-column", default="tags", help="token classification: list of tags (default: tags)")
    data.add_argument("--question-column", default="question", help="QA: question column (default: question)")
    data.add_argument("--context-column", default="context", help="QA: context column (default: context)")
    p.add_argument("--accuracy-budget", type=float, metavar="POINTS",
                   help="cpu int8: keep layers in fp32 until the accuracy drop on the labelled validation data fits")
    p.add_argument("--max-length", type=int, metavar="TOKENS",
                   help="the artifact's window: longer texts are truncated (default: the model's own window)")
    p.add_argument("--truncation", choices=["head", "head+tail"],
                   help="text classification: keep an overlong text's start (head, the default) or a quarter of "
                   "the window from its start and the rest from its end (head+tail)")
    p.add_argument("--opset", type=int, help="ONNX opset for the export step (default 18)")
    p.add_argument("--exporter", choices=[e.value for e in Exporter], help="torch.onnx exporter (default torchscript)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow pytorch_model.bin weights (pickle can run code: only for trusted checkpoints)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds an artifact (and nothing else)")
    p.add_argument("--cache-dir", type=Path,
                   help="step cache for expensive steps (default: $EDGE_TOOLCHAIN_CACHE/steps "
                   "or ~/.cache/edge-toolchain/steps)")
    p.add_argument("--no-cache", action="store_true", help="neither use nor fill the step cache")
    p.add_argument("-v", "--verbose", action="store_true", help="log every step and show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _recipe_from_args(args: argparse.Namespace) -> Recipe:
    if args.recipe and (args.preset or args.accuracy_budget is not None):
        raise ConfigError("--recipe cannot be combined with --preset or --accuracy-budget")
    if args.recipe:
        recipe = Recipe.from_file(args.recipe)
        if ":" in args.target:  # a recipe file names its steps; --target cpu:CPU still says which CPU
            recipe = recipe.model_copy(update={"steps": for_cpu(recipe.steps, parse_target(args.target)[1])})
    else:
        recipe = preset(args.preset or DEFAULT_PRESET, args.target, args.accuracy_budget)
    overrides = {k: v for k, v in (("opset", args.opset), ("exporter", args.exporter),
                                             ("max_length", args.max_length),
                                             ("truncation", args.truncation)) if v is not None}
    if overrides:  # applied to the export step, and validated like a recipe file would be
        data = recipe.to_dict()
        for step in data["steps"]:
            if step["kind"] == "export-onnx":
                step.update(overrides)
        try:
            recipe = Recipe.from_dict(data)
        except ConfigError as exc:  # say which option, not which recipe field, when the user gave no recipe
            message = str(exc)
            for name in overrides:
                message = re.sub(rf"steps(\.\d+)?\.{name}\b", "--" + name.replace("_", "-"), message)
            raise ConfigError(message if args.recipe else message.replace("invalid recipe: ", "")) from None
    return recipe


def _configure_logging(verbose: bool, quiet: bool) -> logging.Handler:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=verbose, show_time=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        if not verbose:  # CI logs: only what went wrong
            level = logging.WARNING
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    for name in ("toolchain", "runtimes", "bench"):
        logging.getLogger(name).setLevel(level)
    return handler


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    handler = _configure_logging(args.verbose, args.quiet)

    def left_behind(exc: BaseException) -> str:
        state = ("the artifact had just been written" if getattr(exc, "published", False)
                 else "nothing was written and the work folder was removed")
        return f"{state} ({args.out})"

    try:
        return run_boundary("optimise", lambda: _run(args), args.verbose, on_stop=left_behind,
                            options=option_names(parser))
    finally:
        logging.getLogger().removeHandler(handler)  # a caller that runs main() twice gets no stale stream


def _run(args: argparse.Namespace) -> int:
    from toolchain.api import optimise
    from toolchain.compat import quiet_transformers

    if not args.verbose:
        quiet_transformers()
    recipe = _recipe_from_args(args)
    task = parse_task(args.task) if args.task else None
    files = {DataRole.TRAIN: args.train_data, DataRole.VALIDATION: args.eval_data or args.data,
             DataRole.CALIBRATION: args.calibration_data or args.data, DataRole.TRANSFER: args.transfer_data}
    data = {}
    if any(files.values()):
        ckpt = inspect_checkpoint(args.checkpoint, task=task, allow_pickle=args.allow_pickle)
        columns = dict(text_column=args.text_column, label_column=args.label_column, tokens_column=args.tokens_column,
                       tags_column=args.tags_column, question_column=args.question_column,
                       context_column=args.context_column)
        loaded: dict[Path, object] = {}
        for role, path in files.items():
            if role is DataRole.TRANSFER and path is not None:  # texts alone, whatever else the file holds
                data[role] = load_transfer_data(path, ckpt.task, **columns)
            elif path is not None:  # one file in two roles is read once
                data[role] = loaded.setdefault(path, load_dataset(path, ckpt.task, ckpt.labels, **columns))
    started = time.perf_counter()
    with _StepDisplay(enabled=sys.stderr.isatty() and not args.quiet) as display:
        artifact = optimise(args.checkpoint, args.out, task=task, recipe=recipe, data=data,
                            allow_pickle=args.allow_pickle, overwrite=args.overwrite, on_step=display.step,
                            inputs=[p for p in (args.recipe, *files.values()) if p is not None],
                            cache=None if args.no_cache else StepCache(args.cache_dir or default_cache_dir()))
    if not args.quiet:
        print_summary(artifact, time.perf_counter() - started)
    return EXIT_OK


class _StepDisplay:
    """A spinner naming the current step on a terminal; nothing when output is piped or in CI."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._status = None

    def __enter__(self) -> _StepDisplay:
        if self.enabled:
            from rich.console import Console

            self._status = Console(stderr=True).status("loading checkpoint…")
            self._status.__enter__()
        return self

    def step(self, kind: str, index: int, total: int) -> None:
        if self._status is not None:
            self._status.update(f"step {index + 1}/{total}: {kind}")

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)


def print_summary(artifact, seconds: float) -> None:
    m = artifact.manifest
    size_mb = artifact.model_path.stat().st_size / 1e6
    print(f"wrote {artifact.path}  ({m.task.value}, {m.format.value}, {size_mb:.1f} MB, {seconds:.1f}s)")
    if m.labels:
        print(f"  labels: {', '.join(m.labels)}")
    print(f"  inputs: {', '.join(m.signature.input_names)}  outputs: {', '.join(m.signature.output_names)}"
          f"  max length: {m.max_length}{' (head+tail)' if m.truncation != 'head' else ''}")
    if m.cpu.int8_target:
        where = ("the CPU it was built on" if same_int8_class(m.cpu.int8_target, m.cpu.built_on_isa)
                 else "another CPU: checked here, speed not measured here")
        print(f"  int8 made for: cpu:{m.cpu.int8_target} ({where}; built on {m.cpu.built_on}, "
              f"{m.cpu.built_on_isa})")
    reports = iter(m.parity)  # one parity report per graph step, in order
    for record in m.lineage:
        cached = ", cached" if record.cached else ""
        if record.step == "source":
            print(f"  source: {record.config.get('path')} ({record.config.get('architecture')})")
            continue
        if record.stage == "torch":
            shown = "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in record.details.items()
                              if isinstance(v, (int, float, str)) or k in ("kept_layers", "heads_after"))
            print(f"  {record.step} ({record.duration_s:.1f}s{cached}): {shown}")
            continue
        report = next(reports)
        diffs = ", ".join(f"{o.name} {o.max_abs_diff:.1e}" for o in report.outputs)
        print(f"  {record.step} ({record.duration_s:.1f}s{cached}): max abs diff {diffs}; "
              f"{report.agreement_kind} agreement {report.agreement:.0%} on {report.samples} samples")
        for key in ("fused_operators", "quantised_ops", "attempts", "fake_quantize_ops", "matmul_kernels",
                    "fp16_initializers",
                    "speedup_vs_parent_cpu", "speedup_vs_parent_cuda"):
            if key in record.details:
                print(f"      {key.replace('_', ' ')}: {record.details[key]}")


if __name__ == "__main__":
    sys.exit(main())
