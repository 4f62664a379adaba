"""Structured pruning: heads and FFN neurons cut by importance, uneven layers that reload, export, fuse and
pass parity, the lineage, and bad configs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from runtimes import load
from toolchain import (
    CheckpointError,
    ConfigError,
    DataRole,
    DropLayers,
    DynamicInt8,
    ExportOnnx,
    FuseGraph,
    PruneHeadsAndNeurons,
    Recipe,
    StepCache,
    TextDataset,
    UnsupportedModelError,
    inspect_checkpoint,
    optimise,
)
from toolchain.checkpoint import save_checkpoint
from toolchain.families import FAMILIES
from toolchain.parity import PARITY_TEXTS
from toolchain.surgery import LAYER_SHAPES_KEY, LayerKeep, UnitMasks, current_shapes, shrink

PRUNABLE = [name for name, family in FAMILIES.items() if family.prune is not None]
TEXTS = tuple(PARITY_TEXTS) * 4
LABELLED = TextDataset(TEXTS, labels=tuple(i % 3 for i in range(len(TEXTS))))
UNLABELLED = TextDataset(TEXTS)
FAST = dict(batches=2, batch_size=8, max_length=32)
# 3 layers of 4 heads and 48 FFN neurons -> heads (4, 2, 1), FFN (24, 48, 12)
UNEVEN = dict(keep_heads=(1.0, 0.5, 0.25), keep_ffn=(0.5, 1.0, 0.25))


def op_count(path, op):
    return sum(n.op_type == op for n in onnx.load(str(path)).graph.node)


def attention_heads(path):
    return [next(a.i for a in n.attribute if a.name == "num_heads")
            for n in onnx.load(str(path)).graph.node if n.op_type in ("Attention", "QAttention")]


def train(data=LABELLED):
    return {DataRole.TRAIN: data}


@pytest.mark.parametrize("family", PRUNABLE)
def test_uneven_layers_export_fuse_and_pass_parity(checkpoint_factory, tmp_path, family):
    ckpt = checkpoint_factory(family, "text-classification", layers=3)
    recipe = Recipe(steps=[PruneHeadsAndNeurons(**UNEVEN, **FAST), ExportOnnx(), FuseGraph()])
    art = optimise(ckpt, tmp_path / "art", recipe=recipe, data=train())
    lineage = art.manifest.lineage
    assert [(r.step, r.stage) for r in lineage] == [
        ("source", "torch"), ("prune", "torch"), ("export-onnx", "onnx"), ("fuse-graph", "onnx-fused")]
    pruned = lineage[1].details
    assert pruned["heads_before"] == [4, 4, 4] and pruned["heads_after"] == [4, 2, 1]
    assert pruned["ffn_before"] == [48, 48, 48] and pruned["ffn_after"] == [24, 48, 12]
    assert pruned["parameters_after"] < pruned["parameters_before"] and pruned["targets"] == "labels"
    assert lineage[2].parent_sha256 == lineage[1].output_sha256 != lineage[0].output_sha256
    config = json.loads((art.path / "config.json").read_text())
    assert [s["heads"] for s in config[LAYER_SHAPES_KEY]] == [4, 2, 1]
    if FAMILIES[family].attention_fuses:  # one Attention per layer, each with its own head count
        assert op_count(art.model_path, "Attention") == 3
        assert attention_heads(art.model_path) == [4, 2, 1] == lineage[-1].details["attention_heads"]
    # parity is held to fp32 tolerance against the pruned PyTorch model, after export and after fusion
    assert [p.step for p in art.manifest.parity] == ["export-onnx", "fuse-graph"]
    assert all(p.passed and p.outputs[0].max_abs_diff < 1e-4 for p in art.manifest.parity)
    assert load(art.path)(list(PARITY_TEXTS))


@pytest.mark.parametrize("family", PRUNABLE)
def test_cutting_units_equals_masking_them_and_reloads_exactly(checkpoint_factory, tmp_path, family):
    """The sliced model computes what the full model computes with those heads and neurons zeroed;
    our loader rebuilds it from config.json and the safetensors with nothing left random."""
    ckpt = inspect_checkpoint(checkpoint_factory(family, "token-classification", layers=3))
    model, layout = ckpt.load_fresh_model(), FAMILIES[family]
    keep = [LayerKeep((0, 2, 3), tuple(range(0, 48, 2))), LayerKeep((1,), tuple(range(10))),
            LayerKeep((0, 1, 2, 3), tuple(range(47)))]
    enc = ckpt.tokenizer(list(PARITY_TEXTS[:4]), padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad(), UnitMasks(model, layout) as masks:
        masks.set_batch(4, requires_grad=False)
        for layer, kept in enumerate(keep):
            off_heads = [h for h in range(4) if h not in kept.heads]
            off_ffn = [f for f in range(48) if f not in kept.ffn]
            masks.head_masks[layer][:, off_heads] = 0
            masks.ffn_masks[layer][:, off_ffn] = 0
        masked = model(**enc).logits
    shapes = shrink(model, layout, keep)
    assert [(s.heads, s.ffn) for s in shapes] == [(3, 24), (1, 10), (4, 47)]
    with torch.no_grad():
        cut = model(**enc).logits
    # summing fewer terms changes float32 rounding: 1.1e-5 was seen on logits near 1 (an AMD EPYC run)
    torch.testing.assert_close(cut, masked, atol=1e-5, rtol=1e-4)
    saved = save_checkpoint(model, ckpt.tokenizer, tmp_path / "pruned", ckpt.task)
    reloaded = saved.load_model()
    assert current_shapes(reloaded, layout) == current_shapes(model, layout)
    # exactly: every weight as it was cut (the bits of stored tensors do not depend on the CPU) ...
    original = model.state_dict()
    assert all(torch.equal(tensor, original[name]) for name, tensor in reloaded.state_dict().items())
    # ... so outputs differ only by the kernels' summation order (contiguous reloaded weights against sliced
    # views), which varies with the instruction set: a few fp32 ulps of the logits
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**enc).logits, cut, atol=1e-5, rtol=1.3e-6)


def test_importance_removes_the_dead_head_and_neuron(checkpoint_factory, tmp_path):
    """A head whose output weights are zero, and a neuron whose output column is zero, change nothing:
    their importance is exactly 0 and they are the units removed, with labels or the model's own outputs."""
    from safetensors.numpy import load_file

    ckpt = inspect_checkpoint(checkpoint_factory("bert", "text-classification"))
    model = ckpt.load_fresh_model()
    layers = model.bert.encoder.layer
    with torch.no_grad():
        layers[1].attention.output.dense.weight[:, 2 * 8:3 * 8] = 0  # head 2 of layer 1 (head size 8)
        layers[0].output.dense.weight[:, 5] = 0  # FFN neuron 5 of layer 0
    source = save_checkpoint(model, ckpt.tokenizer, tmp_path / "dead", ckpt.task).path
    for targets, data, ranking in (("labels", LABELLED, "global"), ("model", UNLABELLED, "per-layer")):
        cache = StepCache(tmp_path / f"cache-{targets}")
        keep_heads = 7 / 8 if ranking == "global" else (1.0, 0.75)  # one head less, in all
        step = PruneHeadsAndNeurons(keep_heads=keep_heads, keep_ffn=(47 / 48, 1.0), ranking=ranking,
                                    targets=targets, **FAST)
        art = optimise(source, tmp_path / targets, recipe=Recipe(steps=[step, ExportOnnx()]), data=train(data),
                       cache=cache)
        details = art.manifest.lineage[1].details
        assert details["targets"] == targets
        assert details["kept_heads"] == [[0, 1, 2, 3], [0, 1, 3]]
        assert details["head_importance"][1][2] == 0 and min(details["head_importance"][0]) > 0
        (entry,) = [p for p in cache.root.iterdir() if not p.name.startswith(".")]
        before, after = load_file(source / "model.safetensors"), load_file(entry / "model.safetensors")
        name = "bert.encoder.layer.0.output.dense.weight"
        np.testing.assert_array_equal(after[name], np.delete(before[name], 5, axis=1))


def test_global_ranking_gives_layers_their_own_widths_and_keeps_a_head_each(checkpoint_factory, tmp_path):
    ckpt = checkpoint_factory("bert", "text-classification", layers=3)
    step = PruneHeadsAndNeurons(keep_heads=0.25, keep_ffn=0.3, ffn_multiple=4, **FAST)
    art = optimise(ckpt, tmp_path / "a", recipe=Recipe(steps=[step, ExportOnnx(), FuseGraph(), DynamicInt8()]),
                   data=train())
    details = art.manifest.lineage[1].details
    assert sum(details["heads_after"]) == 3 and min(details["heads_after"]) >= 1
    assert all(f % 4 == 0 and f >= 4 for f in details["ffn_after"])
    assert attention_heads(art.model_path) == details["heads_after"]  # QAttention after int8
    assert art.manifest.lineage[-1].step == "quantize-dynamic-int8" and art.manifest.parity[-1].passed


@pytest.mark.parametrize("task", ["token-classification", "question-answering"])
def test_other_tasks_and_unlabelled_data(checkpoint_factory, tmp_path, task):
    words = tuple(tuple(t.split()) or ("x",) for t in PARITY_TEXTS[:6]) * 3
    if task == "token-classification":  # words with tags: the tags are the targets
        data = TextDataset(tuple(" ".join(w) for w in words), words=words,
                           tags=tuple(tuple(i % 5 for i in range(len(w))) for w in words))
        expected = "labels"
    else:  # QA data has no answers: the model's own start/end distributions are the targets
        data = TextDataset(tuple(" ".join(w) for w in words), questions=("Who wrote it?",) * len(words))
        expected = "model"
    ckpt = checkpoint_factory("bert", task)
    recipe = Recipe(steps=[PruneHeadsAndNeurons(keep_heads=0.5, keep_ffn=0.5, **FAST), ExportOnnx(), FuseGraph()])
    art = optimise(ckpt, tmp_path / "a", recipe=recipe, data=train(data))
    assert art.manifest.lineage[1].details["targets"] == expected
    assert all(p.passed and p.outputs[0].max_abs_diff < 1e-4 for p in art.manifest.parity)


def test_prune_then_drop_layers_keeps_the_shapes_of_the_kept_layers(checkpoint_factory, tmp_path):
    ckpt = checkpoint_factory("bert", "text-classification", layers=3)
    recipe = Recipe(steps=[PruneHeadsAndNeurons(**UNEVEN, **FAST), DropLayers(keep=(0, 2)), ExportOnnx(),
                           FuseGraph()])
    art = optimise(ckpt, tmp_path / "a", recipe=recipe, data=train())
    assert [r.step for r in art.manifest.lineage] == ["source", "prune", "drop-layers", "export-onnx", "fuse-graph"]
    assert attention_heads(art.model_path) == [4, 1]
    assert [s["ffn"] for s in json.loads((art.path / "config.json").read_text())[LAYER_SHAPES_KEY]] == [24, 12]


@pytest.mark.parametrize("family", ["bert", "mpnet"])
def test_openvino_target_reads_pruned_models(checkpoint_factory, tmp_path, family):
    pytest.importorskip("openvino", reason="the OpenVINO target needs openvino")
    from toolchain import OpenVinoIR

    ckpt = checkpoint_factory(family, "text-classification", layers=3)
    recipe = Recipe(target="openvino", steps=[PruneHeadsAndNeurons(**UNEVEN, **FAST), ExportOnnx(), OpenVinoIR()])
    art = optimise(ckpt, tmp_path / "ir", recipe=recipe, data=train())
    assert art.manifest.model_file == "model.xml"
    assert all(p.passed and p.outputs[0].max_abs_diff < 1e-4 for p in art.manifest.parity)


def test_recipe_file_round_trip_and_cache(checkpoint_factory, tmp_path):
    recipe = Recipe.from_dict({"steps": [{"kind": "prune", "keep_heads": [1, 0.5], "keep_ffn": 0.5, "batches": 1},
                                         {"kind": "export-onnx"}]})
    assert Recipe.from_dict(json.loads(recipe.to_json())) == recipe
    assert recipe.steps[0].keep_heads == (1.0, 0.5) and recipe.missing_data(set()) == ["prune needs train data"]
    cache = StepCache(tmp_path / "cache")
    ckpt = checkpoint_factory("bert", "text-classification")
    first = optimise(ckpt, tmp_path / "a", recipe=recipe, data=train(), cache=cache)
    again = optimise(ckpt, tmp_path / "b", recipe=recipe, data=train(), cache=cache)
    assert again.manifest.lineage[1].cached and again.manifest.model_sha256 == first.manifest.model_sha256


def test_cli_recipe_file_with_train_data(checkpoint_factory, tmp_path, capsys):
    from bench.cli.optimise import main

    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f'"{t}",{["negative", "neutral", "positive"][i % 3]}\n'
                                             for i, t in enumerate(PARITY_TEXTS[:6])))
    recipe = tmp_path / "prune.toml"
    recipe.write_text('[[steps]]\nkind = "prune"\nkeep_heads = 0.5\nbatches = 1\n'
                      '[[steps]]\nkind = "export-onnx"\n[[steps]]\nkind = "fuse-graph"\n')
    args = [str(checkpoint_factory("bert", "text-classification")), "--recipe", str(recipe), "-q", "--no-cache"]
    assert main([*args, "--out", str(tmp_path / "a"), "--train-data", str(data)]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert [r["step"] for r in manifest["lineage"]] == ["source", "prune", "export-onnx", "fuse-graph"]
    assert main([*args, "--out", str(tmp_path / "b")]) == 2  # no --train-data: one line, exit 2
    assert "prune needs train data" in capsys.readouterr().err


@pytest.mark.parametrize("step, message", [
    ({"keep_heads": 0}, "shares to keep must be in (0, 1]"),
    ({"keep_ffn": 1.5}, "shares to keep must be in (0, 1]"),
    ({"keep_heads": []}, "shares to keep must be in (0, 1]"),
    ({}, "both 1 (keep everything)"),
    ({"keep_heads": 0.5, "min_heads": 0}, "min_heads"),
    ({"keep_heads": 0.5, "ranking": "random"}, "ranking"),
    ({"keep_heads": 0.5, "targets": "teacher"}, "targets"),
    ({"keep_heads": 0.5, "unstructured": True}, "unstructured"),
])
def test_bad_configs_are_one_line_config_errors(step, message):
    with pytest.raises(ConfigError, match="invalid recipe") as info:
        Recipe.from_dict({"steps": [{"kind": "prune", **step}, {"kind": "export-onnx"}]})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_configs_that_do_not_fit_the_model_or_data(checkpoint_factory, tmp_path):
    ckpt = checkpoint_factory("bert", "text-classification")  # 2 layers of 4 heads

    def run(step, data=LABELLED, path=ckpt):
        return optimise(path, tmp_path / "a", recipe=Recipe(steps=[step, ExportOnnx()]), data=train(data))

    with pytest.raises(ConfigError, match="keep_heads lists 3 shares but the model has 2 layers"):
        run(PruneHeadsAndNeurons(keep_heads=(1, 1, 0.5), **FAST))
    with pytest.raises(ConfigError, match="min_heads is 5 but layer 0 has only 4 heads"):
        run(PruneHeadsAndNeurons(keep_heads=0.5, min_heads=5, **FAST))
    with pytest.raises(ConfigError, match="targets='labels' but the train data has no text-classification labels"):
        run(PruneHeadsAndNeurons(keep_heads=0.5, targets="labels", **FAST), data=UNLABELLED)
    with pytest.raises(ConfigError, match="prune needs train data"):
        optimise(ckpt, tmp_path / "a", recipe=Recipe(steps=[PruneHeadsAndNeurons(keep_heads=0.5), ExportOnnx()]))
    with pytest.raises(UnsupportedModelError, match=r"ALBERT cannot be pruned: .*prunable families: bert, distilbert"):
        run(PruneHeadsAndNeurons(keep_heads=0.5, **FAST), path=checkpoint_factory("albert", "text-classification"))
    assert not (tmp_path / "a").exists()


def test_damaged_layer_shapes_are_refused(checkpoint_factory, tmp_path):
    """A pruned checkpoint whose recorded shapes do not fit its weights or its config never loads half-random."""
    ckpt = inspect_checkpoint(checkpoint_factory("bert", "text-classification"))
    model = ckpt.load_fresh_model()
    shrink(model, FAMILIES["bert"], [LayerKeep((0, 1), tuple(range(20))), LayerKeep((3,), tuple(range(48)))])
    folder = save_checkpoint(model, ckpt.tokenizer, tmp_path / "pruned", ckpt.task).path
    config = json.loads((folder / "config.json").read_text())
    for shapes, message in (
        ([{"heads": 2, "ffn": 20}], "one entry per layer"),
        ([{"heads": 0, "ffn": 20}, {"heads": 1, "ffn": 48}], "heads must be 1..4"),
        ([{"heads": 2, "ffn": 99}, {"heads": 1, "ffn": 48}], "ffn 1..48"),
        ([{"heads": 2, "ffn": 20, "extra": 1}, {"heads": 1, "ffn": 48}], "must be an object with heads, ffn"),
        ([{"heads": 3, "ffn": 20}, {"heads": 1, "ffn": 48}], "do not fit the layer shapes"),
    ):
        (folder / "config.json").write_text(json.dumps({**config, LAYER_SHAPES_KEY: shapes}))
        with pytest.raises(CheckpointError, match=message):
            inspect_checkpoint(folder).load_model()
