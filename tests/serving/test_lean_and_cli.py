"""`import runtimes.serving` stays lean, and `optimise serve` fails with one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.cli import main as optimise
from runtimes.serving.cli import main as serve

from .conftest import needs_serve_extra

LEAN = """
import json, sys
import runtimes.serving, runtimes.serving.config, runtimes.serving.protocol, runtimes.serving.cli
import runtimes.serving.triton, runtimes.serving.ovms, runtimes.serving.remote
heavy = sorted(m for m in ("ray", "tritonclient", "torch", "transformers", "toolchain", "bench", "pydantic")
               if m in sys.modules)
print(json.dumps(heavy))
"""


def test_serving_modules_import_neither_ray_nor_torch():
    result = subprocess.run([sys.executable, "-c", LEAN], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("argv, fragment", [
    (["config", "/no/such/artifact"], "is not a folder"),
    (["triton", "/no/such/artifact", "--repo", "REPO"], "not an artifact folder"),
    (["ovms", "/no/such/artifact", "--repo", "REPO"], "not an artifact folder"),
])
def test_expected_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, fragment):
    argv = [a.replace("REPO", str(tmp_path / "repo")) for a in argv]
    assert serve(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("optimise serve: error:") and fragment in err
    assert "Traceback" not in err


def test_bad_options_exit_2(artifact_factory, tmp_path, capsys):
    art = artifact_factory("bert", "text-classification")
    assert serve(["config", str(art.path), "--max-batch-size", "0", "--out", str(tmp_path / "s.yaml")]) == 2
    assert "max_batch_size" in capsys.readouterr().err
    assert serve(["config", str(art.path), "--autoscale", "2", "--out", str(tmp_path / "s.yaml")]) == 2
    assert "MIN:MAX" in capsys.readouterr().err
    assert serve(["triton", str(art.path), "--repo", str(tmp_path), "--accelerator", "tensorrt", "--kind", "cpu"]) == 2
    assert "GPU instances" in capsys.readouterr().err
    assert serve(["frobnicate"]) == 2  # a usage error too: one line, exit 2, as every command
    err = capsys.readouterr().err
    assert "invalid choice" in err and len(err.strip().splitlines()) == 1


@needs_serve_extra
def test_subcommands_through_optimise(artifact_factory, ir_artifact, tmp_path, capsys):
    art = artifact_factory("bert", "text-classification")
    out = tmp_path / "serve.yaml"
    assert optimise(["serve", "config", str(art.path), "--out", str(out), "--no-batching", "--port", "8123"]) == 0
    assert "serve run" in capsys.readouterr().out and "port: 8123" in out.read_text()
    assert optimise(["serve", "config", str(art.path), "--out", str(out)]) == 2  # exists, no --overwrite
    assert optimise(["serve", "triton", str(art.path), "--repo", str(tmp_path / "triton")]) == 0
    assert "checked against Triton's ModelConfig schema" in capsys.readouterr().out
    assert optimise(["serve", "ovms", str(ir_artifact.path), "--repo", str(tmp_path / "ovms"), "--name", "m"]) == 0
    assert (tmp_path / "ovms" / "m" / "1" / "model.xml").is_file()
