"""Cut attention heads and FFN neurons out of a PyTorch encoder, and load what that leaves.

transformers 5 has no `prune_heads`, and its loaders build every layer at the size its config
names. A pruned checkpoint therefore records each layer's shape in config.json under
`edge_layer_shapes` (`[{"heads": 3, "ffn": 700}, ...]`); `load_pruned` builds the model at the
config's full size, shrinks each layer to its recorded shape, then loads the safetensors strictly:
every tensor present and of the right shape, none left over, so no weight is ever left random.

Where each family keeps its heads and FFN is the `prune` row of `toolchain.families`. Torch is
imported inside the functions that need it, so reading layer shapes stays cheap.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolchain.errors import CheckpointError, UnsupportedModelError
from toolchain.families import Family, PruneLayout, prunable_family_names

LAYER_SHAPES_KEY = "edge_layer_shapes"
_BIAS_INDEX = "edge_bias_heads"  # buffer of the heads a layer takes from a shared position bias (not saved)


@dataclass(frozen=True)
class LayerShape:
    """One encoder layer's attention heads and FFN width.

    `bias_heads` (families whose position bias is shared by all layers, MPNet) names the heads of
    that bias this layer uses: their positions in the unpruned model.
    """

    heads: int
    ffn: int
    bias_heads: tuple[int, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"heads": self.heads, "ffn": self.ffn}
        if self.bias_heads is not None:
            data["bias_heads"] = list(self.bias_heads)
        return data


@dataclass(frozen=True)
class LayerKeep:
    """What to keep of one layer: indices into its current heads and FFN neurons."""

    heads: tuple[int, ...]
    ffn: tuple[int, ...]


def layout_of(family: Family) -> PruneLayout:
    """The family's pruning layout; `UnsupportedModelError` naming the prunable families otherwise."""
    if family.prune is None:
        raise UnsupportedModelError(f"{family.name} cannot be pruned: {family.why_unprunable}; "
                                    f"prunable families: {prunable_family_names()}")
    return family.prune


def is_pruned(config: dict[str, Any]) -> bool:
    return LAYER_SHAPES_KEY in config


def layer_shapes(family: Family, config: dict[str, Any]) -> list[LayerShape]:
    """Each layer's heads and FFN width: as pruning recorded them, or the config's uniform size.

    A recorded list that does not fit the config (wrong length, sizes out of range, malformed
    entries) raises `CheckpointError`: the weights could not be laid out from it.
    """
    layers = family.layer_count(config)
    heads, ffn = int(config[family.heads_key]), int(config[family.ffn_key])
    recorded = config.get(LAYER_SHAPES_KEY)
    if recorded is None:
        return [LayerShape(heads, ffn)] * layers
    where = f"config.json {LAYER_SHAPES_KEY}"
    if not isinstance(recorded, list) or len(recorded) != layers:
        raise CheckpointError(f"{where} must list one entry per layer ({layers})")
    shapes = []
    for number, entry in enumerate(recorded):
        if not isinstance(entry, dict) or set(entry) - {"heads", "ffn", "bias_heads"}:
            raise CheckpointError(f"{where}[{number}] must be an object with heads, ffn (and bias_heads)")
        h, f, bias = entry.get("heads"), entry.get("ffn"), entry.get("bias_heads")
        if not (_is_int(h) and 1 <= h <= heads and _is_int(f) and 1 <= f <= ffn):
            raise CheckpointError(f"{where}[{number}]: heads must be 1..{heads} and ffn 1..{ffn}, got {h} and {f}")
        if bias is not None:
            if (not isinstance(bias, list) or len(bias) != h or len(set(bias)) != h
                    or not all(_is_int(b) and 0 <= b < heads for b in bias)):
                raise CheckpointError(f"{where}[{number}].bias_heads must list {h} distinct heads of 0..{heads - 1}")
            bias = tuple(bias)
        shapes.append(LayerShape(h, f, bias))
    return shapes


def encoder_layers(model, family: Family):
    """The task model's ModuleList of encoder layers."""
    module = model
    for part in f"{family.backbone}.{family.layers}".split("."):
        if not hasattr(module, part):
            raise UnsupportedModelError(f"{type(model).__name__} has no {family.backbone}.{family.layers}; "
                                        "the family table is out of date for it")
        module = getattr(module, part)
    return module


def current_shapes(model, family: Family) -> list[LayerShape]:
    """The shapes of the model in hand, read from its modules (not from any config)."""
    layout = layout_of(family)
    recorded = layer_shapes(family, model.config.to_dict())
    shapes = []
    for layer, known in zip(encoder_layers(model, family), recorded):
        head_size = _head_size(layer, layout)
        heads = _get(layer, layout.qkv[0]).out_features // layout.qkv_parts // head_size
        ffn = _get(layer, layout.ffn_out).in_features
        bias = None
        if layout.position_bias_arg:
            bias = known.bias_heads or tuple(range(heads))
        shapes.append(LayerShape(heads, ffn, bias))
    return shapes


def shrink(model, family: Family, keep: Sequence[LayerKeep]) -> list[LayerShape]:
    """Keep only the listed heads and FFN neurons of each layer, in place; record the shapes in the config.

    Removing a head or neuron is exactly setting its output to zero: the output projection's bias
    stays, and nothing else reads those units.
    """
    layout = layout_of(family)
    before = current_shapes(model, family)
    layers = encoder_layers(model, family)
    if len(keep) != len(layers):
        raise ValueError(f"{len(keep)} keep lists for {len(layers)} layers")
    shapes = []
    for layer, kept, old in zip(layers, keep, before):
        if not kept.heads or not kept.ffn:
            raise ValueError("every layer keeps at least one head and one FFN neuron")
        bias = tuple(old.bias_heads[i] for i in kept.heads) if old.bias_heads is not None else None
        _shrink_layer(layer, layout, kept.heads, kept.ffn, bias)
        shapes.append(LayerShape(len(kept.heads), len(kept.ffn), bias))
    setattr(model.config, LAYER_SHAPES_KEY, [s.to_json() for s in shapes])
    return shapes


def load_pruned(path: Path, auto_class, family: Family, config: dict[str, Any], weight_files: Iterable[Path]):
    """Build a pruned checkpoint's model: full size from its config, shrunk per layer, weights loaded strictly."""
    import torch
    import transformers
    from safetensors.torch import load_file

    layout = layout_of(family)
    shapes = layer_shapes(family, config)
    files = [Path(f) for f in weight_files if Path(f).suffix == ".safetensors"]
    if not files:
        raise CheckpointError(f"{path} is pruned ({LAYER_SHAPES_KEY} in config.json); its weights must be "
                              "safetensors")
    try:
        hf_config = transformers.AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        model = auto_class.from_config(hf_config, attn_implementation="eager")
    except Exception as exc:  # transformers raises many types for a config it cannot build
        raise CheckpointError(f"could not build the model described by {path / 'config.json'}: {exc}") from exc
    for layer, shape in zip(encoder_layers(model, family), shapes):
        bias = shape.bias_heads or (tuple(range(shape.heads)) if layout.position_bias_arg else None)
        _shrink_layer(layer, layout, tuple(range(shape.heads)), tuple(range(shape.ffn)), bias)
    try:
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(load_file(file))
        floats = {t.dtype for t in state.values() if t.is_floating_point()}
        if len(floats) == 1:
            model.to(floats.pop())
        missing, unexpected = model.load_state_dict(state, strict=False)
    except Exception as exc:  # SafetensorError, or RuntimeError for a tensor whose shape does not fit
        raise CheckpointError(f"the weights in {path} do not fit the layer shapes in its config.json: "
                              f"{str(exc)[:500]}") from exc
    if missing or unexpected:
        shown = ", ".join(sorted(missing)[:3] + sorted(unexpected)[:3])
        raise CheckpointError(f"the weights in {path} do not match its pruned architecture: {len(missing)} "
                              f"missing and {len(unexpected)} unexpected ({shown}); nothing may stay random")
    return model.eval()


class UnitMasks:
    """Multiply every head's output and every FFN neuron by a mask variable, one per example.

    Used as a context manager: the hooks sit on each layer's attention output projection and FFN
    output projection (whose inputs are the heads' outputs and the neurons' activations), and read
    the masks `set_batch` made. With masks of ones the model is unchanged; the gradient of a loss
    with respect to them is the per-example sensitivity to removing each head or neuron.
    """

    def __init__(self, model, family: Family):
        self.layout = layout_of(family)
        self.layers = list(encoder_layers(model, family))
        self.shapes = current_shapes(model, family)
        self.head_masks: list = []
        self.ffn_masks: list = []
        self._handles: list = []

    def __enter__(self) -> UnitMasks:
        for index, layer in enumerate(self.layers):
            head_size = _head_size(layer, self.layout)
            self._handles.append(_get(layer, self.layout.attention_out).register_forward_pre_hook(
                self._head_hook(index, head_size)))
            self._handles.append(_get(layer, self.layout.ffn_out).register_forward_pre_hook(self._ffn_hook(index)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def set_batch(self, batch_size: int, requires_grad: bool = True) -> None:
        """Fresh masks of ones for a batch: `head_masks[layer]` is (batch, heads), `ffn_masks[layer]` (batch, ffn)."""
        import torch

        self.head_masks = [torch.ones(batch_size, s.heads, requires_grad=requires_grad) for s in self.shapes]
        self.ffn_masks = [torch.ones(batch_size, s.ffn, requires_grad=requires_grad) for s in self.shapes]

    def _head_hook(self, index: int, head_size: int):
        def hook(module, args):
            (x, *rest) = args
            mask = self.head_masks[index].to(x.dtype)
            heads = x.view(*x.shape[:-1], -1, head_size) * mask[:, None, :, None]
            return (heads.reshape(x.shape), *rest)

        return hook

    def _ffn_hook(self, index: int):
        def hook(module, args):
            (x, *rest) = args
            return (x * self.ffn_masks[index].to(x.dtype)[:, None, :], *rest)

        return hook


# -- slicing ------------------------------------------------------------------------------------------

def _shrink_layer(layer, layout: PruneLayout, heads: Sequence[int], ffn: Sequence[int],
                  bias_heads: tuple[int, ...] | None) -> None:
    import torch

    attention = _get(layer, layout.attention)
    head_size = _head_size(layer, layout)
    total_heads = _get(layer, layout.qkv[0]).out_features // layout.qkv_parts // head_size
    total_ffn = _get(layer, layout.ffn_out).in_features
    head_rows = _unit_index(heads, head_size, total_heads, 1)
    for path in layout.qkv:
        _slice(layer, path, _unit_index(heads, head_size, total_heads, layout.qkv_parts), dim=0)
    for path in layout.optional_qkv:
        if _has(layer, path):
            _slice(layer, path, head_rows, dim=0)
    _slice(layer, layout.attention_out, head_rows, dim=1)
    _slice(layer, layout.ffn_in, _unit_index(ffn, 1, total_ffn, layout.ffn_in_parts), dim=0)
    _slice(layer, layout.ffn_out, torch.tensor(list(ffn), dtype=torch.long), dim=1)
    if layout.heads_attr:
        setattr(attention, layout.heads_attr, len(heads))
    for name in layout.size_attrs:
        if hasattr(attention, name):
            setattr(attention, name, len(heads) * head_size)
    if layout.position_bias_arg and bias_heads is not None:
        _select_bias_heads(attention, layout.position_bias_arg, bias_heads)


def _unit_index(kept: Sequence[int], unit: int, total: int, parts: int):
    """Row indices of the kept units (each `unit` rows wide) in each of `parts` packed chunks of `total` units."""
    import torch

    return torch.tensor([part * total * unit + k * unit + d for part in range(parts) for k in kept
                         for d in range(unit)], dtype=torch.long)


def _slice(layer, path: str, index, dim: int) -> None:
    """Replace the Linear at `path` by one with only the `index` outputs (dim 0) or inputs (dim 1)."""
    import torch

    old = _get(layer, path)
    weight = old.weight.detach().index_select(dim, index).clone()
    bias = old.bias
    if bias is not None:
        bias = bias.detach().index_select(0, index).clone() if dim == 0 else bias.detach().clone()
    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                          dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    new.train(old.training)
    *owners, name = path.split(".")
    setattr(_get(layer, ".".join(owners)) if owners else layer, name, new)


def _select_bias_heads(attention, arg: str, bias_heads: tuple[int, ...]) -> None:
    """Make `attention` take only its own heads from the per-head bias that all layers share."""
    import torch

    index = torch.tensor(bias_heads, dtype=torch.long)
    if hasattr(attention, _BIAS_INDEX):
        setattr(attention, _BIAS_INDEX, index)
        return
    attention.register_buffer(_BIAS_INDEX, index, persistent=False)  # rebuilt from config.json, never saved
    position = list(inspect.signature(attention.forward).parameters).index(arg)

    def select(module, args, kwargs):
        chosen = getattr(module, _BIAS_INDEX)
        if len(args) > position and args[position] is not None:
            args = (*args[:position], args[position].index_select(1, chosen), *args[position + 1:])
        elif kwargs.get(arg) is not None:
            kwargs[arg] = kwargs[arg].index_select(1, chosen)
        return args, kwargs

    attention.register_forward_pre_hook(select, with_kwargs=True)


def _head_size(layer, layout: PruneLayout) -> int:
    return int(getattr(_get(layer, layout.attention), layout.head_size_attr))


def _get(module, path: str):
    for part in path.split("."):
        if not hasattr(module, part):
            raise UnsupportedModelError(f"{type(module).__name__} has no {part!r} (looking for {path}); the "
                                        "family table's pruning layout is out of date for this model")
        module = getattr(module, part)
    return module


def _has(module, path: str) -> bool:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
