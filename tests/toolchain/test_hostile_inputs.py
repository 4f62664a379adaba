"""A catalogue of hostile inputs to `optimise`: each gets one clear line, exit 2, and nothing written.

Nothing the user did not ask us to replace may be deleted or changed, a broken model must never
pass as checked, and nothing a file can contain may make us hang.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from bench.cli.optimise import main
from runtimes import Manifest
from toolchain import CheckpointError, ExportOnnx, FuseGraph, ParityError, Recipe, optimise
from toolchain.steps import Artifact, StepConfig, StepContext, register_step
from toolchain.steps.base import derive

FP32 = ["--preset", "fp32", "-q"]


@pytest.fixture()
def ckpt(bert_cls, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(bert_cls, dst)
    return dst


@pytest.fixture()
def no_hang():
    """Fail (instead of hanging the suite) if the code under test blocks for more than 60 s."""
    def alarm(*_):
        raise TimeoutError("the call hung")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def expect_refusal(capsys, args: list[str], message: str) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert message in err, err
    assert err.startswith("optimise: error:") and "\n" not in err and "Traceback" not in err
    return err


# -- --out and --overwrite: never delete what was not ours ------------------------------------------

def test_out_is_the_checkpoint(ckpt, capsys):
    before = snapshot(ckpt)
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt), "--overwrite", *FP32], "is the input")
    assert snapshot(ckpt) == before


def test_out_contains_the_checkpoint(ckpt, capsys):
    before = snapshot(ckpt.parent)
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent), "--overwrite", *FP32], "contains the input")
    assert snapshot(ckpt.parent) == before


def test_overwrite_refuses_a_folder_that_is_not_an_artifact(ckpt, tmp_path, capsys):
    victim = tmp_path / "photos"
    victim.mkdir()
    (victim / "cat.jpg").write_bytes(b"\xff\xd8 not ours")
    expect_refusal(capsys, [str(ckpt), "--out", str(victim), "--overwrite", *FP32], "not an artifact")
    assert (victim / "cat.jpg").read_bytes() == b"\xff\xd8 not ours"


def test_overwrite_refuses_an_artifact_holding_user_files(ckpt, tmp_path, capsys):
    out = tmp_path / "art"
    assert main([str(ckpt), "--out", str(out), *FP32]) == 0
    (out / "notes.md").write_text("my notes")
    expect_refusal(capsys, [str(ckpt), "--out", str(out), "--overwrite", *FP32], "notes.md")
    assert (out / "notes.md").read_text() == "my notes"


def test_overwrite_replaces_an_artifact_from_an_older_toolchain(ckpt, tmp_path, capsys):
    """A manifest this version no longer reads (older fields) still names the files that are ours."""
    out = tmp_path / "art"
    assert main([str(ckpt), "--out", str(out), *FP32]) == 0
    data = json.loads((out / "manifest.json").read_text())
    for record in data["lineage"]:
        del record["stage"]  # what builds before typed stages wrote
    (out / "manifest.json").write_text(json.dumps(data))
    assert main([str(ckpt), "--out", str(out), "--overwrite", *FP32]) == 0
    assert Manifest.read(out).lineage[0].stage is not None
    (out / "notes.md").write_text("mine")  # an old manifest does not make the user's files ours
    data["files"]["../escape"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(data))
    expect_refusal(capsys, [str(ckpt), "--out", str(out), "--overwrite", *FP32], "not an artifact")
    del data["files"]["../escape"]
    (out / "manifest.json").write_text(json.dumps(data))
    expect_refusal(capsys, [str(ckpt), "--out", str(out), "--overwrite", *FP32], "notes.md")
    assert (out / "notes.md").read_text() == "mine"


def test_out_is_the_current_folder(ckpt, tmp_path, capsys, monkeypatch):
    work = tmp_path / "here"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    expect_refusal(capsys, [str(ckpt), "--out", ".", "--overwrite", *FP32], "the current folder")
    assert (work / "keep.txt").read_text() == "x"


def test_out_is_a_data_or_recipe_file(ckpt, tmp_path, capsys):
    data = tmp_path / "calib.csv"
    data.write_text("text,label\ngood,positive\n")
    expect_refusal(capsys, [str(ckpt), "--out", str(data), "--overwrite", "--preset", "int8-static",
                            "--data", str(data), "-q"], "is the input")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": [{"kind": "export-onnx"}]}))
    expect_refusal(capsys, [str(ckpt), "--out", str(tmp_path), "--overwrite", "--recipe", str(recipe), "-q"],
                   "contains the input")
    assert data.is_file() and recipe.is_file()


def test_out_is_a_file_or_a_symlink(ckpt, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    expect_refusal(capsys, [str(ckpt), "--out", str(target), "--overwrite", *FP32], "not a folder")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    expect_refusal(capsys, [str(ckpt), "--out", str(link), *FP32], "symbolic link")
    assert target.read_text() == "x"


def test_out_name_too_long(ckpt, tmp_path, capsys):
    expect_refusal(capsys, [str(ckpt), "--out", str(tmp_path / ("a" * 250)), *FP32], "too long")
    assert list(tmp_path.iterdir()) == [ckpt]


def test_empty_existing_folder_is_filled(ckpt, tmp_path):
    (tmp_path / "empty").mkdir()
    assert main([str(ckpt), "--out", str(tmp_path / "empty"), *FP32]) == 0
    assert (tmp_path / "empty" / "manifest.json").is_file()


def test_race_for_the_same_out(ckpt, tmp_path, capsys):
    out = tmp_path / "art"
    with open(tmp_path / ".art.lock", "w") as held:  # what a running optimise holds
        fcntl.flock(held, fcntl.LOCK_EX)
        expect_refusal(capsys, [str(ckpt), "--out", str(out), *FP32], "another optimise run is writing")
    assert not out.exists()


def test_overwrite_is_atomic_for_readers(ckpt, tmp_path):
    """A reader polling --out while it is replaced always finds a complete artifact."""
    out = tmp_path / "art"
    optimise(ckpt, out, recipe=Recipe(steps=[ExportOnnx()]))
    seen, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                seen.append(Manifest.read(out).lineage[-1].step)
            except Exception as exc:
                seen.append(f"failed: {exc}")

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(2):
            optimise(ckpt, out, recipe=Recipe(steps=[ExportOnnx(), FuseGraph()]), overwrite=True)
            optimise(ckpt, out, recipe=Recipe(steps=[ExportOnnx()]), overwrite=True)
    finally:
        stop.set()
        reader.join()
    assert seen and not [s for s in seen if s.startswith("failed")], [s for s in seen if s.startswith("failed")][:3]
    assert set(seen) == {"export-onnx", "fuse-graph"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "ckpt"]


PARK_THEN_DIE = """
import os, signal, sys
import toolchain.output as output
output.exchange_paths = lambda a, b: False  # a file system without an atomic exchange
real_rename = os.rename
calls = []
def rename(src, dst):
    real_rename(src, dst)
    calls.append(src)
    if str(dst).endswith("previous"):  # the old artifact is parked; die before the new one moves in
        os.kill(os.getpid(), signal.SIGKILL)
output.os.rename = rename
from bench.cli.optimise import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_between_two_step_replacement_is_recovered(ckpt, tmp_path):
    out = tmp_path / "art"
    first = optimise(ckpt, out, recipe=Recipe(steps=[ExportOnnx()]))
    result = subprocess.run([sys.executable, "-c", PARK_THEN_DIE, str(ckpt), "--out", str(out), "--overwrite", *FP32],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert not out.exists()  # the window the exchange closes on Linux; the next run repairs it
    from toolchain.output import claim_output

    with claim_output(out, overwrite=True):
        assert Manifest.read(out).model_sha256 == first.manifest.model_sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "ckpt"]


SIGNAL_DURING_PARITY = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job may start with SIGINT ignored
import toolchain.api
real = toolchain.api.check_parity
def interrupt(*args, **kwargs):
    os.kill(os.getpid(), signal.{name})
    return real(*args, **kwargs)
toolchain.api.check_parity = interrupt
from bench.cli.optimise import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_termination_cleans_up(ckpt, tmp_path, name, code):
    out = tmp_path / "art"
    result = subprocess.run([sys.executable, "-c", SIGNAL_DURING_PARITY.format(name=name), str(ckpt),
                             "--out", str(out), *FP32], capture_output=True, text=True, timeout=300)
    assert result.returncode == code, result.stderr
    assert "nothing was written" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no artifact, work folder or lock


def test_artifact_permissions_follow_umask(ckpt, tmp_path):
    old = os.umask(0o027)
    try:
        art = optimise(ckpt, tmp_path / "art", recipe=Recipe(steps=[ExportOnnx()]))
    finally:
        os.umask(old)
    assert art.path.stat().st_mode & 0o777 == 0o750
    assert {p.stat().st_mode & 0o777 for p in art.path.iterdir()} == {0o640}


class RecordTempdir(StepConfig):
    """Test-only step: copies its parent and records where temporary files would go."""

    kind: Literal["test-record-tempdir"] = "test-record-tempdir"


@register_step(RecordTempdir)
def _record(parent: Artifact, cfg: RecordTempdir, ctx: StepContext) -> Artifact:
    folder = ctx.new_folder("record")
    shutil.copyfile(parent.model_path, folder / parent.manifest.model_file)
    return derive(parent, folder, cfg, _Timer(), {"tempdir": tempfile.gettempdir()})


class _Timer:
    started_at = "2026-01-01T00:00:00+00:00"

    def elapsed(self) -> float:
        return 0.0


def test_temporary_files_stay_in_the_work_folder(ckpt, tmp_path):
    art = optimise(ckpt, tmp_path / "art", recipe=Recipe(steps=[ExportOnnx(), RecordTempdir()]))
    used = art.manifest.lineage[-1].details["tempdir"]
    assert Path(used).parent.name.startswith(".art.partial-"), used
    assert tempfile.gettempdir() != used


@pytest.fixture()
def small_mount(tmp_path):
    """A tiny tmpfs (needs root, as on CI); options chosen by the test."""
    mounted = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_full_disk(ckpt, small_mount, capsys):
    disk = small_mount("size=64k")
    expect_refusal(capsys, [str(ckpt), "--out", str(disk / "art"), *FP32], "space")
    assert list(disk.iterdir()) == []


def test_read_only_file_system(ckpt, small_mount, capsys):
    disk = small_mount("size=1m,ro")
    expect_refusal(capsys, [str(ckpt), "--out", str(disk / "art"), *FP32], "Read-only file system")


# -- broken models must never pass as checked ---------------------------------------------------------

class PoisonWithNan(StepConfig):
    """Test-only step: one weight becomes NaN, as a broken optimisation pass might leave it."""

    kind: Literal["test-poison-nan"] = "test-poison-nan"


@register_step(PoisonWithNan)
def _poison(parent: Artifact, cfg: PoisonWithNan, ctx: StepContext) -> Artifact:
    import onnx
    from onnx import numpy_helper

    folder = ctx.new_folder("poison")
    model = onnx.load(str(parent.model_path))
    init = [i for i in model.graph.initializer if len(i.dims) == 2 and min(i.dims) > 4][-1]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32("nan"), init.name))
    onnx.save(model, str(folder / parent.manifest.model_file))
    return derive(parent, folder, cfg, _Timer(), {})


def test_nan_outputs_fail_parity(ckpt, tmp_path):
    for parity in ({}, {"lossy_parity": {"atol": None, "min_agreement": 0.0}}):
        recipe = Recipe.from_dict({"steps": [{"kind": "export-onnx"}, {"kind": "test-poison-nan"}], **parity})
        with pytest.raises(ParityError, match="NaN or infinite"):
            optimise(ckpt, tmp_path / "art", recipe=recipe)
    assert not (tmp_path / "art").exists()


def test_checkpoint_with_nan_weights(ckpt, tmp_path):
    from safetensors.numpy import load_file, save_file

    weights = {k: v.copy() for k, v in load_file(ckpt / "model.safetensors").items()}  # copies: the file is mapped
    name = next(k for k in weights if k.endswith("query.weight"))
    weights[name] = weights[name] * np.float32("nan")
    save_file(weights, ckpt / "poisoned.safetensors", metadata={"format": "pt"})
    os.replace(ckpt / "poisoned.safetensors", ckpt / "model.safetensors")
    with pytest.raises(CheckpointError, match="NaN or infinity"):
        optimise(ckpt, tmp_path / "art", recipe=Recipe(steps=[ExportOnnx()]))


def test_checkpoint_without_tokenizer_files(ckpt, capsys):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (ckpt / name).unlink()
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), *FP32], "no tokenizer files")


def test_tokenizer_of_another_model(ckpt, checkpoint_factory, capsys):
    other = checkpoint_factory("roberta", "text-classification")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(other / name, ckpt / name)
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), *FP32], "do not belong together")


def test_pickle_named_by_a_safetensors_index(ckpt, capsys):
    import torch
    from safetensors.torch import load_file

    state = {k: v.clone() for k, v in load_file(ckpt / "model.safetensors").items()}
    torch.save(state, ckpt / "pytorch_model.bin")
    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: "pytorch_model.bin"
                                                                                   for k in state}}))
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), *FP32], "not safetensors")


def test_pickle_renamed_to_safetensors(ckpt, capsys):
    import torch
    from safetensors.torch import load_file

    torch.save({k: v.clone() for k, v in load_file(ckpt / "model.safetensors").items()}, ckpt / "pickle.bin")
    os.replace(ckpt / "pickle.bin", ckpt / "model.safetensors")
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), "--allow-pickle", *FP32],
                   "not safetensors")


def test_index_naming_files_outside_the_folder(ckpt, capsys):
    (ckpt / "model.safetensors").rename(ckpt / "shard.safetensors")
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../shard.safetensors"}}))
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), *FP32], "outside the checkpoint")


@pytest.mark.parametrize("id2label, message", [
    ({"0": "negative", "2": "neutral", "5": "positive"}, "label ids must be 0..2"),
    ({"0": "negative", "1": "negative", "2": "positive"}, "distinct"),
    ({"a": "negative", "b": "neutral", "c": "positive"}, "keys must be integers"),
    ({"0": "neg", "1": "neu", "2": "pos", "3": "extra"},
     "config.json gives 4 labels (id2label / num_labels) but the weights' task head has 3 outputs"),
])
def test_label_ids(ckpt, capsys, id2label, message):
    config = json.loads((ckpt / "config.json").read_text())
    config["id2label"] = id2label
    config["label2id"] = {v: int(k) if k.isdigit() else 0 for k, v in id2label.items()}
    (ckpt / "config.json").write_text(json.dumps(config))
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), *FP32], message)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_fifo_in_checkpoint_does_not_hang(ckpt, capsys, no_hang, name):
    (ckpt / name).unlink()
    os.mkfifo(ckpt / name)
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), *FP32], "not a regular file")


def test_broken_symlink_in_checkpoint(ckpt, capsys):
    (ckpt / "vocab.txt").symlink_to(ckpt / "gone.txt")
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), *FP32], "broken symbolic link")


def test_config_nesting_bomb(ckpt, capsys):
    (ckpt / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), *FP32], "nested too deeply")


# -- recipes: wrong types, bombs, hostile regular expressions ------------------------------------------

@pytest.mark.parametrize("content, suffix, message", [
    ('{"steps": [{"kind": "export-onnx", "opset": "x"}]}', ".json", "opset"),
    ('{"steps": [{"kind": ["export-onnx"]}]}', ".json", "needs a 'kind'"),
    ('{"steps": "export-onnx"}', ".json", "steps must be a list"),
    ('[1, 2]', ".json", "expected a table"),
    ('{"steps": [{"kind": "export-onnx"}], "parity": {"atol": -1}}', ".json", "parity.atol"),
    ('{"steps": [{"kind": "fuse-graph"}]}', ".json", "the recipe starts from a PyTorch checkpoint"),
    ("[" * 100_000 + "]" * 100_000, ".json", "nested too deeply"),
    ("a = " + "[" * 100_000 + "]" * 100_000, ".toml", "nested too deeply"),
    ('steps = 3', ".toml", "steps must be a list"),
    ('{"steps": [{"kind": "export-onnx"}, {"kind": "quantize-dynamic-int8", "keep_fp32": ["("]}]}', ".json",
     "not a valid regular expression"),
    ("steps = [", ".toml", "cannot be parsed"),
    ('{"steps": []}', ".yaml", "must end in .json or .toml"),
])
def test_bad_recipe(ckpt, tmp_path, capsys, content, suffix, message):
    recipe = tmp_path / f"recipe{suffix}"
    recipe.write_text(content)
    expect_refusal(capsys, [str(ckpt), "--out", str(tmp_path / "art"), "--recipe", str(recipe), "-q"], message)
    assert not (tmp_path / "art").exists()


def test_catastrophic_regex_is_time_boxed(ckpt, tmp_path, capsys, monkeypatch, no_hang):
    import toolchain.steps.base as base

    monkeypatch.setattr(base, "MATCH_SECONDS", 0.5)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": [{"kind": "export-onnx"},
                                            {"kind": "quantize-dynamic-int8", "keep_fp32": ["^(.|.)*[0-9][0-9]$"]}]}))
    expect_refusal(capsys, [str(ckpt), "--out", str(tmp_path / "art"), "--recipe", str(recipe), "-q"],
                   "catastrophic backtracking")


def test_recipe_fifo_and_huge_file(ckpt, tmp_path, capsys, no_hang):
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)
    expect_refusal(capsys, [str(ckpt), "--out", str(tmp_path / "art"), "--recipe", str(fifo)], "not a regular file")
    huge = tmp_path / "big.json"
    huge.write_text(" " * (2 << 20) + "{}")
    expect_refusal(capsys, [str(ckpt), "--out", str(tmp_path / "art"), "--recipe", str(huge)], "larger than")


# -- data files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, message", [
    ("d.csv", "review,label\ngood,positive\n", "no 'text' column"),
    ("d.csv", "text,label\ngood,7\n", "out of range"),
    ("d.csv", "text,label\ngood,maybe\n", "neither a class index nor a label name"),
    ("d.csv", "", "has no rows"),
    ("d.jsonl", '{"text": "good"}\n[1]\n', "not a JSON object"),
    ("d.jsonl", "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ("d.txt", "text\ngood\n", "unsupported data format"),
    ("d.parquet", "not parquet at all", "not a readable Parquet file"),
])
def test_bad_data_file(ckpt, tmp_path, capsys, name, content, message):
    data = tmp_path / name
    data.write_text(content)
    expect_refusal(capsys, [str(ckpt), "--out", str(tmp_path / "art"), "--preset", "int8-static",
                            "--data", str(data), "-q"], message)


def test_data_not_utf8_and_fifo(ckpt, tmp_path, capsys, no_hang):
    data = tmp_path / "d.csv"
    data.write_bytes(b"text,label\n\xff\xfe bad bytes,1\n")
    expect_refusal(capsys, [str(ckpt), "--out", str(tmp_path / "art"), "--preset", "int8-static",
                            "--data", str(data)], "not a readable UTF-8 CSV")
    fifo = tmp_path / "f.csv"
    os.mkfifo(fifo)
    expect_refusal(capsys, [str(ckpt), "--out", str(tmp_path / "art"), "--preset", "int8-static",
                            "--data", str(fifo)], "not a regular file")


def test_unknown_option_is_one_line(ckpt, tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.cli.optimise", str(ckpt), "--out", str(tmp_path / "a"),
                             "--no-such-option"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unrecognized arguments" in result.stderr


def test_unsupported_architecture(ckpt, capsys):
    config = json.loads((ckpt / "config.json").read_text())
    config["model_type"] = "gpt2"
    (ckpt / "config.json").write_text(json.dumps(config))
    expect_refusal(capsys, [str(ckpt), "--out", str(ckpt.parent / "art"), *FP32], "not supported")


def test_replace_keeps_lineage_of_the_new_run(ckpt, tmp_path):
    out = tmp_path / "art"
    optimise(ckpt, out, recipe=Recipe(steps=[ExportOnnx(), FuseGraph()]))
    again = optimise(ckpt, out, recipe=Recipe(steps=[ExportOnnx()]), overwrite=True)
    assert [r.step for r in Manifest.read(out).lineage] == ["source", "export-onnx"]
    assert dataclasses.asdict(Manifest.read(out)) == dataclasses.asdict(again.manifest)
