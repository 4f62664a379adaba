"""`optimise search`: candidate order and pruning, budgets, the whole search on a tiny model, resuming,
two workers on one study, nothing meeting the budget, and peers that are missing."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main as optimise
from bench.search import run as search
from bench.search.measure import Measured, WindowResult, windows_for
from bench.search.report import search_markdown
from bench.search.space import Finished, Status, candidates_for, skip_reason
from runtimes.common.errors import InputError
from runtimes.common.manifest import Manifest
from toolchain.recipe import Target

WORDS = ["the", "film", "was", "great", "bad", "boring", "fine", "story", "actor", "plot", "music", "long", "short",
         "funny", "sad"]


def _write(path: Path, n: int, seed: int) -> Path:
    import random

    rng = random.Random(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            w.writerow([" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) + f" {seed}-{i}",
                        rng.choice(["positive", "negative", "neutral"])])
    return path


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("search-data")
    return {name: _write(root / f"{name}.csv", n, seed) for name, n, seed in
            (("train", 40, 1), ("eval", 30, 2), ("test", 30, 3))}


def _args(ckpt, splits, out, work, *extra):
    return [str(ckpt), "--max-accuracy-drop", "100", "--eval-data", str(splits["eval"]), "--out", str(out),
            "--work-dir", str(work), "--no-students", "--peers", "none", "--latency-texts", "10", *extra]


# -- the space and its rules -----------------------------------------------------------------------

def test_candidates_run_cheap_first_and_students_from_the_largest_down():
    found = candidates_for(Target.CPU, 6, 1.0)
    trains = [c.trains for c in found]
    assert trains == sorted(trains)  # every graph-only candidate before any student
    assert [c.name for c in found[:2]] == ["fp32", "int8"]
    ranks = [c.size_rank for c in found if c.trains]
    assert ranks == sorted(ranks) and ranks[0] == 1
    assert found[-1].name.startswith("2-layer student, heads and FFN pruned")
    both = next(step for step in found[-1].steps if type(step).__name__ == "PruneHeadsAndNeurons")
    assert (both.keep_heads, both.keep_ffn) == (0.5, 0.5)
    assert {c.engine.value for c in found if c.size_rank == 1} == {"onnxruntime", "openvino"}
    for c in found:  # every candidate is a valid recipe for its own target
        assert c.recipe().steps == c.steps
    assert all(not c.trains for c in candidates_for(Target.CPU, 6, 1.0, students=False))
    assert [c.name for c in candidates_for(Target.OPENVINO, 1, 1.0)] == ["openvino fp32", "openvino int8"]
    assert not any("kept fp32" in c.name for c in candidates_for(Target.CPU, 6, 1.0, budgeted_int8=False))
    kept = {c.name: c for c in candidates_for(Target.CPU, 6, 1.0, confidence=0.8)}[
        "int8, layers kept fp32 to fit the budget"]
    assert (kept.steps[-1].accuracy_budget, kept.steps[-1].accuracy_confidence) == (1.0, 0.8)


def test_a_student_that_missed_rules_out_smaller_ones_unless_another_engine_passed():
    found = {c.name: c for c in candidates_for(Target.CPU, 6, 1.0)}
    smaller = found["2-layer student, int8"]
    missed = [Finished("3-layer student, int8", Status.MISSED, 1, 2.5),
              Finished("3-layer student, openvino int8", Status.MISSED, 1, 1.7)]
    reason = skip_reason(smaller, missed, 1.0, None)
    assert reason and "1.70 points" in reason and "3-layer student, openvino int8" in reason
    assert skip_reason(found["2-layer student, FFN pruned to 50%, int8"], missed, 1.0, None)
    one_passed = [missed[0], Finished("3-layer student, openvino int8", Status.PASSED, 1, 0.4)]
    assert skip_reason(smaller, one_passed, 1.0, None) is None
    failed = [Finished("3-layer student, int8", Status.FAILED, 1)]  # a build failure says nothing about accuracy
    assert skip_reason(smaller, failed, 1.0, None) is None
    assert skip_reason(found["3-layer student, int8"], missed, 1.0, None) is None  # not smaller than itself


def test_int8_passing_rules_out_keeping_layers_fp32_and_a_spent_time_budget_stops_everything():
    found = {c.name: c for c in candidates_for(Target.CPU, 6, 1.0)}
    keep = found["int8, layers kept fp32 to fit the budget"]
    assert "only be slower" in skip_reason(keep, [Finished("int8", Status.PASSED, 0, 0.2)], 1.0, None)
    assert skip_reason(keep, [Finished("int8", Status.MISSED, 0, 2.0)], 1.0, None) is None
    assert "time budget" in skip_reason(found["fp32"], [], 1.0, time_left_s=0)


def test_budgets_windows_and_durations_parse_or_say_why():
    assert search.parse_budget("1.0") == (1.0, False) and search.parse_budget(" 2% ") == (2.0, True)
    for bad in ("one", "-1", "101", "nan", "%"):
        with pytest.raises(InputError):
            search.parse_budget(bad)
    assert search.parse_duration("90m") == 5400 and search.parse_duration("2h") == 7200
    assert search.parse_duration("30") == 1800  # minutes by default
    for bad in ("soon", "0", "-5m"):
        with pytest.raises(InputError):
            search.parse_duration(bad)
    lengths = [20] * 90 + [300] * 10  # 10% of texts are longer than 256, 128, 64 and 32
    assert windows_for(lengths, 512) == [(512, "head"), (256, "head"), (128, "head"), (64, "head")]
    assert windows_for([20] * 100, 512) == [(512, "head")]  # no text is cut by a shorter window: nothing to gain
    assert [w.tokens for w in windows_for(lengths, 512, cap=128)] == [128, 64, 32]
    # head+tail only where texts are cut: not at 512, which every text fits
    assert [w.label() for w in windows_for(lengths, 512, cap=128, head_tail=True)] == [
        "128", "128 head+tail", "64", "64 head+tail", "32", "32 head+tail"]
    assert windows_for([600] * 10, 512, head_tail=True)[:2] == [(512, "head"), (512, "head+tail")]
    m = Measured(1.0, [WindowResult(512, 0.9, 0.2, 0.5, 3.0, 1.0), WindowResult(64, 0.88, 0.6, 0.9999999999, 4.0, 0.8),
                       WindowResult(32, 0.89, 0.3, 1.4, 5.0, 0.7)])
    assert m.best(1.0).window == 64  # the fastest whose drop bound fits; 1 - 0.99 float noise still fits
    assert m.best(0.1).window == 512  # none fits: the one with the smallest bound
    # a cut window must be at least 10% faster than the full one that fits: a 5% gain is not worth its risk
    close = Measured(1.0, [WindowResult(512, 0.9, 0.2, 0.5, 3.0, 1.0), WindowResult(32, 0.9, 0.1, 0.4, 3.15, 0.95,
                                                                                     "head+tail")])
    assert close.best(1.0).window == 512
    assert close.best(0.45).truncation == "head+tail"  # unless the full window does not fit


# -- whole searches on a tiny model ----------------------------------------------------------------

def test_search_writes_the_fastest_candidate_with_its_settings_and_resumes_from_the_study(
        bert_cls, splits, tmp_path, capsys):
    out, work = tmp_path / "model", tmp_path / "work"
    rc = optimise(_args(bert_cls, splits, out, work, "--test-data", str(splits["test"])))
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = json.loads((tmp_path / "model-search" / "search.json").read_text())
    names = [r["name"] for r in summary["candidates"]]
    assert names == [c.name for c in candidates_for(Target.CPU, 2, 100.0, students=False)]
    statuses = {r["name"]: r["status"] for r in summary["candidates"]}
    assert statuses["int8, layers kept fp32 to fit the budget"] == "skipped"  # int8 fits a 100-point budget
    assert all(s == "passed" for n, s in statuses.items() if n != "int8, layers kept fp32 to fit the budget")
    chosen = summary["chosen"]
    fastest = max((r for r in summary["candidates"] if r["status"] == "passed"), key=lambda r: r["speedup"])
    assert chosen["name"] in [r["name"] for r in summary["candidates"]]
    assert chosen["speedup"] >= 0.5 * fastest["speedup"]  # a finalist: re-timed side by side, noise may reorder
    manifest = Manifest.read(out)
    assert manifest.lineage[-1].step == "search" and manifest.lineage[-1].config["candidate"] == chosen["name"]
    assert manifest.runtime.threads == chosen["threads"] and manifest.runtime.measured_on
    assert manifest.max_length == chosen["window"] and manifest.truncation == chosen["truncation"]
    assert {s["name"] for s in summary["settings"]} <= set(names)
    test_rows = {r["name"]: r for r in summary["test"]["rows"]}
    assert summary["test"]["examples"] == 30 and "PyTorch fp32" in test_rows
    ours = next(r for name, r in test_rows.items() if name.startswith("ours: "))
    low, high = ours["drop_interval"]
    assert low <= ours["drop"] <= high and ours["e2e_ms"] > ours["model_ms"] > 0
    md = (tmp_path / "model-search" / "search.md").read_text()
    assert f"**Chosen: {chosen['name']}**" in md and "Test split (30 examples)" in md
    assert (tmp_path / "model-search" / "search.png").stat().st_size > 10_000

    # the same command again resumes the study: nothing is built again, and --out is only replaced when asked
    assert optimise(_args(bert_cls, splits, out, work)) == 2
    assert "already exists" in capsys.readouterr().err
    assert optimise(_args(bert_cls, splits, out, work, "--overwrite")) == 0
    assert "building" not in capsys.readouterr().err


def test_a_question_answering_checkpoint_is_searched_and_scored_on_test(checkpoint_factory, tmp_path, capsys):
    import random

    rng = random.Random(5)
    files = {}
    for name, n in (("eval", 24), ("test", 16)):
        rows = []
        for _ in range(n):
            context = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
            rows.append({"question": f"which {rng.choice(WORDS)}?", "context": context,
                         "answers": {"text": [context.split()[0]]}})
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    ckpt = checkpoint_factory("bert", "question-answering")
    rc = optimise(_args(ckpt, files, tmp_path / "model", tmp_path / "work", "--test-data", str(files["test"])))
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "model-search" / "search.json").read_text())
    assert not any("kept fp32" in r["name"] for r in summary["candidates"])  # its step cannot score QA
    assert summary["chosen"] and summary["test"]["examples"] == 16
    assert Manifest.read(tmp_path / "model").task.value == "question-answering"


def test_nothing_within_the_budget_exits_1_names_the_closest_and_writes_no_artifact(
        bert_cls, splits, tmp_path, capsys, monkeypatch):
    drops = iter(range(3, 100))

    def far_off(path, baseline, windows, backend="auto"):  # every candidate loses several points
        return Measured(10.0, [WindowResult(w, 0.5, d := float(next(drops)), d + 1, 2.0, 1.0, t) for w, t in windows])

    monkeypatch.setattr(search, "measure_candidate", far_off)
    out = tmp_path / "model"
    rc = optimise(_args(bert_cls, splits, out, tmp_path / "work", "--max-accuracy-drop", "1"))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "nothing met the 1.00-point budget" in err and "closest was fp32 (+3.00 points, at most +4.00)" in err
    assert not out.exists()
    summary = json.loads((tmp_path / "model-search" / "search.json").read_text())
    assert summary["chosen"] is None
    for r in summary["candidates"]:  # missed; the budgeted int8 step may refuse on its own check, also a miss
        assert r["status"] == "missed" or (r["name"].startswith("int8, layers kept fp32")
                                           and "exceeds the accuracy budget" in r["reason"]), r


def test_bad_input_is_one_line_and_exit_2(bert_cls, splits, tmp_path, capsys):
    base = _args(bert_cls, splits, tmp_path / "m", tmp_path / "w")
    for extra, message in ((["--max-accuracy-drop", "lots"], "not a number"),
                           (["--peers", "tflite"], "unknown peer"),
                           (["--time-budget", "later"], "not a duration"),
                           (["--test-data", str(splits["eval"])], "must be unseen"),
                           (["--max-length", "4"], "at least 8"),
                           (["--threads", "-1"], "--threads must be 0"),  # the library's `threads`, as an option
                           (["--storage", "bogus://x"], "cannot open the study storage")):
        assert optimise([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m").exists()
    # the report folder beside OUT: never written over anyone's files
    reports = tmp_path / "m-search"
    reports.mkdir()
    (reports / "notes.md").write_text("mine")
    for extra, message in (([], "not an earlier search report (notes.md)"),
                           (["--overwrite"], "not an earlier search report (notes.md)")):
        assert optimise([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert (reports / "notes.md").read_text() == "mine" and not (tmp_path / "m").exists()


def test_the_python_api_is_the_same_search_and_speaks_of_parameters(bert_cls, splits, tmp_path):
    """`bench.api.search` returns what the CLI reports; its errors name parameters, the CLI's name options."""
    from bench.api import SearchResult, search

    work = tmp_path / "work"
    result = search(bert_cls, tmp_path / "model", max_accuracy_drop=100, eval_data=splits["eval"], work_dir=work,
                    students=False, peers="none", latency_texts=10)
    assert isinstance(result, SearchResult) and result.met_budget and result.exit_code == 0
    summary = json.loads(result.report_json.read_text())
    assert [t.name for t in result.trials] == [r["name"] for r in summary["candidates"]]
    assert [t.status for t in result.trials] == [r["status"] for r in summary["candidates"]]
    assert result.chosen.name == summary["chosen"]["name"] and result.artifact == tmp_path / "model"
    assert Manifest.read(result.artifact).lineage[-1].config["candidate"] == result.chosen.name
    skipped = next(t for t in result.trials if t.status == "skipped")
    assert skipped.reason and skipped.quality is None
    assert result.report.name == "search.md" and result.plot is not None and result.plot.exists()
    # the CLI run of the same study finds every trial finished: nothing is built again
    assert optimise(_args(bert_cls, splits, tmp_path / "model2", work)) == 0
    with pytest.raises(InputError, match="`max_accuracy_drop`"):
        search(bert_cls, tmp_path / "m3", max_accuracy_drop="lots", eval_data=splits["eval"])
    with pytest.raises(TypeError, match="no_such_option"):
        search(bert_cls, tmp_path / "m3", max_accuracy_drop=1, eval_data=splits["eval"], no_such_option=1)


def test_two_workers_share_one_study_and_build_each_candidate_once(bert_cls, splits, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    cmd = [sys.executable, "-m", "bench.cli", *_args(bert_cls, splits, tmp_path / "m", tmp_path / "work"),
           "--storage", storage, "--worker"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    workers = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    errs = [w.communicate(timeout=900)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errs
    built = [line.split(":")[0].strip() for err in errs for line in err.splitlines() if line.endswith(": building")]
    assert sorted(built) == sorted(set(built)) and len(built) >= 4  # each candidate built by exactly one worker
    # (whether both workers got a candidate depends on how fast each starts on a loaded machine: not asserted)

    import optuna

    from bench.search.study import outcomes

    (study_name,) = optuna.get_all_study_names(storage)
    found = outcomes(optuna.load_study(study_name=study_name, storage=storage))
    assert set(found) == {c.name for c in candidates_for(Target.CPU, 2, 100.0, students=False)}


# -- peers -------------------------------------------------------------------------------------------

def test_a_peer_that_cannot_be_built_is_reported_missing_with_its_reason(monkeypatch, tmp_path):
    from bench.search import peers

    def no_venv(root):
        raise peers.PeerUnavailable("pip install optimum-onnx==0.1.0 failed: no matching distribution")

    monkeypatch.setattr(peers, "optimum_python", no_venv)
    (peer,) = peers.build_peers(["optimum"], checkpoint=None, calibration=None, work=tmp_path, venv_root=tmp_path)
    assert peer.path is None and "no matching distribution" in peer.reason
    summary = {"task": "text-classification", "target": "cpu", "checkpoint": "ckpt", "budget_points": 1.0,
               "max_accuracy_drop": "1", "baseline_quality": 0.8, "validation_examples": 10, "windows": [[128, "head"]],
               "confidence": 0.9, "threads": 1, "candidates": [],
               "peers": [{"name": peer.name, "peer": True, "status": "missing", "reason": peer.reason}]}
    md = search_markdown(summary)
    assert f"| {peer.name} | missing |" in md and "no matching distribution" in md


def test_candidates_the_clock_stopped_are_built_by_the_next_run(bert_cls, splits, tmp_path, capsys, monkeypatch):
    out, work = tmp_path / "model", tmp_path / "work"
    with monkeypatch.context() as patched:  # a budget already spent when the first candidate would start
        patched.setattr(search, "parse_duration", lambda text: -1.0 if text else None)
        assert optimise(_args(bert_cls, splits, out, work, "--time-budget", "1s")) == 1
    assert not out.exists() and "not started: the time budget was spent" in capsys.readouterr().out
    # the same study, resumed without the clock; a test file that repeats 10 validation rows is scored without them
    mixed = tmp_path / "mixed.csv"
    eval_rows = splits["eval"].read_text().splitlines()
    mixed.write_text("\n".join(splits["test"].read_text().splitlines() + eval_rows[1:11]) + "\n")
    assert optimise(_args(bert_cls, splits, out, work, "--test-data", str(mixed))) == 0
    assert "10 of 40 --test-data examples are also in the training, validation" in capsys.readouterr().err
    summary = json.loads((tmp_path / "model-search" / "search.json").read_text())
    assert {r["status"] for r in summary["candidates"]} <= {"passed", "skipped"}
    assert not any(r.get("retry") for r in summary["candidates"])
    assert summary["test"]["examples"] == 30


def test_bench_students_and_the_search_take_students_from_one_table():
    """Same settings, same step-cache entries: students `python -m tools.students` trained are reused."""
    from toolchain.catalogue import student_sizes
    from toolchain.recipe import Recipe
    from tools.students import SCENARIOS

    bench = {v.name: Recipe.from_dict({"name": "v", "steps": v.steps}).steps for v in SCENARIOS["minilm"]["variants"]}
    search = dict(student_sizes(6))
    for ours, theirs in (("3-layer student", "3-layer student int8, full vocabulary"),
                         ("2-layer student", "2-layer student int8"),
                         ("2-layer student, FFN pruned to 50%", "2-layer student, FFN pruned to 50%, int8")):
        assert tuple(bench[theirs][:len(search[ours])]) == search[ours]


# -- the CPU the search is for -------------------------------------------------------------------------

def test_every_int8_candidate_is_made_for_the_target_cpu():
    from runtimes.common.cpu import CpuTarget
    from toolchain.steps.cpu_target import CpuInt8Step

    def int8_cpus(found):
        return {s.cpu for c in found for s in c.steps if isinstance(s, CpuInt8Step)}

    assert int8_cpus(candidates_for(Target.CPU, 6, 1.0, cpu=CpuTarget("arm64"))) == {"arm64"}
    assert int8_cpus(candidates_for(Target.OPENVINO, 6, 1.0, cpu=CpuTarget("avx2"))) == {"avx2"}
    assert int8_cpus(candidates_for(Target.CPU, 6, 1.0)) == {"native"}


@pytest.mark.parametrize("machine", ["avx2", "avx512", "avx512_vnni", "arm64"])
def test_the_optimum_peer_gets_optimums_config_for_the_cpu(bert_cls, tmp_path, monkeypatch, fake_cpu, machine):
    """Optimum's own AutoQuantizationConfig for the CPU the search is for: avx2's quantises weights as u8."""
    from bench.search import peers
    from toolchain.checkpoint import inspect_checkpoint

    fake_cpu(machine)
    asked = []

    def pipeline(cmd, timeout, what):
        asked.append(cmd)
        raise peers.PeerUnavailable("stopped by the test")

    monkeypatch.setattr(peers, "optimum_python", lambda root: Path(sys.executable))
    monkeypatch.setattr(peers, "_run", pipeline)
    (peer,) = peers.build_peers(["optimum"], inspect_checkpoint(bert_cls), None, tmp_path, tmp_path)
    assert asked[0][-1] == machine and peer.name == f"Optimum O2 + dynamic int8 ({machine})"


def test_a_search_for_another_cpu_says_its_latencies_are_not_the_targets():
    summary = {"task": "text-classification", "target": "cpu:arm64", "checkpoint": "ckpt", "budget_points": 1.0,
               "max_accuracy_drop": "1", "baseline_quality": 0.8, "validation_examples": 10,
               "windows": [[128, "head"]], "confidence": 0.9, "threads": 1, "candidates": [], "peers": [],
               "cpu": {"int8_target": "arm64", "measured_on": "avx512_vnni", "measured_on_target": False},
               "machine_cpu": "Some Xeon"}
    md = search_markdown(summary)
    assert "Int8 made for cpu:arm64; latencies measured on Some Xeon (cpu:avx512_vnni): **not the target's" in md


def test_pretrained_starts_are_their_own_lineage_after_the_layer_students():
    from toolchain.steps import Distil

    starts = [("l3 (3 layers)", "/models/l3", True), ("other (4 layers)", "/models/other", False)]
    found = candidates_for(Target.CPU, 6, 1.0, starts=starts)
    by_name = {c.name: c for c in found}
    start = by_name["l3 (3 layers) student, int8"]
    assert start.lineage == "/models/l3" and start.size_rank == 1 and start.trains
    distil = next(s for s in start.steps if isinstance(s, Distil))
    assert distil.student == "/models/l3" and distil.hidden_weight == 1.0
    other = next(s for s in by_name["other (4 layers) student, int8"].steps if isinstance(s, Distil))
    assert other.hidden_weight == 0.0  # widths or tokenizers differ: soft targets only
    assert [c.lineage for c in found if c.trains][-1] == "/models/other"  # after the layer-subset students
    # a layer-subset student that missed says nothing about a pretrained start; a start that missed rules out
    # its own pruned variant
    missed_cut = [Finished("3-layer student, int8", Status.MISSED, 1, 2.5, "teacher")]
    assert skip_reason(start, missed_cut, 1.0, None) is None
    pruned = by_name["l3 (3 layers) student, FFN pruned to 50%, int8"]
    missed_start = [Finished(start.name, Status.MISSED, 1, 2.0, "/models/l3"),
                    Finished("l3 (3 layers) student, openvino int8", Status.MISSED, 1, 1.9, "/models/l3")]
    assert "already lost" in skip_reason(pruned, missed_start, 1.0, None)
    both = by_name["l3 (3 layers) student, heads and FFN pruned to 50%, int8"]
    assert both.size_rank == 3 and both.steps[0] == pruned.steps[0]  # the same start distillation (cached)
    missed_pruned = [Finished(pruned.name, Status.MISSED, 2, 1.5, "/models/l3")]
    assert "already lost" in skip_reason(both, missed_pruned, 1.0, None)
    quick = [c.name for c in candidates_for(Target.CPU, 6, 1.0, starts=starts[:1], quick=True) if c.trains]
    assert quick == ["3-layer quick student, int8", "l3 (3 layers) quick student, int8"]


def test_a_search_distils_into_a_pretrained_start(bert_cls, checkpoint_factory, splits, tmp_path, capsys):
    start = checkpoint_factory("bert", "text-classification", layers=1)  # the same tokenizer and width
    out = tmp_path / "model"
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("".join(f"{w} story number {i}\n" for i, w in enumerate(WORDS)))
    rc = optimise([str(bert_cls), "--max-accuracy-drop", "100", "--eval-data", str(splits["eval"]), "--out",
                   str(out), "--work-dir", str(tmp_path / "work"), "--train-data", str(splits["train"]),
                   "--student-start", str(start), "--quick", "--peers", "none", "--latency-texts", "10",
                   "--transfer-data", str(unlabelled), "--augment", "1"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "distillation run(s)" in err and "h in all" in err  # the cost, said before any training
    rows = {r["name"]: r for r in json.loads((tmp_path / "model-search" / "search.json").read_text())["candidates"]}
    name = f"{start.name} (1-layer) quick student, int8"
    assert rows[name]["status"] == "passed" and rows[name]["lineage"] == str(start.resolve())
    distil = next(r for r in Manifest.read(Path(rows[name]["artifact"])).lineage if r.step == "distil")
    assert distil.details["student_start"] == str(start.resolve()) and distil.details["hidden_layers_matched"]
    # validation only chooses: the student learnt from 90% of the training data and stopped on the other 10%
    assert (distil.details["train_examples"], distil.details["early_stopping_examples"]) == (36, 4)
    assert (distil.details["augmented_examples"], distil.details["transfer_examples"]) == (36, len(WORDS))
    summary = json.loads((tmp_path / "model-search" / "search.json").read_text())
    assert summary["students_data"]["train_examples"] == 36
    assert "4 examples (10%) held out of `train_data`" in (tmp_path / "model-search" / "search.md").read_text()
    assert optimise([str(bert_cls), "--max-accuracy-drop", "1", "--eval-data", str(splits["eval"]), "--train-data",
                     str(splits["train"]), "--student-start", str(tmp_path), "--out", str(tmp_path / "m2")]) == 2
    assert "--student-start" in capsys.readouterr().err


def test_students_stop_on_their_own_data_never_on_validation(bert_cls, splits, tmp_path, capsys):
    base = [str(bert_cls), "--max-accuracy-drop", "1", "--eval-data", str(splits["eval"]), "--train-data",
            str(splits["train"]), "--peers", "none"]
    # a stopping file that shares examples with validation (which chooses) is refused before anything runs
    assert optimise([*base, "--early-stopping-data", str(splits["eval"]), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--early-stopping-data: 30 of its 30 examples are also in --eval-data" in err
    assert "scoring" not in err
    assert optimise([*base, "--early-stopping-share", "0.9", "--out", str(tmp_path / "b")]) == 2
    assert "between 0 (stop on the validation split) and 0.5" in capsys.readouterr().err
    # nor may students learn the teacher's answers on the validation texts
    assert optimise([*base, "--transfer-data", str(splits["eval"]), "--out", str(tmp_path / "c")]) == 2
    assert "--transfer-data: 30 of its 30 texts are also in --eval-data" in capsys.readouterr().err
    assert optimise([*base, "--augment", "65", "--out", str(tmp_path / "d")]) == 2
    assert "between 0 and 64 copies" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_students_cost_is_estimated_once_per_distinct_training(bert_cls):
    from bench.search.cost import estimate
    from toolchain.checkpoint import inspect_checkpoint

    teacher = inspect_checkpoint(bert_cls)
    found = candidates_for(Target.CPU, 6, 1.0, augment=1)  # students of 3 and 2 layers, each for two engines
    cost = estimate(found, teacher, ["the film was great"] * 8, train_examples=100, transfer_examples=50,
                    start_layers={})
    # 3-layer, its FFN-pruned recovery, 2-layer, and the 2-layer's two pruned recoveries: each trained once
    assert cost.runs == 5 and cost.label_texts == 100 * 2 + 50  # one augmented set, labelled once
    assert cost.train_s > cost.label_s > 0 and "5 distillation run(s)" in cost.describe()
    more = estimate(candidates_for(Target.CPU, 6, 1.0, augment=3), teacher, ["the film"] * 8, 100, 50, {})
    per_text = [c.train_s / c.teacher_ms_per_text for c in (cost, more)]  # the timing itself is the machine's
    assert more.label_texts == 100 * 4 + 50 and per_text[1] > per_text[0]
    assert estimate(candidates_for(Target.CPU, 6, 1.0, students=False), teacher, ["x"], 100, 0, {}) is None


def test_students_may_stop_on_a_share_of_validation_the_teacher_never_saw(bert_cls, splits, tmp_path, capsys):
    rc = optimise([str(bert_cls), "--max-accuracy-drop", "100", "--eval-data", str(splits["eval"]), "--out",
                   str(tmp_path / "model"), "--work-dir", str(tmp_path / "work"), "--train-data", str(splits["train"]),
                   "--quick", "--peers", "none", "--latency-texts", "10", "--early-stopping-from", "validation",
                   "--early-stopping-share", "0.2"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "model-search" / "search.json").read_text())
    assert summary["validation_examples"] == 24  # the other 6 of the 30 stop the students' training
    student = next(r for r in summary["candidates"] if r["name"] == "1-layer quick student, int8")
    distil = next(r for r in Manifest.read(Path(student["artifact"])).lineage if r.step == "distil")
    assert (distil.details["train_examples"], distil.details["early_stopping_examples"]) == (40, 6)
    stopping = summary["students_data"]["early_stopping"]
    assert "6 examples (20%) held out of `eval_data` (the other 24 choose)" in stopping
