"""The `optimise` command: exit codes, one-line errors, summary, and no half-written output."""

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from bench.cli.optimise import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli.optimise", *args], capture_output=True, text=True,
                          timeout=300)


def test_success_prints_summary(bert_cls, tmp_path):
    result = run_cli(str(bert_cls), "--out", str(tmp_path / "a"), "--preset", "fp32")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "export-onnx (" in result.stdout and "fuse-graph (" in result.stdout
    assert "labels: negative, neutral, positive" in result.stdout
    assert (tmp_path / "a" / "manifest.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}"], "does not exist"),
        (["{ckpt}", "--task", "summarization"], "unknown task 'summarization'"),
        (["{ckpt}", "--task", "question-answering"], "does not match"),
        (["{ckpt}", "--preset", "fp32", "--recipe", "r.json"], "cannot be combined"),
        (["{ckpt}", "--preset", "int8-static"],
         "quantize-static-int8 needs calibration data: pass --calibration-data (or --data)"),
        (["{ckpt}", "--target", "cuda", "--preset", "int8"], "unknown preset 'int8' for target cuda"),
        (["{ckpt}", "--data", "{missing}.csv", "--preset", "int8-static"], "does not exist"),
        (["{ckpt}", "--recipe", "{missing}.json"], "does not exist"),
        (["{ckpt}", "--opset", "9"], "opset"),
    ],
)
def test_expected_errors_are_one_line(bert_cls, tmp_path, capsys, args, message):
    filled = [a.format(missing=tmp_path / "missing", ckpt=bert_cls) for a in args]
    code = main([*filled, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert err.startswith("optimise: error:") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(bert_cls, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert main([str(bert_cls), "--out", str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_unwritable_output(bert_cls, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main([str(bert_cls), "--out", str(tmp_path / "file" / "out")]) == 2
    assert "cannot create" in capsys.readouterr().err


def test_verbose_shows_traceback(tmp_path):
    result = run_cli(str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "-v")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "does not exist" in result.stderr


def test_recipe_file(bert_cls, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(textwrap.dedent("""
        name = "mine"
        [[steps]]
        kind = "export-onnx"
        opset = 17
        [parity]
        atol = 1e-3
    """))
    assert main([str(bert_cls), "--out", str(tmp_path / "a"), "--recipe", str(recipe), "-q"]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["recipe"]["name"] == "mine"
    assert manifest["recipe"]["steps"][0]["opset"] == 17
    assert manifest["parity"][0]["outputs"][0]["atol"] == 1e-3


KILL_DURING_PARITY = """
import os, signal, sys
import toolchain.api
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
toolchain.api.check_parity = die
from bench.cli.optimise import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_run_leaves_no_valid_looking_folder(bert_cls, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", KILL_DURING_PARITY, str(bert_cls), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL
    assert not out.exists()
    # the export had been written when it died, but nothing anywhere carries a manifest
    assert any((tmp_path).rglob("model.onnx")), "the kill should land after the export step"
    assert not list(tmp_path.rglob("manifest.json"))
    # what a SIGKILL leaves: the work folder, and the (unlocked) lock file; the next run removes both
    assert {p.name.split("-")[0] for p in tmp_path.iterdir()} == {".out.partial", ".out.lock"}
    assert main([str(bert_cls), "--out", str(out), "--preset", "fp32", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_openvino_int8_with_data(bert_cls, tmp_path):
    data = tmp_path / "calib.csv"
    data.write_text("text,label\n" + "".join(f"review number {i} was fine,positive\n" for i in range(20)))
    code = main([str(bert_cls), "--out", str(tmp_path / "ov"), "--target", "openvino", "--preset", "int8",
                 "--data", str(data), "-q"])
    assert code == 0
    manifest = json.loads((tmp_path / "ov" / "manifest.json").read_text())
    assert manifest["format"] == "openvino-ir" and manifest["recipe"]["target"] == "openvino"
    assert [r["step"] for r in manifest["lineage"]] == ["source", "export-onnx", "openvino-ir", "openvino-int8"]


def test_default_is_cpu_int8(bert_cls, tmp_path):
    result = run_cli(str(bert_cls), "--out", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["recipe"]["name"] == "int8" and manifest["recipe"]["target"] == "cpu"
    assert "quantised ops" in result.stdout and "fused operators" in result.stdout


def test_max_length_sets_the_artifacts_window_and_cannot_exceed_the_models(bert_cls, tmp_path, capsys):
    assert main([str(bert_cls), "--out", str(tmp_path / "a"), "--preset", "fp32", "--max-length", "16", "-q"]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["max_length"] == 16 and manifest["recipe"]["steps"][0]["max_length"] == 16
    assert main([str(bert_cls), "--out", str(tmp_path / "b"), "--max-length", "100000", "-q"]) == 2
    assert "longer than the model's window" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_truncation_is_recorded_and_refused_where_words_must_stay_in_order(bert_cls, checkpoint_factory, tmp_path,
                                                                           capsys):
    assert main([str(bert_cls), "--out", str(tmp_path / "a"), "--preset", "fp32", "--truncation", "head+tail",
                 "-q"]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["truncation"] == "head+tail" and manifest["recipe"]["steps"][0]["truncation"] == "head+tail"
    ner = checkpoint_factory("bert", "token-classification")
    assert main([str(ner), "--out", str(tmp_path / "b"), "--truncation", "head+tail", "-q"]) == 2
    assert "for text classification, not token-classification" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
