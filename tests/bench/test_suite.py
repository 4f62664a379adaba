"""`optimise bench` end to end on tiny models: a PyTorch baseline, quality per task, report and plot."""

import csv
import json
import shutil

import pytest

from bench.cli import main as optimise
from bench.report.schema import read_report

FAST = ["--threads", "1", "--latency-texts", "6", "--rounds", "2", "--shapes", "1x8", "--throughput-batch", "2",
        "--footprint-requests", "2", "--gate-rounds", "0", "--warmup", "1"]


def test_classification_against_a_pytorch_baseline(bert_cls, artifact_factory, tmp_path, capsys):
    art = artifact_factory("bert", "text-classification").path
    data = tmp_path / "data.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([["the film was great", "positive"], ["bad report", "negative"], ["it is", "neutral"],
                     ["who wrote it", 0], ["paris in the café", 2], ["the door", 1]])
    out = tmp_path / "out"
    rc = optimise(["bench", f"tiny onnx={art}", "--baseline", f"tiny torch={bert_cls}", "--data", str(data),
                   "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    report = read_report(out / "report.json")
    torch_row, onnx_row = report.subject("tiny torch"), report.subject("tiny onnx")
    assert report.baseline == "tiny torch" and torch_row.kind == "checkpoint" and onnx_row.kind == "artifact"
    # the fp32 export classifies exactly as the PyTorch model does: same accuracy and macro-F1
    assert onnx_row.quality == torch_row.quality and set(onnx_row.quality) == {"accuracy", "macro_f1"}
    assert onnx_row.quality_examples == 6
    assert onnx_row.latency.samples == 6 * 3 and onnx_row.model_latency.samples == 6 * 3  # 3 passes per block
    for lat in (onnx_row.latency, onnx_row.model_latency, torch_row.latency):
        assert lat.min_ms <= lat.best_ms <= lat.p99_ms  # mean of each input's fastest call
    assert [(s.batch, s.sequence) for s in onnx_row.shapes] == [(1, 8)]
    assert onnx_row.footprint.requests == 2 and onnx_row.footprint.peak_rss_mb > 0
    assert torch_row.footprint.peak_rss_mb > onnx_row.footprint.peak_rss_mb  # torch + transformers weigh more
    md = (out / "report.md").read_text()
    assert "**tiny torch** (baseline)" in md and md in capsys.readouterr().out
    assert (out / "quality_vs_latency_size.png").stat().st_size > 10_000


def test_ner_quality_is_entity_f1(artifact_factory, tmp_path):
    art = artifact_factory("bert", "token-classification").path
    data = tmp_path / "ner.jsonl"
    rows = [{"tokens": ["ada", "was", "in", "paris"], "tags": ["B-PER", "O", "O", "B-LOC"]},
            {"tokens": ["the", "report"], "tags": ["O", "O"]}]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    assert optimise(["bench", str(art), "--data", str(data), "--out", str(out), *FAST,
                     "--footprint-requests", "0"]) == 0
    quality = read_report(out / "report.json").subjects[0].quality
    assert set(quality) == {"entity_precision", "entity_recall", "entity_f1"}
    assert 0 <= quality["entity_f1"] <= 1


def test_qa_quality_is_exact_match_and_f1(artifact_factory, tmp_path):
    art = artifact_factory("bert", "question-answering").path
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "who wrote it?", "context": "the report was written by ada in paris",
                                "answers": {"text": ["ada"]}}) + "\n")
    out = tmp_path / "out"
    assert optimise(["bench", str(art), "--data", str(data), "--out", str(out), *FAST,
                     "--footprint-requests", "0", "--throughput-batch", "1"]) == 0
    assert set(read_report(out / "report.json").subjects[0].quality) == {"exact_match", "f1"}


def test_a_qa_checkpoint_is_a_timed_baseline_that_decodes_like_the_runtime(artifact_factory, checkpoint_factory,
                                                                          tmp_path):
    """transformers 5 has no QA pipeline: the PyTorch baseline answers through the runtime's decoding, so
    the fp32 export (parity-checked) gives the same answers, and both get end-to-end latencies."""
    art = artifact_factory("bert", "question-answering").path
    data = tmp_path / "qa.jsonl"
    rows = [{"question": f"who wrote {w}?", "context": f"the {w} report was written by ada in paris " * (1 + i % 9),
             "answers": {"text": ["ada"]}} for i, w in enumerate(["it", "this", "that", "the plan"] * 3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert optimise(["bench", str(art), "--baseline", str(checkpoint_factory("bert", "question-answering")),
                     "--data", str(data), "--out", str(out), *FAST, "--footprint-requests", "0",
                     "--throughput-batch", "2"]) == 0
    report = read_report(out / "report.json")
    base, ours = report.subject(report.baseline), report.subjects[1]
    assert base.latency is not None and base.latency.cost_ms > 0 and ours.latency.cost_ms > 0
    assert base.quality == pytest.approx(ours.quality)


@pytest.mark.parametrize("args, needle", [
    (["--shapes", "1by8"], "BATCHxSEQUENCE"),
    (["--rounds", "0"], "--rounds"),
])
def test_bad_options_exit_2(artifact_factory, tmp_path, capsys, args, needle):
    art = artifact_factory("bert", "text-classification").path
    capsys.readouterr()
    assert optimise(["bench", str(art), "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_models_of_different_tasks_are_refused(artifact_factory, tmp_path, capsys):
    a = artifact_factory("bert", "text-classification").path
    b = artifact_factory("bert", "token-classification").path
    capsys.readouterr()
    assert optimise(["bench", str(a), str(b), "--out", str(tmp_path)]) == 2
    assert "one task" in capsys.readouterr().err


def test_a_trimmed_vocabulary_is_fed_its_own_token_ids(bert_cls, tmp_path, capsys):
    """Fixed-shape timings encode with each model's tokenizer: trimmed ids differ from the baseline's."""
    from toolchain import DataRole, ExportOnnx, Recipe, TextDataset, TrimVocab
    from toolchain import optimise as build

    texts = ("the film was great", "bad report written by ada", "who is it", "where is the café")
    trimmed = build(bert_cls, tmp_path / "trimmed", recipe=Recipe(steps=[TrimVocab(), ExportOnnx()]),
                    data={DataRole.TRAIN: TextDataset(texts[:2]), DataRole.VALIDATION: TextDataset(texts[2:])})
    assert trimmed.manifest.vocab_size < 200  # far fewer rows than the baseline's vocabulary
    rc = optimise(["bench", f"trimmed={trimmed.path}", "--baseline", f"tiny torch={bert_cls}",
                   "--out", str(tmp_path / "out"), *FAST])
    assert rc == 0, capsys.readouterr().err
    assert read_report(tmp_path / "out" / "report.json").subject("trimmed").shapes[0].latency.samples > 0


def test_the_report_goes_only_where_nothing_else_would_be_overwritten(artifact_factory, tmp_path, capsys):
    art = artifact_factory("bert", "text-classification").path
    cheap = [*FAST, "--footprint-requests", "0", "--gate-rounds", "0", "--no-plot"]
    mine = tmp_path / "docs"
    mine.mkdir()
    (mine / "report.md").write_text("my report")
    (mine / "todo.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    shutil.copytree(art, tmp_path / "copy")
    capsys.readouterr()
    for out, needle in ((mine, "not an earlier bench report (todo.txt)"), (art, "is the input"),
                        (tmp_path / "copy", "holds a model (manifest.json)"),
                        (tmp_path / "afile", "exists and is not a folder")):
        assert optimise(["bench", str(art), "--out", str(out), *cheap]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert (mine / "report.md").read_text() == "my report"
    out = tmp_path / "reports"
    for _ in range(2):  # an earlier report of ours is replaced: reports are rewritten run after run
        assert optimise(["bench", str(art), "--out", str(out), *cheap]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]


def test_ner_data_with_tags_the_model_does_not_know_is_refused(artifact_factory, tmp_path, capsys):
    art = artifact_factory("bert", "token-classification").path
    for tags, needle in ((["B-PER", "B-FOO"], "B-FOO"), ([0, 99], "99")):
        data = tmp_path / "ner.jsonl"
        data.write_text(json.dumps({"tokens": ["ada", "lovelace"], "tags": tags}) + "\n")
        capsys.readouterr()
        assert optimise(["bench", str(art), "--data", str(data), "--out", str(tmp_path / "o"), *FAST]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "internal error" not in err[0], err
    conll = tmp_path / "ner.conll"
    conll.write_text("ada B-PER\nlovelace I-PER\n\nparis B-LOC\n")
    assert optimise(["bench", str(art), "--data", str(conll), "--out", str(tmp_path / "o"), *FAST,
                     "--footprint-requests", "0", "--gate-rounds", "0", "--no-plot"]) == 0


def test_shapes_longer_than_a_models_window_are_skipped_with_a_warning(bert_cls, artifact_factory, tmp_path, capsys):
    """A shape longer than the model takes (a default 1x128 on a 64-token model) is left out, and said so."""
    from runtimes import Manifest

    art = artifact_factory("bert", "text-classification").path
    window = Manifest.read(art).max_length
    shapes = ["--shapes", f"1x8,1x{window + 1}"]
    rc = optimise(["bench", str(art), "--baseline", str(bert_cls), "--out", str(tmp_path / "out"), *FAST, *shapes])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"1x{window + 1} skipped: longer than the shortest window" in err
    report = read_report(tmp_path / "out" / "report.json")
    assert [(s.batch, s.sequence) for s in report.subject(report.baseline).shapes] == [(1, 8)]
