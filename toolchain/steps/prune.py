"""Structured pruning: steps that remove parts of the PyTorch model (torch stage -> torch stage)."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, model_validator

from ..checkpoint import save_checkpoint
from ..errors import ConfigError
from ..stages import Stage, TorchModel
from .base import StepConfig, StepContext, StepTimer, derive_torch, register_step

log = logging.getLogger(__name__)


class DropLayers(StepConfig):
    """Keep a subset of the encoder's layers, without training (DistilBERT initialised its student so).

    Give either `keep` (layer indices, counted from 0) or `num_layers` (that many, evenly spaced and
    starting with the first: 3 of 6 keeps 0, 2, 4). The result is a smaller checkpoint; what it
    costs in accuracy is measured on data, and distillation (a later step) wins most of it back.
    """

    kind: Literal["drop-layers"] = "drop-layers"
    consumes = frozenset({Stage.TORCH})
    produces = Stage.TORCH
    cacheable = True
    keep: tuple[int, ...] | None = None
    num_layers: int | None = Field(default=None, ge=1, le=1024)

    @model_validator(mode="after")
    def _one_way(self) -> DropLayers:
        if (self.keep is None) == (self.num_layers is None):
            raise ValueError("give exactly one of keep (layer indices) or num_layers")
        if self.keep is not None:
            if not self.keep or min(self.keep) < 0 or len(set(self.keep)) != len(self.keep):
                raise ValueError("keep must list distinct, non-negative layer indices")
        return self

    def layers_to_keep(self, total: int) -> list[int]:
        if self.num_layers is not None:
            if self.num_layers > total:
                raise ConfigError(f"drop-layers: cannot keep {self.num_layers} of the model's {total} layers")
            return [i * total // self.num_layers for i in range(self.num_layers)]
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
    layer_types = getattr(model.config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == total:  # per-layer attention kinds (ModernBERT)
        model.config.layer_types = [layer_types[i] for i in keep]
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
