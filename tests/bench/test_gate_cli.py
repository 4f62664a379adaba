"""`optimise gate` and `optimise bench` on tiny artifacts: exit codes, one-line errors, Markdown and JUnit."""

import json
import xml.etree.ElementTree as ET

import pytest

import bench.gate.run as gate_cli
from bench.cli import main as optimise
from bench.gate.decision import GatePolicy, Outcome, Verdict
from bench.gate.output import GateRun, junit_xml, markdown_summary

FAST = ["--min-rounds", "3", "--max-rounds", "6", "--block", "4", "--threads", "1"]


def verdict(outcome, ratio, conclusive=True):
    return Verdict(outcome, conclusive, ratio, ratio - 0.02, ratio + 0.02, 1e-4 if ratio > 1.1 else 0.4, 10, 1.1,
                   f"ratio {ratio}")


def run_of(outcome, ratio, mode="interleaved"):
    return GateRun(verdict(outcome, ratio), GatePolicy(), mode, "base", "cand", 16, 3, 2, 3.5, "test machine")


@pytest.fixture()
def art(artifact_factory):
    return artifact_factory("bert", "text-classification").path


@pytest.mark.parametrize("outcome, ratio, code", [(Outcome.PASS, 1.01, 0), (Outcome.REGRESSION, 1.3, 1)])
def test_exit_code_follows_the_verdict(art, tmp_path, monkeypatch, capsys, outcome, ratio, code):
    monkeypatch.setattr(gate_cli, "run_sequential", lambda sample, policy, paired: (sample(policy.min_rounds),
                                                                                   verdict(outcome, ratio))[1])
    summary, junit = tmp_path / "s.md", tmp_path / "j.xml"
    rc = optimise(["gate", str(art), "--baseline", str(art), "--summary", str(summary), "--junit", str(junit), *FAST])
    assert rc == code
    assert ("REGRESSION" if code else "PASS") in capsys.readouterr().out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == str(code)
    assert (suite.find("testcase/failure") is not None) == bool(code)
    assert f"{ratio:.3f}" in summary.read_text()


def test_a_real_run_writes_well_formed_outputs(art, tmp_path, capsys):
    summary, junit = tmp_path / "s.md", tmp_path / "j.xml"
    rc = optimise(["gate", str(art), "--baseline", str(art), "--summary", str(summary), "--junit", str(junit), *FAST])
    assert rc in (0, 1)  # the same model twice; which way noise falls is for tools/gate_trials to measure
    text = summary.read_text()
    assert "Latency gate" in text and "Mann-Whitney" in text and "same folder" in text
    assert ET.parse(junit).getroot().tag == "testsuites"


def test_saved_report_mode_is_labelled_weaker(art, tmp_path):
    out = tmp_path / "base"
    assert optimise(["bench", str(art), "--out", str(out), "--threads", "1", "--latency-texts", "8", "--rounds", "2",
                     "--shapes", "1x8", "--throughput-batch", "4", "--footprint-requests", "2", "--gate-rounds", "4",
                     "--block", "4", "--gate-threads", "1", "--no-plot"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["subjects"][0]["gate_reference"]["normalised"]) == 4
    summary = tmp_path / "s.md"
    rc = optimise(["gate", str(art), "--baseline", str(out / "report.json"), "--summary", str(summary), *FAST])
    assert rc in (0, 1)
    assert "Weaker mode" in summary.read_text()
    # a different workload cannot be compared with the saved one
    rc = optimise(["gate", str(art), "--baseline", str(out / "report.json"), *FAST[:4], "--block", "5",
                   "--threads", "1"])
    assert rc == 2


def one_line_error(capsys, needle):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("optimise gate: error:") and needle in err[0], err


def test_bad_inputs_exit_2_with_one_line(art, artifact_factory, tmp_path, capsys):
    ner = artifact_factory("bert", "token-classification").path
    capsys.readouterr()  # building the fixture prints progress
    assert optimise(["gate", str(art), "--baseline", str(art), "--max-slowdown", "10"]) == 2
    one_line_error(capsys, "ambiguous")
    assert optimise(["gate", str(tmp_path / "nope"), "--baseline", str(art)]) == 2
    one_line_error(capsys, "nope")
    assert optimise(["gate", str(ner), "--baseline", str(art)]) == 2
    one_line_error(capsys, "token-classification")
    assert optimise(["gate", str(art)]) == 2
    one_line_error(capsys, "--baseline")
    (tmp_path / "r.json").write_text("{}")
    assert optimise(["gate", str(art), "--baseline", str(tmp_path / "r.json")]) == 2
    one_line_error(capsys, "schema version")


def test_help_exits_0(capsys):
    assert optimise(["gate", "--help"]) == 0
    assert "--max-slowdown" in capsys.readouterr().out


def test_markdown_and_junit_outputs():
    ok, bad = run_of(Outcome.PASS, 1.02), run_of(Outcome.REGRESSION, 1.25, mode="saved-report")
    md_ok, md_bad = markdown_summary(ok), markdown_summary(bad)
    assert "pass" in md_ok.splitlines()[0] and "regression" in md_bad.splitlines()[0]
    assert "Weaker mode" in md_bad and "Weaker mode" not in md_ok
    assert "+2.0%" in md_ok and "10 x (16 x 3)" in md_ok and "3.5 s" in md_ok
    root = ET.fromstring(junit_xml(bad).split("\n", 1)[1])
    case = root.find("testsuite/testcase")
    assert case.get("name") == "cand vs base" and case.find("failure").get("type") == "LatencyRegression"
    assert "1.250" in case.find("failure").get("message")
    assert ET.fromstring(junit_xml(ok).split("\n", 1)[1]).find("testsuite/testcase/failure") is None


def test_cpu_clock_needs_one_thread(art, capsys):
    assert gate_cli.choose_clock("wall", 2) == "wall" and gate_cli.choose_clock("cpu", 1) == "cpu"
    assert optimise(["gate", str(art), "--baseline", str(art), "--clock", "cpu", "--threads", "2"]) == 2
    assert "--threads 1" in capsys.readouterr().err
