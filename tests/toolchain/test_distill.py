"""Distillation on tiny models: the student learns, runs are reproducible, two processes agree."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtimes import load
from runtimes.common.manifest import Manifest
from toolchain import (
    ConfigError,
    DataRole,
    Distil,
    DropLayers,
    ExportOnnx,
    Recipe,
    TextDataset,
    optimise,
)

WORDS = ["the", "a", "film", "was", "great", "bad", "report", "written", "by", "in", "and", "of", "to", "is", "it",
         "café", "paris", "who", "where", "what"]


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def teacher_labelled(checkpoint: Path, texts: list[str]) -> tuple[int, ...]:
    """A toy task the teacher solves perfectly: its own predictions."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        return tuple(model(**tok(texts, padding=True, return_tensors="pt")).logits.argmax(-1).tolist())


@pytest.fixture(scope="module")
def toy(checkpoint_factory):
    ckpt = checkpoint_factory("bert", "text-classification", layers=2)
    texts = _texts(420, seed=1)
    labels = teacher_labelled(ckpt, texts)
    train = TextDataset(tuple(texts[:300]), labels[:300])
    validation = TextDataset(tuple(texts[300:360]), labels[300:360])
    test = TextDataset(tuple(texts[360:]), labels[360:])
    return ckpt, {DataRole.TRAIN: train, DataRole.VALIDATION: validation}, test


def accuracy(artifact, data: TextDataset) -> float:
    pipe = load(artifact.path)
    names = list(artifact.manifest.labels)
    predicted = [names.index(p["label"]) for p in pipe(list(data.texts))]
    return float(np.mean([p == y for p, y in zip(predicted, data.labels)]))


FAST = dict(epochs=3, batch_size=16, learning_rate=1e-3, evaluations_per_epoch=1)


def test_student_learns_the_teacher(toy, tmp_path):
    ckpt, data, test = toy
    untrained = optimise(ckpt, tmp_path / "untrained", recipe=Recipe(steps=[DropLayers(keep=(0,)), ExportOnnx()]))
    distilled = optimise(ckpt, tmp_path / "distilled", data=data, recipe=Recipe(
        steps=[DropLayers(keep=(0,)), Distil(**FAST), ExportOnnx()]))
    record = distilled.manifest.lineage[2]
    assert record.step == "distil" and record.stage == "torch"
    curve = record.details["loss_curve"]
    assert curve[-1] < curve[0], curve
    assert record.details["validation_metric"] == "accuracy" and record.details["teacher_validation"] == 1.0
    before, after = accuracy(untrained, test), accuracy(distilled, test)
    assert after > before + 0.05, (before, after)
    # parity after the export was checked against the distilled student, not the teacher
    assert distilled.manifest.parity[0].passed and distilled.manifest.parity[0].outputs[0].max_abs_diff < 1e-4


def test_same_seed_same_student(toy, tmp_path):
    ckpt, data, _ = toy
    recipe = Recipe(steps=[DropLayers(keep=(0,)), Distil(**{**FAST, "epochs": 1}), ExportOnnx()])
    first = optimise(ckpt, tmp_path / "a", data=data, recipe=recipe)
    second = optimise(ckpt, tmp_path / "b", data=data, recipe=recipe)
    assert first.manifest.lineage[2].output_sha256 == second.manifest.lineage[2].output_sha256
    assert first.manifest.lineage[2].details["student_validation"] == second.manifest.lineage[2].details[
        "student_validation"]


def test_augmentation_hidden_and_attention_matching(toy, tmp_path):
    from toolchain import PruneHeadsAndNeurons

    ckpt, data, _ = toy
    art = optimise(ckpt, tmp_path / "a", data=data, recipe=Recipe(steps=[
        DropLayers(keep=(1,)), Distil(**{**FAST, "epochs": 1}, augment=1, hidden_weight=1.0, attention_weight=1.0),
        ExportOnnx()]))
    details = art.manifest.lineage[2].details
    assert details["augmented_examples"] == 300 and details["train_examples"] == 300
    assert details["hidden_layers_matched"] == [1]  # the kept layer learns from the layer it came from
    assert details["attention_layers_matched"] == [0]  # the student's layer 0, from that same teacher layer
    with pytest.raises(ConfigError, match="attention_weight needs a student layer with the teacher's head count"):
        optimise(ckpt, tmp_path / "b", data=data, recipe=Recipe(steps=[
            PruneHeadsAndNeurons(keep_heads=0.5, ranking="per-layer", batches=1),
            Distil(**{**FAST, "epochs": 1}, attention_weight=1.0), ExportOnnx()]))


def test_transfer_texts_are_labelled_by_the_teacher_and_learnt_from(toy, tmp_path):
    from runtimes.common.manifest import Task
    from toolchain.errors import InputError
    from toolchain.tasks import load_transfer_data

    ckpt, data, _ = toy
    path = tmp_path / "unlabelled.txt"
    path.write_text("\n".join(f"{text} unlabelled" for text in _texts(50, seed=9)) + "\n\n")
    transfer = load_transfer_data(path, Task.TEXT_CLASSIFICATION)
    assert len(transfer) == 50 and transfer.labels is None
    recipe = Recipe(steps=[DropLayers(keep=(0,)), Distil(**{**FAST, "epochs": 1}), ExportOnnx()])
    art = optimise(ckpt, tmp_path / "a", data={**data, DataRole.TRANSFER: transfer}, recipe=recipe)
    details = art.manifest.lineage[2].details
    assert (details["train_examples"], details["transfer_examples"]) == (300, 50)
    # a student that learnt the teacher's answers on the validation texts would look better than it is
    with pytest.raises(ConfigError, match="also appear in the transfer data"):
        optimise(ckpt, tmp_path / "b", recipe=recipe, data={**data, DataRole.TRANSFER: data[DataRole.VALIDATION]})
    assert not (tmp_path / "b").exists()
    ner = load_transfer_data(path, Task.TOKEN_CLASSIFICATION)  # words: each text split at whitespace
    assert ner.words[0] == tuple(ner.texts[0].split()) and ner.tags is None
    conll = tmp_path / "tagged.conll"
    conll.write_text("Ada B-PER\n")
    with pytest.raises(InputError, match="a CoNLL file carries tags, so give it as training data"):
        load_transfer_data(conll, Task.TOKEN_CLASSIFICATION)
    with pytest.raises(InputError, match="question/context pairs"):
        load_transfer_data(path, Task.QUESTION_ANSWERING)


def test_student_with_another_tokenizer(toy, checkpoint_factory, tmp_path):
    """A RoBERTa-tokenised student learns from a BERT teacher: sequence targets need no shared tokens."""
    ckpt, data, _test = toy
    student = checkpoint_factory("roberta", "text-classification")
    art = optimise(ckpt, tmp_path / "a", data=data, recipe=Recipe(steps=[
        Distil(**{**FAST, "epochs": 1}, student=str(student)), ExportOnnx()]))
    assert json.loads((art.path / "config.json").read_text())["model_type"] == "roberta"
    assert art.manifest.labels == ("negative", "neutral", "positive")
    with pytest.raises(ConfigError, match="hidden_weight needs a student with the teacher's tokenizer"):
        optimise(ckpt, tmp_path / "b", data=data, recipe=Recipe(steps=[
            Distil(**FAST, student=str(student), hidden_weight=1.0), ExportOnnx()]))


@pytest.mark.parametrize("task", ["token-classification", "question-answering"])
def test_other_tasks(checkpoint_factory, tmp_path, task):
    ckpt = checkpoint_factory("bert", task)
    rng = random.Random(3)
    if task == "token-classification":
        words = [tuple(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(160)]
        tags = [tuple(rng.randrange(5) for _ in w) for w in words]
        ds = TextDataset(tuple(" ".join(w) for w in words), words=tuple(words), tags=tuple(tags))
    else:
        contexts = _texts(160, seed=4)
        ds = TextDataset(tuple(contexts), questions=tuple(f"{rng.choice(WORDS)} {rng.choice(WORDS)}?"
                                                          for _ in contexts))
    data = {DataRole.TRAIN: ds.select(range(120)), DataRole.VALIDATION: ds.select(range(120, 160))}
    art = optimise(ckpt, tmp_path / "a", data=data, recipe=Recipe(steps=[
        DropLayers(keep=(0,)), Distil(**{**FAST, "epochs": 1}), ExportOnnx()]))
    details = art.manifest.lineage[2].details
    expected = "entity F1" if task == "token-classification" else "agreement with the teacher"
    assert details["validation_metric"] == expected and details["steps"] > 0


def test_needs_training_and_validation_data(toy, tmp_path):
    ckpt, data, _ = toy
    recipe = Recipe(steps=[Distil(), ExportOnnx()])
    with pytest.raises(ConfigError, match="distil needs train data"):
        optimise(ckpt, tmp_path / "a", recipe=recipe, data={DataRole.VALIDATION: data[DataRole.VALIDATION]})
    with pytest.raises(ConfigError, match="also appear in the training data"):
        optimise(ckpt, tmp_path / "a", recipe=recipe,
                 data={DataRole.TRAIN: data[DataRole.TRAIN], DataRole.VALIDATION: data[DataRole.TRAIN].head(10)})


WORKER = """
import json, os, sys
from pathlib import Path
from toolchain import DataRole, Distil, DropLayers, ExportOnnx, Recipe, TextDataset, optimise
texts, labels, ckpt, out = json.loads(Path(sys.argv[1]).read_text())
data = {DataRole.TRAIN: TextDataset(tuple(texts[:240]), tuple(labels[:240])),
        DataRole.VALIDATION: TextDataset(tuple(texts[240:]), tuple(labels[240:]))}
recipe = Recipe(steps=[DropLayers(keep=(0,)), Distil(epochs=2, batch_size=8, learning_rate=1e-3), ExportOnnx()])
art = optimise(ckpt, out, data=data, recipe=recipe)
record = art.manifest.lineage[2]
Path(out + f".rank{os.environ['RANK']}.json").write_text(json.dumps(
    {"student": record.output_sha256, "processes": record.details["processes"], "curve": record.details["loss_curve"]}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_agree(toy, tmp_path):
    """The same step under torchrun with 2 CPU processes (gloo): both ranks end with the same student."""
    ckpt, data, _ = toy
    texts = list(data[DataRole.TRAIN].texts[:240]) + list(data[DataRole.VALIDATION].texts)
    labels = list(data[DataRole.TRAIN].labels[:240]) + list(data[DataRole.VALIDATION].labels)
    spec = tmp_path / "job.json"
    out = tmp_path / "art"
    spec.write_text(json.dumps([texts, labels, str(ckpt), str(out)]))
    (tmp_path / "worker.py").write_text(WORKER)
    scratch = tmp_path / "tmp"  # torchrun leaves a torchelastic_* folder in TMPDIR
    scratch.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                             str(tmp_path / "worker.py"), str(spec)],
                            capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"art.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["processes"] == 2 and ranks[0]["student"] == ranks[1]["student"]
    assert ranks[0]["curve"][-1] < ranks[0]["curve"][0]
    assert (out / "manifest.json").is_file()  # rank 0 wrote the artifact
    assert not [p for p in tmp_path.iterdir() if ".rank1-" in p.name]  # rank 1 left nothing behind


def _write_csv(path: Path, data: TextDataset, names: list[str]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows((t, names[y]) for t, y in zip(data.texts, data.labels))
    return path


def test_student_small_preset_from_the_cli(toy, tmp_path, capsys):
    """The whole combined chain through the CLI: drop, distil, prune, distil, trim, export, fuse, int8."""
    from bench.cli.optimise import main

    ckpt, data, test = toy
    names = ["negative", "neutral", "positive"]
    train = _write_csv(tmp_path / "train.csv", data[DataRole.TRAIN], names)
    val = _write_csv(tmp_path / "val.csv", data[DataRole.VALIDATION], names)
    out = tmp_path / "small"
    assert main([str(ckpt), "--out", str(out), "--preset", "student-small", "-q"]) == 2
    assert "needs train data" in capsys.readouterr().err and not out.exists()
    assert main([str(ckpt), "--out", str(out), "--preset", "student-small", "--train-data", str(train),
                 "--eval-data", str(val), "-q"]) == 0
    manifest = Manifest.read(out)
    assert [r.step for r in manifest.lineage] == [
        "source", "drop-layers", "distil", "prune", "distil", "trim-vocab", "export-onnx", "fuse-graph",
        "quantize-dynamic-int8"]
    assert manifest.lineage[1].details["kept_layers"] == [0]  # a third of 2 layers, at least one
    assert manifest.recipe["name"] == "student-small"
    pipe = load(out)
    predicted = [names.index(p["label"]) for p in pipe(list(test.texts))]
    assert np.mean([p == y for p, y in zip(predicted, test.labels)]) > 0.5


@pytest.mark.parametrize("family, late_step, message", [
    ("roberta", {"kind": "trim-vocab"}, "trim-vocab supports WordPiece"),
    ("albert", {"kind": "prune", "keep_ffn": 0.5}, "ALBERT cannot be pruned"),
    ("bert", {"kind": "drop-layers", "num_layers": 5}, "cannot keep 5 of the model's 2 layers"),
])
def test_late_refusals_come_before_any_training(checkpoint_factory, toy, tmp_path, family, late_step, message):
    """A step that would refuse the model is found out before the distillation ahead of it runs."""
    from toolchain.errors import EdgeError

    _, data, _ = toy
    steps = []
    recipe = Recipe.from_dict({"steps": [{"kind": "distil"}, late_step, {"kind": "export-onnx"}]})
    with pytest.raises(EdgeError, match=message):
        optimise(checkpoint_factory(family, "text-classification"), tmp_path / "a", data=data, recipe=recipe,
                 on_step=lambda kind, *_: steps.append(kind))
    assert steps == [] and not (tmp_path / "a").exists()


@pytest.mark.parametrize("task", ["text-classification", "token-classification", "question-answering"])
def test_teacher_outputs_batched_by_length_stay_with_their_examples(checkpoint_factory, task):
    """The teacher labels examples in batches of similar length; each example must get the outputs it gets
    alone, in the data's order (a mix-up would teach the student the wrong targets, silently)."""

    from toolchain.checkpoint import inspect_checkpoint
    from toolchain.steps import distill
    from toolchain.transfer import Example

    teacher = inspect_checkpoint(checkpoint_factory("bert", task))
    model = teacher.load_fresh_model().eval()
    rng = random.Random(5)
    words = [tuple(rng.choice(WORDS) for _ in range(rng.randint(1, 14))) for _ in range(150)]
    kind = teacher.task
    examples = [Example(text=" ".join(w), words=w if task == "token-classification" else None,
                        question="who wrote it?" if task == "question-answering" else None) for w in words]
    batched = distill._teacher_targets(teacher, model, kind, examples, 64, cache_folder=None)
    starts = np.concatenate([[0], np.cumsum(batched.get("lengths", []))])
    for index in range(0, len(examples), 7):
        alone = distill._teacher_targets(teacher, model, kind, [examples[index]], 64, cache_folder=None)
        if task == "text-classification":
            np.testing.assert_allclose(batched["logits"][index], alone["logits"][0], atol=1e-4)
        else:
            key = "logits" if task == "token-classification" else "start"
            offset = starts[index]
            assert batched["lengths"][index] == alone["lengths"][0]
            np.testing.assert_allclose(batched[key][offset:offset + alone["lengths"][0]], alone[key], atol=1e-4)
