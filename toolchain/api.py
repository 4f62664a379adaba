"""The Python API behind the `optimise` command."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from runtimes.common.errors import EdgeError
from runtimes.common.manifest import CpuRecord, StepRecord, Task
from runtimes.embedded.pipelines import validated
from toolchain.cache import CacheHit, StepCache
from toolchain.checkpoint import Checkpoint, inspect_checkpoint
from toolchain.data import DataRole, TextDataset, resolve_roles
from toolchain.errors import ConfigError, OutputError, ParityError
from toolchain.output import claim_output, disk_full, filesystem_error, plan_output, publish
from toolchain.parity import ParityReference, check_parity, describe, failures
from toolchain.recipe import DEFAULT_PRESET, Recipe, preset
from toolchain.stages import Artifact, Stage, TorchModel
from toolchain.steps import StepContext, transform_for
from toolchain.steps.base import StepConfig, StepTimer, extend, hash_folder

log = logging.getLogger(__name__)

StepCallback = Callable[[str, int, int], None]


def optimise(
    checkpoint: Path | str,
    out: Path | str,
    *,
    task: Task | None = None,
    recipe: Recipe | None = None,
    dataset: TextDataset | None = None,
    data: Mapping[DataRole, TextDataset] | None = None,
    train_data: TextDataset | None = None,
    eval_data: TextDataset | None = None,
    calibration_data: TextDataset | None = None,
    transfer_data: TextDataset | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
    on_step: StepCallback | None = None,
    inputs: Iterable[Path | str] = (),
    cache: StepCache | None = None,
) -> Artifact:
    """Run `recipe` on a checkpoint folder and write the final artifact to `out`.

    `train_data`, `eval_data` (validation), `calibration_data` and `transfer_data` (unlabelled inputs that
    distillation adds to the training data, labelled by the teacher: `load_transfer_data`) are the datasets
    by role (`data` gives them as a mapping by `DataRole`); `dataset` is a shorthand for one dataset used for
    validation and calibration. Keep all of them apart from the data you report accuracy on. Every step's
    output is compared with the PyTorch model; the first step that fails parity raises `ParityError`
    listing every failing output.

    `out` appears only when everything succeeded, and an existing `out` is replaced only with
    `overwrite=True` and only if it is a complete artifact (see `toolchain.output`). `out` may never
    be, or contain, the checkpoint, the dataset's file or any other path in `inputs`.

    With a `cache`, the outputs of expensive steps (those whose config says `cacheable`) are kept
    and reused by later runs with the same config, parent model and data.
    """
    recipe = recipe or preset(DEFAULT_PRESET)
    roles = dict(data or {})
    for role, given in ((DataRole.TRAIN, train_data), (DataRole.VALIDATION, eval_data),
                        (DataRole.CALIBRATION, calibration_data), (DataRole.TRANSFER, transfer_data)):
        if given is not None:
            roles[role] = given
    if dataset is not None:
        roles.setdefault(DataRole.VALIDATION, dataset)
        roles.setdefault(DataRole.CALIBRATION, dataset)
    roles = resolve_roles(roles)
    missing = recipe.missing_data(set(roles))
    if missing:
        flags = {DataRole.TRAIN: "`train_data`", DataRole.VALIDATION: "`eval_data` (or `data`)",
                 DataRole.CALIBRATION: "`calibration_data` (or `data`)"}
        needed = [flags[role] for role in DataRole if role not in roles and any(role.value in m for m in missing)]
        raise ConfigError(f"{'; '.join(missing)}: pass {' and '.join(needed)} (CSV, JSONL, Parquet, a datasets "
                          "folder, or CoNLL for token classification)")
    ckpt = inspect_checkpoint(checkpoint, task=task, allow_pickle=allow_pickle)
    for cfg in recipe.steps:  # refuse now what a step would refuse after the training before it
        if cfg.replaces_model():
            break
        cfg.preflight(ckpt)
    sources = [ckpt.path, *inputs] + [d.source for d in roles.values() if d.source]
    out = plan_output(out, sources)
    rank = int(os.environ.get("RANK", "0") or 0)
    if rank > 0:  # under torchrun / accelerate: every rank trains, only rank 0 writes the artifact
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.rank{rank}-", dir=out.parent) as work:
            artifact = _run_steps(ckpt, recipe, roles, Path(work), on_step, cache)
        return Artifact(out, artifact.manifest, artifact.stage)
    with claim_output(out, overwrite) as workspace:
        try:
            artifact = _run_steps(ckpt, recipe, roles, workspace.path, on_step, cache)
            manifest = validated(dataclasses.replace(artifact.manifest, recipe=recipe.to_dict(),
                                                     cpu=cpu_record(artifact), files=hash_folder(artifact.path)))
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


def _run_steps(ckpt: Checkpoint, recipe: Recipe, data: dict[DataRole, TextDataset], workspace: Path,
               on_step: StepCallback | None, cache: StepCache | None) -> Artifact:
    """Apply the recipe's steps in order. Each graph is compared with the latest PyTorch model."""
    ctx = StepContext(source=ckpt, workspace=workspace, data=data, cache=cache)
    current: TorchModel | Artifact = TorchModel(ckpt, (source_record(ckpt),))
    reference: ParityReference | None = None
    for index, cfg in enumerate(recipe.steps):
        kind = cfg.step_kind()
        if on_step:
            on_step(kind, index, len(recipe.steps))
        t0 = time.perf_counter()
        current = _apply(cfg, current, ctx, cache)
        log.info("step %s done in %.1fs", kind, time.perf_counter() - t0)
        if isinstance(current, TorchModel):
            ctx.checkpoint = current.checkpoint
            reference = None  # parity follows the model: the next export is checked against this one
            continue
        if reference is None:
            reference = ParityReference(ctx.checkpoint, current.manifest.signature.input_names)
        report = check_parity(reference, current.model_path, current.manifest.format, kind, recipe.parity_for(cfg))
        current = dataclasses.replace(current, manifest=dataclasses.replace(
            current.manifest, parity=(*current.manifest.parity, report)))
        problems = failures(report)
        if problems:
            raise ParityError(f"step {kind} broke parity with the PyTorch model ({describe(report)}):\n  - "
                              + "\n  - ".join(problems))
    assert isinstance(current, Artifact)  # Recipe checks that every recipe ends in a graph stage
    return current


def cpu_record(artifact: Artifact) -> CpuRecord:
    """The manifest's CPU record: the int8 class the last int8 step quantised for, and this machine."""
    from runtimes.common.cpu import detect_isa
    from runtimes.measure.machine import machine_info

    int8 = [r.details for r in artifact.manifest.lineage if "cpu_target" in r.details]
    info = machine_info()
    return CpuRecord(int8_target=int8[-1]["cpu_target"] if int8 else None,
                     requested=int8[-1]["cpu_requested"] if int8 else "native", built_on=info.cpu_model,
                     built_on_isa=detect_isa().value, built_on_features=info.isa)


def source_record(ckpt: Checkpoint) -> StepRecord:
    """The first lineage record: the checkpoint the run started from, and the hash of each file it read."""
    config = {"path": str(ckpt.path.resolve()), "model_type": ckpt.model_type, "architecture": ckpt.architecture}
    return StepRecord("source", Stage.TORCH.value, config, None, ckpt.sha256, StepTimer().started_at, 0.0,
                      {"files": ckpt.file_hashes})


def _apply(cfg: StepConfig, parent: TorchModel | Artifact, ctx: StepContext,
           cache: StepCache | None) -> TorchModel | Artifact:
    """Run one step, or take its output from the cache when it is cacheable and was computed before."""
    transform = transform_for(cfg)
    if cache is None or not cfg.cacheable:
        return transform(parent, cfg, ctx)
    key = cache.key(cfg.cache_record(), parent.sha256, ctx.data_digest(cfg.cache_roles()))
    hit = cache.fetch(key, ctx.new_folder(f"{cfg.step_kind()}-cached"))
    restored = _restore(parent, hit) if hit else None
    if restored is not None:
        log.info("step %s: reused its cached output", cfg.step_kind())
        return restored
    result = transform(parent, cfg, ctx)
    record = result.lineage[-1] if isinstance(result, TorchModel) else result.manifest.lineage[-1]
    extra = {} if isinstance(result, TorchModel) else {
        "model_file": result.manifest.model_file, "data_files": list(result.manifest.data_files),
        "format": result.manifest.format.value}
    cache.store(key, result.path, dataclasses.asdict(record), extra)
    return result


def _restore(parent: TorchModel | Artifact, hit: CacheHit) -> TorchModel | Artifact | None:
    from runtimes.common.manifest import ModelFormat

    record = dataclasses.replace(StepRecord(**hit.record), cached=True)
    if isinstance(parent, TorchModel):
        ckpt = inspect_checkpoint(hit.folder, task=parent.checkpoint.task)
        if ckpt.sha256 != record.output_sha256:
            return None
        return TorchModel(ckpt, (*parent.lineage, record))
    artifact = extend(parent, hit.folder, record, hit.extra["model_file"], tuple(hit.extra["data_files"]),
                      ModelFormat(hit.extra["format"]))
    return artifact if artifact.sha256 == record.output_sha256 else None
