"""Typed stages: torch-stage steps, parity that follows the model, lineage from the source, the step cache."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from bench.cli.optimise import main
from runtimes import load
from toolchain import (
    ConfigError,
    DropLayers,
    DynamicInt8,
    ExportOnnx,
    FuseGraph,
    ParityError,
    Recipe,
    StaticInt8,
    StepCache,
    TextDataset,
    optimise,
)
from toolchain.families import FAMILIES
from toolchain.parity import PARITY_TEXTS
from toolchain.steps import base as step_base


def op_count(path, op):
    return sum(n.op_type == op for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("family", FAMILIES)
def test_drop_layers_then_fuse_and_int8(checkpoint_factory, tmp_path, family):
    ckpt = checkpoint_factory(family, "text-classification", layers=4)
    recipe = Recipe(steps=[DropLayers(num_layers=2), ExportOnnx(), FuseGraph(), DynamicInt8()])
    art = optimise(ckpt, tmp_path / "art", recipe=recipe)
    m = art.manifest
    assert [(r.step, r.stage) for r in m.lineage] == [
        ("source", "torch"), ("drop-layers", "torch"), ("export-onnx", "onnx"), ("fuse-graph", "onnx-fused"),
        ("quantize-dynamic-int8", "onnx-fused")]
    source, dropped, export, fuse, _ = m.lineage
    # each record names its parent: the lineage is a chain from the source checkpoint
    assert dropped.parent_sha256 == source.output_sha256 != dropped.output_sha256
    assert export.parent_sha256 == dropped.output_sha256
    assert fuse.parent_sha256 == export.output_sha256
    assert dropped.details["kept_layers"] == [0, 2] and dropped.details["layers_before"] == 4
    assert dropped.details["parameters_after"] < dropped.details["parameters_before"] or family == "albert"
    family_row = FAMILIES[family]
    assert family_row.layer_count(json.loads((art.path / "config.json").read_text())) == 2
    if family_row.attention_fuses:  # one fused Attention per *remaining* layer, then quantised
        assert fuse.details["fused_operators"]["Attention"] == 2
        assert op_count(art.model_path, "QAttention") == 2
    # parity was checked against the 2-layer model, and held to fp32 tolerance after export and fusion
    assert all(r.passed for r in m.parity)
    assert m.parity[0].outputs[0].max_abs_diff < 1e-4
    assert load(art.path)(list(PARITY_TEXTS))


def test_parity_reference_is_the_smaller_model(checkpoint_factory, tmp_path):
    """The exported 2-layer graph matches the 2-layer torch model, and not the 4-layer source."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ckpt = checkpoint_factory("bert", "text-classification", layers=4)
    art = optimise(ckpt, tmp_path / "art", recipe=Recipe(steps=[DropLayers(keep=(1, 3)), ExportOnnx()]))
    tok = AutoTokenizer.from_pretrained(ckpt)
    enc = tok(list(PARITY_TEXTS[:4]), padding=True, truncation=True, return_tensors="np")
    from runtimes import open_session

    _, session = open_session(art.path)
    ours = session.run({n: enc[n].astype(np.int64) for n in session.input_names})["logits"]
    source = AutoModelForSequenceClassification.from_pretrained(ckpt).eval()
    with torch.no_grad():
        theirs = source(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
    assert np.abs(ours - theirs).max() > 1e-3  # a parity check against the source would have failed
    assert art.manifest.parity[0].outputs[0].max_abs_diff < 1e-4


def test_drop_layers_keeps_the_chosen_weights(checkpoint_factory, tmp_path):
    from safetensors.numpy import load_file

    ckpt = checkpoint_factory("bert", "text-classification", layers=4)
    cache = StepCache(tmp_path / "cache")
    optimise(ckpt, tmp_path / "art", recipe=Recipe(steps=[DropLayers(keep=(0, 3)), ExportOnnx()]), cache=cache)
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    before, after = load_file(ckpt / "model.safetensors"), load_file(entry / "model.safetensors")
    name = "bert.encoder.layer.{}.attention.self.query.weight"
    np.testing.assert_array_equal(after[name.format(1)], before[name.format(3)])
    assert name.format(2) not in after
    assert json.loads((entry / "config.json").read_text())["num_hidden_layers"] == 2


def test_drop_layers_out_of_range(checkpoint_factory, tmp_path):
    with pytest.raises(ConfigError, match="there is no layer 7"):
        optimise(checkpoint_factory("bert", "text-classification"), tmp_path / "art",
                 recipe=Recipe(steps=[DropLayers(keep=(0, 7)), ExportOnnx()]))
    with pytest.raises(ConfigError, match="cannot keep 3 of the model's 2 layers"):
        optimise(checkpoint_factory("bert", "text-classification"), tmp_path / "art",
                 recipe=Recipe(steps=[DropLayers(num_layers=3), ExportOnnx()]))
    assert not (tmp_path / "art").exists()


@pytest.fixture()
def counted(monkeypatch):
    """Count how often each transform really runs (a counter, not a clock, tells a cache hit)."""
    calls: dict[str, int] = {}
    for config_type, transform in list(step_base._TRANSFORMS.items()):
        def wrapped(parent, cfg, ctx, _inner=transform):
            calls[cfg.step_kind()] = calls.get(cfg.step_kind(), 0) + 1
            return _inner(parent, cfg, ctx)
        monkeypatch.setitem(step_base._TRANSFORMS, config_type, wrapped)
    return calls


def test_cache_is_used_on_rerun_and_after_a_later_failure(checkpoint_factory, tmp_path, counted):
    ckpt = checkpoint_factory("bert", "text-classification", layers=4)
    cache = StepCache(tmp_path / "cache")
    failing = Recipe.from_dict({"steps": [{"kind": "drop-layers", "num_layers": 2}, {"kind": "export-onnx"}],
                                "parity": {"atol": 1e-12}})  # a later step that cannot pass
    with pytest.raises(ParityError):
        optimise(ckpt, tmp_path / "a", recipe=failing, cache=cache)
    assert counted == {"drop-layers": 1, "export-onnx": 1} and cache.stores == 1

    good = Recipe(steps=[DropLayers(num_layers=2), ExportOnnx(), FuseGraph()])
    first = optimise(ckpt, tmp_path / "a", recipe=good, cache=cache)
    again = optimise(ckpt, tmp_path / "b", recipe=good, cache=cache)
    assert counted["drop-layers"] == 1, "the dropped model must come from the cache both times"
    assert counted["export-onnx"] == 3 and cache.hits == 2
    assert [r.cached for r in again.manifest.lineage] == [False, True, False, False]
    assert again.manifest.model_sha256 == first.manifest.model_sha256


def test_damaged_cache_entry_is_recomputed(checkpoint_factory, tmp_path, counted):
    ckpt = checkpoint_factory("bert", "text-classification", layers=4)
    cache = StepCache(tmp_path / "cache")
    recipe = Recipe(steps=[DropLayers(num_layers=2), ExportOnnx()])
    first = optimise(ckpt, tmp_path / "a", recipe=recipe, cache=cache)
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # a flipped tail: same size, other bytes
    second = optimise(ckpt, tmp_path / "b", recipe=recipe, cache=cache)
    assert counted["drop-layers"] == 2 and cache.hits == 0
    assert not second.manifest.lineage[1].cached
    assert second.manifest.model_sha256 == first.manifest.model_sha256
    third = optimise(ckpt, tmp_path / "c", recipe=recipe, cache=cache)  # the entry was stored again
    assert counted["drop-layers"] == 2 and third.manifest.lineage[1].cached


def test_unfinished_cache_entries_are_never_used(checkpoint_factory, tmp_path, counted):
    """What a killed run can leave (a partial folder, an entry without entry.json) is not a hit."""
    ckpt = checkpoint_factory("bert", "text-classification", layers=4)
    cache = StepCache(tmp_path / "cache")
    recipe = Recipe(steps=[DropLayers(num_layers=2), ExportOnnx()])
    optimise(ckpt, tmp_path / "a", recipe=recipe, cache=cache)
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    (entry / "entry.json").unlink()
    entry.rename(tmp_path / "cache" / f".{entry.name}.partial-0badf00d")
    optimise(ckpt, tmp_path / "b", recipe=recipe, cache=cache)
    assert counted["drop-layers"] == 2 and cache.hits == 0


def test_graph_steps_are_cached_too_and_still_checked(checkpoint_factory, tmp_path, counted):
    data = TextDataset(tuple(PARITY_TEXTS) * 4)
    cache = StepCache(tmp_path / "cache")
    recipe = Recipe(steps=[ExportOnnx(), StaticInt8(calibration_samples=16)])
    ckpt = checkpoint_factory("bert", "text-classification")
    optimise(ckpt, tmp_path / "a", recipe=recipe, dataset=data, cache=cache)
    again = optimise(ckpt, tmp_path / "b", recipe=recipe, dataset=data, cache=cache)
    assert counted["quantize-static-int8"] == 1 and again.manifest.lineage[-1].cached
    assert len(again.manifest.parity) == 2  # parity is checked on a cached output as on a fresh one
    other = TextDataset(tuple(reversed(PARITY_TEXTS)) * 4)  # other calibration data: another key
    optimise(ckpt, tmp_path / "c", recipe=recipe, dataset=other, cache=cache)
    assert counted["quantize-static-int8"] == 2


def test_cli_cache_options(checkpoint_factory, tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": [{"kind": "drop-layers", "keep": [0]}, {"kind": "export-onnx"}]}))
    ckpt = checkpoint_factory("bert", "text-classification")
    args = [str(ckpt), "--recipe", str(recipe), "-q"]
    assert main([*args, "--out", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "c")]) == 0
    assert any((tmp_path / "c").iterdir())
    assert main([*args, "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "d"), "--no-cache"]) == 0
    assert not (tmp_path / "d").exists()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert [r["step"] for r in manifest["lineage"]] == ["source", "drop-layers", "export-onnx"]
