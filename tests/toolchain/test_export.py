"""Export + parity for every supported family and task, on tiny random checkpoints."""

import json
from typing import Literal

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from runtimes.common.manifest import Manifest, Task
from toolchain import Exporter, ExportOnnx, ParityError, Recipe, optimise
from toolchain.families import FAMILIES
from toolchain.parity import PARITY_QA, PARITY_TEXTS
from toolchain.steps import Artifact, StepConfig, StepContext, register_step
from toolchain.steps.export import MODEL_FILE

TASKS = ("text-classification", "token-classification", "question-answering")
# DeBERTa-v3 has type_vocab_size 0: the tracer drops the unused token_type_ids input.
NO_SEGMENTS = {"distilbert", "roberta", "mpnet", "xlm-roberta", "camembert", "albert", "modernbert", "deberta-v2"}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_export_matches_pytorch(artifact_factory, family, task):
    artifact = artifact_factory(family, task)
    m = Manifest.read(artifact.path)

    assert m.task is Task(task)
    expected_inputs = ["input_ids", "attention_mask"] + ([] if family in NO_SEGMENTS else ["token_type_ids"])
    assert sorted(m.signature.input_names) == sorted(expected_inputs)
    for spec in m.signature.inputs:
        assert spec.shape == ("batch", "sequence")
    outputs = {"question-answering": ["start_logits", "end_logits"]}.get(task, ["logits"])
    assert m.signature.output_names == outputs
    assert m.signature.outputs[0].shape[0] == "batch"

    (report,) = m.parity
    assert report.passed and report.agreement == 1.0
    items = PARITY_QA if task == "question-answering" else PARITY_TEXTS
    assert report.samples == 2 * len(items)  # the full padded batch, then each sample alone
    assert all(o.max_abs_diff < 1e-4 for o in report.outputs)
    assert [o.name for o in report.outputs] == outputs

    # still a normal HF folder
    for name in ("config.json", "tokenizer.json", MODEL_FILE):
        assert (artifact.path / name).is_file()
    config = json.loads((artifact.path / "config.json").read_text())
    if task != "question-answering":
        assert list(config["id2label"].values()) == list(m.labels) and m.labels
    source, export = m.lineage
    assert source.step == "source" and source.stage == "torch" and source.parent_sha256 is None
    assert export.step == "export-onnx" and export.stage == "onnx" and export.duration_s > 0
    assert export.parent_sha256 == source.output_sha256 and export.output_sha256 == m.model_sha256
    assert m.recipe["steps"][0]["kind"] == "export-onnx"
    assert len(m.source.weights_sha256["model.safetensors"]) == 64


def test_dynamo_exporter(checkpoint_factory, tmp_path):
    recipe = Recipe(steps=[ExportOnnx(exporter=Exporter.DYNAMO)])
    artifact = optimise(checkpoint_factory("bert", "token-classification"), tmp_path / "a", recipe=recipe)
    assert artifact.manifest.parity[0].passed
    assert artifact.manifest.signature.inputs[0].shape == ("batch", "sequence")
    assert not list(artifact.path.glob("*.data")), "weights must stay inside model.onnx"


class ScaleFirstMatMulWeights(StepConfig):
    """Test-only step: damages the graph the way a broken optimisation pass would."""

    kind: Literal["test-scale-weights"] = "test-scale-weights"
    factor: float = 1.5


@register_step(ScaleFirstMatMulWeights)
def _scale(parent: Artifact, cfg: ScaleFirstMatMulWeights, ctx: StepContext) -> Artifact:
    import dataclasses
    import shutil

    from runtimes.common.manifest import sha256_file

    folder = ctx.new_folder("corrupt")
    shutil.copytree(parent.path, folder, dirs_exist_ok=True)
    model = onnx.load(str(folder / MODEL_FILE))
    weights = [i for i in model.graph.initializer if len(i.dims) == 2 and min(i.dims) > 4]
    for init in weights[-3:]:  # the last few projections, so every output is hit
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * cfg.factor, init.name))
    onnx.save(model, str(folder / MODEL_FILE))
    manifest = dataclasses.replace(parent.manifest, files={**parent.manifest.files,
                                                          MODEL_FILE: sha256_file(folder / MODEL_FILE)})
    return Artifact(folder, manifest)


@pytest.mark.parametrize("task", ["text-classification", "question-answering"])
def test_corrupted_graph_fails_parity_and_writes_nothing(checkpoint_factory, tmp_path, task):
    out = tmp_path / "out"
    recipe = Recipe(steps=[ExportOnnx(), ScaleFirstMatMulWeights(factor=3.0)])
    with pytest.raises(ParityError) as err:
        optimise(checkpoint_factory("bert", task), out, recipe=recipe)
    message = str(err.value)
    names = ["start_logits", "end_logits"] if task == "question-answering" else ["logits"]
    for name in names:  # every failing output is listed in the one error
        assert f"output {name!r}" in message
    assert "test-scale-weights" in message
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "the hidden work folder must be removed"


def test_overwrite_replaces_existing_artifact(checkpoint_factory, tmp_path):
    out = tmp_path / "a"
    first = optimise(checkpoint_factory("bert", "text-classification"), out)
    second = optimise(checkpoint_factory("bert", "text-classification"), out, overwrite=True)
    assert Manifest.read(out).model_sha256 == second.manifest.model_sha256 == first.manifest.model_sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_truncates_text_longer_than_window(artifact_factory):
    from transformers import AutoTokenizer

    from runtimes import open_session

    artifact = artifact_factory("bert", "text-classification")
    tok = AutoTokenizer.from_pretrained(artifact.path)
    enc = tok(["word " * 1000], truncation=True, max_length=artifact.manifest.max_length, return_tensors="np")
    assert enc["input_ids"].shape[1] == artifact.manifest.max_length
    _, session = open_session(artifact.path)
    out = session.run({n: enc[n].astype(np.int64) for n in session.input_names})
    assert out["logits"].shape == (1, 3) and np.isfinite(out["logits"]).all()
