"""The measurement layer's primitives: timing loop, statistics, metrics, sizes, machine, fresh process."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from runtimes.measure import LatencyStats, machine_info, quality, repeat_blocks, split_blocks, time_interleaved
from runtimes.measure.timing import percentile


def fake_clock(step_for):
    """A clock that advances by step_for(call index) between start and stop of each timed call."""
    state = {"t": 0.0, "calls": 0, "start": True}

    def clock():
        if not state["start"]:
            state["t"] += step_for(state["calls"])
            state["calls"] += 1
        state["start"] = not state["start"]
        return state["t"]

    return clock


def test_runners_take_turns_block_by_block_and_alternate_who_goes_first():
    order = []
    runners = {"a": lambda x: order.append(("a", x)), "b": lambda x: order.append(("b", x))}
    times = time_interleaved(runners, [[1, 2], [3, 4]], warmup=1, clock=fake_clock(lambda i: 0.001))
    # round 0: a (warm-up 1, then 1 2), b (...); round 1: b first, then a
    assert order == [("a", 1), ("a", 1), ("a", 2), ("b", 1), ("b", 1), ("b", 2),
                     ("b", 3), ("b", 3), ("b", 4), ("a", 3), ("a", 3), ("a", 4)]
    assert times["a"].blocks == [[pytest.approx(1.0)] * 2] * 2  # ms


def test_more_rounds_continue_the_alternation():
    order = []
    runners = {"a": lambda x: order.append("a"), "b": lambda x: order.append("b")}
    first = time_interleaved(runners, [[0]], warmup=0)
    time_interleaved(runners, [[0]], warmup=0, into=first)
    assert order == ["a", "b", "b", "a"] and len(first["a"].blocks) == 2


def test_block_medians_resist_a_preempted_call():
    slow = {5}
    times = time_interleaved({"a": lambda x: None}, [list(range(8))], warmup=0,
                             clock=fake_clock(lambda i: 0.050 if i in slow else 0.002))
    assert times["a"].block_medians() == [pytest.approx(2.0)]
    assert times["a"].stats().p99_ms > 40


def test_latency_stats_match_numpy():
    rng = np.random.default_rng(0)
    xs = rng.lognormal(1, 0.3, 257).tolist()
    st = LatencyStats.from_samples(xs)
    assert st.p50_ms == pytest.approx(np.percentile(xs, 50))
    assert st.p90_ms == pytest.approx(np.percentile(xs, 90))
    assert st.p99_ms == pytest.approx(np.percentile(xs, 99))
    assert st.iqr_ms == pytest.approx(np.percentile(xs, 75) - np.percentile(xs, 25))
    assert st.samples == 257 and st.min_ms == min(xs)
    assert percentile([3.0], 90) == 3.0
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])


def test_blocks():
    assert split_blocks(list(range(7)), 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(itertools.chain(*split_blocks(list(range(10)), 4))) == list(range(10))
    assert repeat_blocks(["x", "y"], 3) == [["x", "y"]] * 3
    with pytest.raises(ValueError):
        split_blocks([], 2)


def test_classification_scores_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score

    y, p = [0, 1, 2, 2, 1, 0, 2], [0, 2, 2, 2, 1, 1, 0]
    scores = quality.classification_scores(y, p)
    assert scores["accuracy"] == pytest.approx(accuracy_score(y, p)) == quality.accuracy(y, p)
    assert scores["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    # a model that ignores the rare class: accuracy looks fine, macro-F1 does not
    skewed = quality.classification_scores([0] * 9 + [1], [0] * 10)
    assert skewed["accuracy"] == 0.9 and skewed["macro_f1"] < 0.5
    with pytest.raises(ValueError):
        quality.accuracy([0, 1], [0])


def test_entity_scores_count_whole_entities():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert quality.entity_scores(gold, gold)["entity_f1"] == 1.0
    half = quality.entity_scores(gold, [["B-PER", "O", "O", "B-LOC"]])  # PER cut short: wrong entity
    assert half["entity_precision"] == 0.5 and half["entity_recall"] == 0.5


def test_words_to_tags_maps_character_spans_onto_words():
    words = ["Ada", "Lovelace", "met", "Charles", "Babbage", "in", "London", "."]
    entities = [{"entity_group": "PER", "start": 0, "end": 12}, {"entity_group": "PER", "start": 17, "end": 32},
                {"entity_group": "LOC", "start": 36, "end": 42}]
    assert quality.words_to_tags(words, entities) == ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O"]


def test_qa_scores_follow_squad_normalisation():
    s = quality.qa_scores(["The Eiffel Tower!", "in 1843", "nothing"], [["Eiffel Tower"], ["1843", "in 1843 ."], ["x"]])
    assert s["exact_match"] == pytest.approx(2 / 3)
    partial = quality.qa_scores(["Ada Lovelace wrote"], [["Ada Lovelace"]])
    assert partial["exact_match"] == 0 and partial["f1"] == pytest.approx(0.8)
    assert quality.qa_scores([""], [[]])["exact_match"] == 1.0  # unanswerable, and no answer given


def test_machine_info_names_the_cpu_and_libraries():
    info = machine_info(threads=2)
    assert info.threads == 2 and info.logical_cpus >= 1 and info.usable_cpus >= 1
    assert "onnxruntime" in info.versions and "numpy" in info.versions
    assert set(info.isa) <= {"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
                             "amx_int8", "amx_bf16"}
    assert info.cpu_model in info.summary()


def test_sizes(artifact_factory, bert_cls):
    from runtimes.measure import artifact_size_bytes, checkpoint_size_bytes

    art = artifact_factory("bert", "text-classification")
    assert artifact_size_bytes(art.path) == (art.path / art.manifest.model_file).stat().st_size
    assert checkpoint_size_bytes(bert_cls) == (bert_cls / "model.safetensors").stat().st_size


def test_fresh_process_reports_phases_and_peak_memory(artifact_factory):
    from runtimes.measure.footprint import runtime_footprint

    art = artifact_factory("bert", "text-classification")
    fp = runtime_footprint(art.path, ["a fine film", "dull"], threads=1)
    assert [p.phase for p in fp.phases] == ["import", "load", "first prediction", "requests"]
    seconds = [p.seconds for p in fp.phases]
    assert seconds == sorted(seconds) and fp.wall_s > seconds[-1]
    assert fp.peak_rss_mb >= max(p.rss_mb for p in fp.phases) > 0
    assert fp.requests == 2


def test_measurement_layer_stays_torch_free():
    code = ("import sys, runtimes.measure, runtimes.measure.quality, runtimes.measure.footprint; "
            "import json; print(json.dumps(sorted(m for m in ('torch', 'transformers', 'toolchain', 'bench', "
            "'sklearn', 'seqeval', 'pydantic') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_workload_cost_takes_each_inputs_fastest_call():
    from runtimes.measure import cycle_blocks
    from runtimes.measure.timing import workload_cost

    assert cycle_blocks(["a", "b"], 3, 2) == [["a", "b"] * 3] * 2
    # inputs a, b cycled 3 times; a's second call and b's first call were disturbed
    times = [1.0, 9.0, 7.0, 2.0, 1.1, 2.2]
    assert workload_cost(times, 2) == pytest.approx(1.0 + 2.0)
    with pytest.raises(ValueError):
        workload_cost(times, 4)
    seen = []
    bt = time_interleaved({"a": seen.append}, cycle_blocks([1, 2], 2, 1), warmup=0,
                          clock=fake_clock(lambda i: [0.001, 0.002, 0.005, 0.0021][i]))
    assert seen == [1, 2, 1, 2]
    assert bt["a"].block_costs(2) == [pytest.approx(1.0 + 2.0)]
