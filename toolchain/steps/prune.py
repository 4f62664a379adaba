"""Structured pruning: steps that remove parts of the PyTorch model (torch stage -> torch stage).

`drop-layers` removes whole layers; `prune` removes attention heads and FFN neurons, ranked by how
much the task loss depends on them. Both leave dense, smaller matrices, which is what ONNX Runtime
and OpenVINO turn into speed (zeroed weights in matrices of the same size would not be faster).
"""

from __future__ import annotations

import logging
import random
from typing import Literal

from pydantic import Field, field_validator, model_validator

from runtimes.common.manifest import Task
from toolchain.checkpoint import Checkpoint, save_checkpoint
from toolchain.data import DataRole, TextDataset
from toolchain.errors import ConfigError, UnsupportedModelError
from toolchain.stages import Stage, TorchModel
from toolchain.steps.base import StepConfig, StepContext, StepTimer, derive_torch, register_step
from toolchain.surgery import LAYER_SHAPES_KEY, LayerKeep, UnitMasks, current_shapes, layer_shapes, layout_of, shrink
from toolchain.tasks import adapter_for

log = logging.getLogger(__name__)


class DropLayers(StepConfig):
    """Keep a subset of the encoder's layers, without training (DistilBERT initialised its student so).

    Give one of `keep` (layer indices, counted from 0), `num_layers` (that many, evenly spaced and
    starting with the first: 3 of 6 keeps 0, 2, 4) or `share` (that share of the model's layers,
    rounded, at least one: 0.5 of 12 keeps 6, evenly spaced). The result is a smaller checkpoint; what
    it costs in accuracy is measured on data, and distillation (a later step) wins most of it back.
    """

    kind: Literal["drop-layers"] = "drop-layers"
    consumes = frozenset({Stage.TORCH})
    produces = Stage.TORCH
    cacheable = True
    keep: tuple[int, ...] | None = None
    num_layers: int | None = Field(default=None, ge=1, le=1024)
    share: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _one_way(self) -> DropLayers:
        if sum(x is not None for x in (self.keep, self.num_layers, self.share)) != 1:
            raise ValueError("give exactly one of keep (layer indices), num_layers or share")
        if self.keep is not None and (not self.keep or min(self.keep) < 0 or len(set(self.keep)) != len(self.keep)):
            raise ValueError("keep must list distinct, non-negative layer indices")
        return self

    def preflight(self, source: Checkpoint) -> None:
        self.layers_to_keep(source.family.layer_count(source.config))  # layers are only ever removed

    def layers_to_keep(self, total: int) -> list[int]:
        count = self.num_layers if self.share is None else max(1, round(self.share * total))
        if count is not None:
            if count > total:
                raise ConfigError(f"drop-layers: cannot keep {count} of the model's {total} layers")
            return [i * total // count for i in range(count)]
        outside = [i for i in self.keep if i >= total]
        if outside:
            raise ConfigError(f"drop-layers: the model has {total} layers (0..{total - 1}); there is no layer "
                              f"{', '.join(map(str, outside))}")
        return sorted(self.keep)


@register_step(DropLayers)
def drop_layers(parent: TorchModel, cfg: DropLayers, ctx: StepContext) -> TorchModel:
    """Write a checkpoint with only the kept layers; the layer count comes from the model in hand."""
    import torch

    timer = StepTimer()
    family = parent.checkpoint.family
    total = family.layer_count(parent.config)
    keep = cfg.layers_to_keep(total)
    model = parent.checkpoint.load_fresh_model()
    before = sum(p.numel() for p in model.parameters())
    if family.separate_layers:
        owner, name = _parent_of(model, f"{family.backbone}.{family.layers}")
        layers = getattr(owner, name)
        kept = torch.nn.ModuleList([layers[i] for i in keep])
        for index, layer in enumerate(kept):  # attention modules number themselves (caches, masks)
            for module in layer.modules():
                if isinstance(getattr(module, "layer_idx", None), int):
                    module.layer_idx = index
        setattr(owner, name, kept)
    # ALBERT repeats one shared set of weights: keeping n layers is repeating it n times.
    setattr(model.config, family.num_layers_key, len(keep))
    # which source layer each kept layer came from, for distillation's layer-to-layer matching
    origin = getattr(model.config, "edge_layer_origin", None) or list(range(total))
    model.config.edge_layer_origin = [origin[i] for i in keep]
    layer_types = getattr(model.config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == total:  # per-layer attention kinds (ModernBERT)
        model.config.layer_types = [layer_types[i] for i in keep]
    shapes = getattr(model.config, LAYER_SHAPES_KEY, None)
    if isinstance(shapes, list) and len(shapes) == total:  # per-layer heads and FFN widths of a pruned model
        setattr(model.config, LAYER_SHAPES_KEY, [shapes[i] for i in keep])
    after = sum(p.numel() for p in model.parameters())
    folder = ctx.new_folder("drop-layers")
    checkpoint = save_checkpoint(model, parent.checkpoint.tokenizer, folder, parent.checkpoint.task)
    log.info("kept layers %s of %d: %.1fM -> %.1fM parameters", keep, total, before / 1e6, after / 1e6)
    details = {"kept_layers": keep, "layers_before": total, "layers_after": len(keep),
               "parameters_before": before, "parameters_after": after}
    return derive_torch(parent, checkpoint, cfg, timer, details)


def _parent_of(model, path: str):
    """The module that holds the attribute at dotted `path`, and the attribute's name."""
    *owners, name = path.split(".")
    owner = model
    for part in owners:
        owner = getattr(owner, part)
    if not hasattr(owner, name):
        raise ConfigError(f"{type(model).__name__} has no {path}; the family table is out of date for it")
    return owner, name


Share = float | tuple[float, ...]
IMPORTANCE = ("Fisher information of per-example head and FFN-neuron masks (Kwon et al. 2022): the sum over "
              "examples of the squared gradient of the loss with respect to each mask, at mask = 1")


class PruneHeadsAndNeurons(StepConfig):
    """Remove the least important attention heads and FFN neurons, without training.

    `keep_heads` and `keep_ffn` are the shares to keep: one number for the whole model, or one per
    layer. With one number, `ranking="global"` keeps the most important units wherever they are (so
    layers end up with different head counts and FFN widths) and `"per-layer"` keeps that share of
    every layer. Every layer keeps at least `min_heads` heads and `ffn_multiple` FFN neurons, and
    its FFN width is rounded to a multiple of `ffn_multiple` (GEMM kernels like multiples of 16 or 64).

    Importance is measured on `batches` batches of the train data (drawn with `seed`): the Fisher
    information of a mask on each head and neuron. `targets="labels"` uses the data's labels;
    `"model"` draws targets from the model's own output distribution, so unlabelled text (and
    question answering, whose data carries no answers) works too; that Fisher is the curvature of
    the KL divergence from the model's own outputs. `"auto"` takes labels where the data has them.
    Accuracy lost here is won back by a later `distil` step from the unpruned model.
    """

    kind: Literal["prune"] = "prune"
    consumes = frozenset({Stage.TORCH})
    produces = Stage.TORCH
    needs_data = frozenset({DataRole.TRAIN})
    cacheable = True
    keep_heads: Share = 1.0
    keep_ffn: Share = 1.0
    ranking: Literal["global", "per-layer"] = "global"
    min_heads: int = Field(default=1, ge=1, le=1024)
    ffn_multiple: int = Field(default=1, ge=1, le=4096)
    targets: Literal["auto", "labels", "model"] = "auto"
    batches: int = Field(default=8, ge=1, le=100_000)
    batch_size: int = Field(default=16, ge=1, le=4096)
    max_length: int = Field(default=128, ge=8, le=8192, description="tokens per example when scoring")
    seed: int = Field(default=0, ge=0)

    @field_validator("keep_heads", "keep_ffn")
    @classmethod
    def _shares(cls, value: Share) -> Share:
        values = value if isinstance(value, tuple) else (value,)
        if not values or not all(0 < v <= 1 for v in values):
            raise ValueError("shares to keep must be in (0, 1]: 0.5 keeps half")
        return value

    def preflight(self, source: Checkpoint) -> None:
        layout_of(source.family)

    @model_validator(mode="after")
    def _prunes_something(self) -> PruneHeadsAndNeurons:
        shares = [*_as_tuple(self.keep_heads), *_as_tuple(self.keep_ffn)]
        if all(v == 1 for v in shares):
            raise ValueError("keep_heads and keep_ffn are both 1 (keep everything): set one below 1")
        return self


@register_step(PruneHeadsAndNeurons)
def prune_heads_and_neurons(parent: TorchModel, cfg: PruneHeadsAndNeurons, ctx: StepContext) -> TorchModel:
    """Score every head and FFN neuron on train data, cut the least important, write the smaller checkpoint."""
    timer = StepTimer()
    ckpt = parent.checkpoint
    family = ckpt.family
    layout_of(family)  # refuses a family that cannot be pruned before any work
    data = ctx.data_for(DataRole.TRAIN, cfg.kind)
    targets = _targets(cfg, ckpt.task, data)
    shapes = layer_shapes(family, parent.config)  # checked against the loaded modules below
    head_shares = _layer_shares(cfg.keep_heads, len(shapes), "keep_heads")
    ffn_shares = _layer_shares(cfg.keep_ffn, len(shapes), "keep_ffn")
    too_few = [i for i, s in enumerate(shapes) if s.heads < cfg.min_heads]
    if too_few:
        raise ConfigError(f"prune: min_heads is {cfg.min_heads} but layer {too_few[0]} has only "
                          f"{shapes[too_few[0]].heads} heads")
    model = ckpt.load_fresh_model()
    before = current_shapes(model, family)
    if [(s.heads, s.ffn) for s in before] != [(s.heads, s.ffn) for s in shapes]:
        raise UnsupportedModelError(f"prune: the loaded {family.name} model's layer shapes do not match its "
                                    "config; the family table's pruning layout is out of date for it")
    head_scores, ffn_scores, examples = fisher_scores(model, ckpt, data, cfg, targets)
    heads = _choose(head_scores, head_shares, cfg.ranking, cfg.min_heads, 1)
    ffn = _choose(ffn_scores, ffn_shares, cfg.ranking, cfg.ffn_multiple, cfg.ffn_multiple)
    parameters_before = sum(p.numel() for p in model.parameters())
    after = shrink(model, family, [LayerKeep(h, f) for h, f in zip(heads, ffn)])
    parameters_after = sum(p.numel() for p in model.parameters())
    for p in model.parameters():
        p.requires_grad_(True)
    folder = ctx.new_folder("prune")
    checkpoint = save_checkpoint(model, ckpt.tokenizer, folder, ckpt.task)
    log.info("pruned heads %s -> %s, FFN %s -> %s: %.1fM -> %.1fM parameters",
             [s.heads for s in before], [s.heads for s in after], [s.ffn for s in before], [s.ffn for s in after],
             parameters_before / 1e6, parameters_after / 1e6)
    top = max([max(s) for s in head_scores] + [1e-30])
    details = {
        "importance": IMPORTANCE, "targets": targets, "examples": examples,
        "heads_before": [s.heads for s in before], "heads_after": [s.heads for s in after],
        "ffn_before": [s.ffn for s in before], "ffn_after": [s.ffn for s in after],
        "kept_heads": [list(h) for h in heads],
        "head_importance": [[float(f"{v / top:.4g}") for v in layer] for layer in head_scores],
        "parameters_before": parameters_before, "parameters_after": parameters_after,
    }
    return derive_torch(parent, checkpoint, cfg, timer, details)


def fisher_scores(model, ckpt: Checkpoint, data: TextDataset, cfg: PruneHeadsAndNeurons,
                  targets: str) -> tuple[list[list[float]], list[list[float]], int]:
    """Per layer, the Fisher information of each head's and each FFN neuron's mask; and how many examples."""
    import torch

    model.eval()
    for p in model.parameters():  # only the masks need gradients: skip the weight-gradient work
        p.requires_grad_(False)
    order = list(range(len(data)))
    random.Random(cfg.seed).shuffle(order)
    order = order[:cfg.batches * cfg.batch_size]
    generator = torch.Generator().manual_seed(cfg.seed)
    max_length = min(cfg.max_length, ckpt.max_length)
    with UnitMasks(model, ckpt.family) as masks:
        heads = [torch.zeros(s.heads, dtype=torch.float64) for s in masks.shapes]
        ffn = [torch.zeros(s.ffn, dtype=torch.float64) for s in masks.shapes]
        for start in range(0, len(order), cfg.batch_size):
            batch = data.select(order[start:start + cfg.batch_size])
            feeds, labels = _encode(ckpt, batch, max_length)
            masks.set_batch(len(batch))
            out = model(**feeds, return_dict=True)
            # summed over examples (each example's gradient is its own), against labels or sampled own outputs
            loss = adapter_for(ckpt.task).importance_loss(model.config, out, feeds["attention_mask"],
                                                          labels if targets == "labels" else None, generator)
            grads = torch.autograd.grad(loss, masks.head_masks + masks.ffn_masks)
            for total, grad in zip(heads + ffn, grads):
                total += grad.double().pow(2).sum(0)
            log.debug("importance batch %d: loss %.4f", start // cfg.batch_size + 1, float(loss.detach()))
    return [h.tolist() for h in heads], [f.tolist() for f in ffn], len(order)


def _targets(cfg: PruneHeadsAndNeurons, task: Task, data: TextDataset) -> str:
    supervised = adapter_for(task).is_supervised(data)
    if cfg.targets == "labels" and not supervised:
        raise ConfigError(f"prune: targets='labels' but the train data has no {task.value} labels; use "
                          "targets='model' (the model's own outputs) or labelled data")
    if cfg.targets == "auto":
        return "labels" if supervised else "model"
    return cfg.targets


def _encode(ckpt: Checkpoint, batch: TextDataset, max_length: int):
    """Tokenised feeds and, where the data has them, per-example (or per-token) label ids."""
    enc, labels = adapter_for(ckpt.task).encode_dataset(ckpt.tokenizer, batch, max_length)
    names = set(ckpt.tokenizer.model_input_names) | {"attention_mask"}
    return {k: v for k, v in enc.items() if k in names}, labels


def _layer_shares(share: Share, layers: int, name: str) -> list[float] | float:
    if isinstance(share, tuple):
        if len(share) != layers:
            raise ConfigError(f"prune: {name} lists {len(share)} shares but the model has {layers} layers")
        return list(share)
    return share


def _choose(scores: list[list[float]], share: list[float] | float, ranking: str, minimum: int,
            multiple: int) -> list[tuple[int, ...]]:
    """Per layer, the indices of the units to keep, most important first, then sorted.

    One share with global ranking keeps that share of all units, at least `minimum` per layer;
    otherwise each layer keeps its share. Each count is rounded to `multiple` (at most the layer's size).
    """
    sizes = [len(s) for s in scores]
    if isinstance(share, list) or ranking == "per-layer":
        shares = share if isinstance(share, list) else [share] * len(sizes)
        counts = [round(f * n) for f, n in zip(shares, sizes)]
    else:
        total = round(share * sum(sizes))
        counts = [min(minimum, n) for n in sizes]
        rest = sorted(((-v, layer, i) for layer, layer_scores in enumerate(scores)
                       for i, v in enumerate(sorted(layer_scores, reverse=True)) if i >= counts[layer]))
        for _, layer, _ in rest[:max(total - sum(counts), 0)]:
            counts[layer] += 1
    chosen = []
    for layer_scores, count, n in zip(scores, counts, sizes):
        count = min(max(round(count / multiple) * multiple, minimum, 1), n)
        ranked = sorted(range(n), key=lambda i: (-layer_scores[i], i))
        chosen.append(tuple(sorted(ranked[:count])))
    return chosen


def _as_tuple(share: Share) -> tuple[float, ...]:
    return share if isinstance(share, tuple) else (share,)
