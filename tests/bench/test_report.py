"""Report schema round trip and strict reading, the Markdown ratios, the Pareto front and the plot."""

import json

import pytest

from bench.report.markdown import report_markdown
from bench.report.plot import pareto_front, plot_report
from bench.report.schema import (
    GateReference,
    Latency,
    Machine,
    Report,
    Settings,
    ShapeLatency,
    Subject,
    Throughput,
    read_report,
)
from runtimes.common.errors import InputError
from runtimes.measure import LatencyStats, machine_info


def latency(p50):
    return Latency.of(LatencyStats.from_samples([p50 * 0.9, p50, p50 * 1.2]))


def make_report():
    subjects = [
        Subject(name="pytorch", kind="checkpoint", path="/ckpt", task="text-classification", backend="pytorch/cpu",
                size_mb=90.0, quality={"accuracy": 0.83, "macro_f1": 0.82}, quality_examples=2000,
                latency=latency(10.0), model_latency=latency(9.0),
                shapes=[ShapeLatency(batch=1, sequence=16, latency=latency(8.0))],
                throughput=Throughput(batch=32, items_per_s=100.0, latency=latency(320.0))),
        Subject(name="int8", kind="artifact", path="/art", task="text-classification", backend="onnxruntime/cpu",
                size_mb=22.5, quality={"accuracy": 0.8285, "macro_f1": 0.82}, quality_examples=2000,
                latency=latency(2.5), model_latency=latency(2.25),
                shapes=[ShapeLatency(batch=1, sequence=16, latency=latency(2.0))],
                throughput=Throughput(batch=32, items_per_s=400.0, latency=latency(80.0)),
                gate_reference=GateReference(reference_version=1, workload="abc", block=16, repeats=3, threads=2,
                                             normalised=[0.9, 1.0, 1.1], model_p50_ms=2.5, reference_p50_ms=2.6)),
        Subject(name="worse", kind="artifact", path="/w", task="text-classification", backend="onnxruntime/cpu",
                size_mb=60.0, quality={"accuracy": 0.80, "macro_f1": 0.79}, quality_examples=2000,
                latency=latency(3.0), model_latency=latency(2.8)),
    ]
    return Report(created="2026-01-01T00:00:00+00:00", tool_version="0.1.0", machine=Machine.of(machine_info(2)),
                  settings=Settings(threads=2, latency_texts=300, rounds=10, warmup=3, shapes=[(1, 16)],
                                    throughput_batch=32, footprint_requests=0),
                  baseline="pytorch", subjects=subjects)


def test_report_round_trips(tmp_path):
    report = make_report()
    path = report.write(tmp_path)
    again = read_report(path)
    assert again == report
    assert read_report(tmp_path) == report  # the folder works too
    assert again.subject("int8").gate_reference.normalised == [0.9, 1.0, 1.1]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema_version=99), "schema version 99"),
    (lambda d: d.update(surprise=1), "surprise"),
    (lambda d: d["subjects"][0].update(size_mb="big"), "subjects.0.size_mb"),
    (lambda d: d.pop("machine"), "machine"),
])
def test_reading_is_strict(tmp_path, change, message):
    data = json.loads(make_report().model_dump_json())
    change(data)
    (tmp_path / "report.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        read_report(tmp_path / "report.json")


def test_reading_garbage_is_one_clear_error(tmp_path):
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(InputError, match="not a JSON report"):
        read_report(tmp_path / "report.json")
    with pytest.raises(InputError, match="does not exist"):
        read_report(tmp_path / "missing.json")


def test_markdown_gives_ratios_against_the_baseline():
    md = report_markdown(make_report())
    row = next(line for line in md.splitlines() if line.startswith("| int8 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "0.8285" and cells[2] == "+0.15"  # 0.83 -> 0.8285: 0.15 points down
    assert cells[7] == "4.00x"  # e2e 10 ms -> 2.5 ms
    assert cells[9] == "4.00x"  # model 9 -> 2.25
    assert cells[11] == "4.00x" and cells[13] == "4.00x"  # throughput 100 -> 400/s; size 90 -> 22.5 MB
    assert "**pytorch** (baseline)" in md and "macro_f1" in md and "1 x 16" in md
    assert "Machine:" in md


def test_pareto_front():
    # (cost, quality): b dominates d; a and c are the extremes; e ties with a
    points = [(1.0, 0.80), (2.0, 0.85), (3.0, 0.86), (2.5, 0.84), (1.0, 0.80), (4.0, 0.86)]
    assert pareto_front(points) == [0, 4, 1, 2]
    assert pareto_front([(1.0, 1.0)]) == [0]
    assert pareto_front([]) == []


def test_plot_marks_the_front(tmp_path):
    path = plot_report(make_report(), tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_the_report_names_each_artifacts_int8_cpu_and_flags_another_class():
    report = make_report()
    machine = report.machine.model_copy(update={"int8_isa": "avx512_vnni"})
    subjects = [report.subjects[0], report.subjects[1].model_copy(update={"int8_target": "avx512_vnni"}),
                report.subjects[2].model_copy(update={"int8_target": "arm64"})]
    md = report_markdown(report.model_copy(update={"machine": machine, "subjects": subjects}))
    assert ("Int8 made for: `int8` cpu:avx512_vnni; `worse` cpu:arm64 (**not this machine's class: its speed "
            "here is not the target's**). This machine: cpu:avx512_vnni.") in md
    again = Report.model_validate_json(report.model_copy(update={"subjects": subjects}).model_dump_json())
    assert again.subjects[2].int8_target == "arm64" and again.machine.int8_isa == report.machine.int8_isa
