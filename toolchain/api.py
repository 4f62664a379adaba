"""The Python API behind the `optimise` command."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from runtimes.manifest import Task

from .checkpoint import inspect_checkpoint
from .data import TextDataset
from .errors import ConfigError, OutputError, ParityError
from .parity import ParityReference, check_parity, describe, failures
from .recipe import DEFAULT_PRESET, Recipe, preset
from .steps import Artifact, StepContext, transform_for

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
) -> Artifact:
    """Run `recipe` on a checkpoint folder and write the final artifact to `out`.

    `dataset` feeds the steps that need data (calibration, accuracy budgets); keep it apart from
    the data you report accuracy on. Every step's output is compared with the PyTorch model; the
    first step that fails parity raises `ParityError` listing every failing output. `out` appears
    only when everything succeeded: the work happens in a hidden sibling folder renamed at the end.
    """
    recipe = recipe or preset(DEFAULT_PRESET)
    if recipe.needs_data and dataset is None:
        raise ConfigError(f"{', '.join(recipe.needs_data)} needs calibration data: pass --data FILE "
                          "(CSV, JSONL, Parquet or a datasets folder with a text column)")
    ckpt = inspect_checkpoint(checkpoint, task=task, allow_pickle=allow_pickle)
    out = Path(out)
    _check_output(out, overwrite)

    workspace = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
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
            report = check_parity(reference, artifact.model_path, artifact.manifest.format, kind,
                                  recipe.parity_for(cfg))
            artifact = dataclasses.replace(
                artifact, manifest=dataclasses.replace(
                    artifact.manifest, parity=artifact.manifest.parity + (report,)))
            problems = failures(report)
            if problems:
                raise ParityError(
                    f"step {kind} broke parity with the PyTorch model ({describe(report)}):\n  - "
                    + "\n  - ".join(problems)
                )
        assert artifact is not None  # a recipe has at least one step
        final = dataclasses.replace(artifact.manifest, recipe=recipe.to_dict())
        return _publish(Artifact(artifact.path, final), out, overwrite, workspace)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists; choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {parent}: permission denied")


def _publish(artifact: Artifact, out: Path, overwrite: bool, workspace: Path) -> Artifact:
    """Write the manifest last, then move the folder into place with renames on one filesystem."""
    artifact.manifest.write(artifact.path)
    if out.exists() and overwrite:
        os.rename(out, workspace / "previous")
    os.rename(artifact.path, out)
    return Artifact(out, artifact.manifest)
