"""The Python API behind the `optimise` command."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Iterable

from runtimes.errors import EdgeError
from runtimes.manifest import Task

from .checkpoint import inspect_checkpoint
from .data import TextDataset
from .errors import ConfigError, OutputError, ParityError
from .output import claim_output, disk_full, filesystem_error, plan_output, publish
from .parity import ParityReference, check_parity, describe, failures
from .recipe import DEFAULT_PRESET, Recipe, preset
from .steps import Artifact, StepContext, transform_for
from .steps.base import hash_folder

log = logging.getLogger(__name__)

StepCallback = Callable[[str, int, int], None]


def optimise(
    checkpoint: Path | str,
    out: Path | str,
    *,
    task: Task | None = None,
    recipe: Recipe | None = None,
    dataset: TextDataset | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
    on_step: StepCallback | None = None,
    inputs: Iterable[Path | str] = (),
) -> Artifact:
    """Run `recipe` on a checkpoint folder and write the final artifact to `out`.

    `dataset` feeds the steps that need data (calibration, accuracy budgets); keep it apart from
    the data you report accuracy on. Every step's output is compared with the PyTorch model; the
    first step that fails parity raises `ParityError` listing every failing output.

    `out` appears only when everything succeeded, and an existing `out` is replaced only with
    `overwrite=True` and only if it is a complete artifact (see `toolchain.output`). `out` may never
    be, or contain, the checkpoint, the dataset's file or any other path in `inputs`.
    """
    recipe = recipe or preset(DEFAULT_PRESET)
    if recipe.needs_data and dataset is None:
        raise ConfigError(f"{', '.join(recipe.needs_data)} needs calibration data: pass --data FILE "
                          "(CSV, JSONL, Parquet or a datasets folder with a text column)")
    ckpt = inspect_checkpoint(checkpoint, task=task, allow_pickle=allow_pickle)
    sources = [ckpt.path, *inputs] + ([dataset.source] if dataset is not None and dataset.source else [])
    out = plan_output(out, sources)
    with claim_output(out, overwrite) as workspace:
        try:
            artifact = _run_steps(ckpt, recipe, dataset, workspace.path, on_step)
            manifest = dataclasses.replace(artifact.manifest, recipe=recipe.to_dict(),
                                           files=hash_folder(artifact.path)).validate()
            manifest.write(artifact.path)  # last: a folder without a manifest is never mistaken for an artifact
            publish(artifact.path, out)
        except EdgeError:
            raise
        except OSError as exc:
            error = filesystem_error(exc, out)
            if error is None and disk_full(workspace.path):
                error = OutputError(f"no space left on {out.parent}; nothing was written to {out}")
            if error is None:
                raise
            raise error from exc
        except Exception as exc:
            if disk_full(workspace.path):  # C++ libraries report a full disk as a generic error
                raise OutputError(f"no space left on {out.parent} ({exc}); nothing was written to {out}") from exc
            raise
    return Artifact(out, manifest)


def _run_steps(ckpt, recipe: Recipe, dataset: TextDataset | None, workspace: Path,
               on_step: StepCallback | None) -> Artifact:
    ctx = StepContext(checkpoint=ckpt, workspace=workspace, dataset=dataset)
    artifact: Artifact | None = None
    reference: ParityReference | None = None
    for index, cfg in enumerate(recipe.steps):
        kind = cfg.step_kind()
        if on_step:
            on_step(kind, index, len(recipe.steps))
        t0 = time.perf_counter()
        artifact = transform_for(cfg)(artifact if artifact else ckpt, cfg, ctx)
        log.info("step %s done in %.1fs", kind, time.perf_counter() - t0)
        if reference is None:
            reference = ParityReference(ckpt, artifact.manifest.signature.input_names)
        report = check_parity(reference, artifact.model_path, artifact.manifest.format, kind, recipe.parity_for(cfg))
        artifact = dataclasses.replace(artifact, manifest=dataclasses.replace(
            artifact.manifest, parity=artifact.manifest.parity + (report,)))
        problems = failures(report)
        if problems:
            raise ParityError(f"step {kind} broke parity with the PyTorch model ({describe(report)}):\n  - "
                              + "\n  - ".join(problems))
    assert artifact is not None  # a recipe has at least one step
    return artifact
