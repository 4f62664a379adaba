"""Presets per target, recipe round-trips, and reading user data files."""

import json

import pytest

from toolchain import PRESETS, ConfigError, Recipe, TextDataset, load_text_dataset, preset
from toolchain.errors import InputError


@pytest.mark.parametrize("target, name", [(t.value, n) for t, names in PRESETS.items() for n in names])
def test_every_preset_round_trips(target, name):
    recipe = preset(name, target)
    first = "drop-layers" if name.startswith("student") else "export-onnx"
    assert recipe.target.value == target and recipe.steps[0].step_kind() == first
    again = Recipe.from_dict(json.loads(recipe.to_json()))
    assert again == recipe and again.to_dict() == recipe.to_dict()


def test_preset_contents():
    def kinds(recipe):
        return [s.step_kind() for s in recipe.steps]

    assert kinds(preset("int8")) == ["export-onnx", "fuse-graph", "quantize-dynamic-int8"]
    assert kinds(preset("fp16", "cuda")) == ["export-onnx", "fuse-graph", "convert-fp16"]
    assert kinds(preset("int8", "openvino")) == ["export-onnx", "openvino-ir", "openvino-int8"]
    assert preset("int8-static").missing_data(set()) == ["quantize-static-int8 needs calibration data"]
    assert preset("int8", accuracy_budget=0.5).missing_data(set()) == ["quantize-dynamic-int8 needs validation data"]
    assert preset("int8").missing_data(set()) == []
    assert preset("int8", accuracy_budget=0.5).steps[-1].accuracy_budget == 0.5
    assert kinds(preset("student", "openvino")) == ["drop-layers", "distil", "export-onnx", "openvino-ir",
                                                    "openvino-int8"]
    assert kinds(preset("student-small", "cuda"))[2:] == ["prune", "distil", "trim-vocab", "export-onnx",
                                                          "fuse-graph", "convert-fp16"]
    assert preset("student").missing_data(set()) == ["distil needs train data", "distil needs validation data"]


@pytest.mark.parametrize("share, total, kept", [(0.5, 6, [0, 2, 4]), (0.5, 12, [0, 2, 4, 6, 8, 10]),
                                                (1 / 3, 2, [0]), (0.01, 4, [0]), (1.0, 3, [0, 1, 2])])
def test_drop_layers_by_share(share, total, kept):
    from toolchain import DropLayers

    assert DropLayers(share=share).layers_to_keep(total) == kept
    with pytest.raises(ValueError, match="exactly one of"):
        DropLayers(share=share, num_layers=2)


@pytest.mark.parametrize("args, message", [
    (("int4",), "unknown preset 'int4' for target cpu"),
    (("fp16", "cpu"), "unknown preset 'fp16' for target cpu"),
    (("int8", "tpu"), "unknown target 'tpu'"),
    (("fp32", "cpu", 0.5), "applies to the cpu int8 preset"),
])
def test_bad_presets(args, message):
    with pytest.raises(ConfigError, match=message):
        preset(*args)


@pytest.mark.parametrize("bad, message", [
    ({"steps": [{"kind": "fuse-graph"}]}, r"step 1 \(fuse-graph\) takes onnx, but the recipe starts from a PyTorch"),
    ({"steps": [{"kind": "export-onnx"}, {"kind": "fuse-graph"}, {"kind": "quantize-static-int8"}]},
     r"step 3 \(quantize-static-int8\) takes onnx, but step 2 \(fuse-graph\) produces onnx-fused"),
    ({"steps": [{"kind": "export-onnx"}, {"kind": "drop-layers", "num_layers": 1}]},
     r"step 2 \(drop-layers\) takes torch, but step 1 \(export-onnx\) produces onnx"),
    ({"steps": [{"kind": "export-onnx"}, {"kind": "export-onnx"}]}, r"step 2 \(export-onnx\) takes torch"),
    ({"steps": [{"kind": "export-onnx"}, {"kind": "fuse-graph"}, {"kind": "openvino-ir"}]},
     r"step 3 \(openvino-ir\) takes onnx, but step 2 \(fuse-graph\) produces onnx-fused"),
    ({"steps": [{"kind": "export-onnx"}, {"kind": "openvino-int8"}]}, r"step 2 \(openvino-int8\) takes openvino-ir"),
    ({"steps": [{"kind": "drop-layers", "num_layers": 2}]}, "never leaves the PyTorch stage"),
    ({"steps": [{"kind": "drop-layers"}, {"kind": "export-onnx"}]}, "exactly one of keep"),
    ({"steps": [{"kind": "drop-layers", "keep": [1, 1]}, {"kind": "export-onnx"}]}, "distinct"),
    ({"steps": [{"kind": "export-onnx"}, {"kind": "prune-heads"}]}, "unknown step kind 'prune-heads'"),
    ({"steps": [{"kind": "export-onnx", "opset": 9}]}, "opset"),
    ({"steps": [{"kind": "export-onnx"}, {"kind": "quantize-dynamic-int8", "reduce_range": "maybe"}]}, "reduce_range"),
    ({"steps": [{"kind": "export-onnx"}], "version": 2}, "recipe version 2"),
    ({"steps": []}, "steps"),
])
def test_bad_recipes(bad, message):
    with pytest.raises(ConfigError, match=message):
        Recipe.from_dict(bad)


def write_rows(path, rows):
    suffix = path.suffix
    if suffix == ".csv":
        import csv

        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:  # a datasets.save_to_disk-style folder of Arrow IPC streams
        import pyarrow as pa

        path.mkdir()
        table = pa.Table.from_pylist(rows)
        with pa.OSFile(str(path / "data-00000-of-00001.arrow"), "wb") as sink, \
                pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return path


@pytest.mark.parametrize("name", ["d.csv", "d.jsonl", "d.parquet", "folder"])
def test_readers(tmp_path, name):
    rows = [{"text": "great film 😀", "label": "positive"}, {"text": "dull", "label": "negative"}]
    ds = load_text_dataset(write_rows(tmp_path / name, rows), label_names=("negative", "positive"))
    assert ds == TextDataset(("great film 😀", "dull"), (1, 0))


def test_reader_columns_and_errors(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"review": "a", "y": 1}, {"review": "b", "y": 0}])
    assert load_text_dataset(path, text_column="review", label_column="y").labels == (1, 0)
    assert load_text_dataset(path, text_column="review").labels is None
    with pytest.raises(InputError, match="no 'text' column"):
        load_text_dataset(path)
    with pytest.raises(InputError, match="unsupported data format"):
        load_text_dataset(write_rows(tmp_path / "d.csv", [{"text": "a"}]).rename(tmp_path / "d.txt"))
    with pytest.raises(InputError, match="does not exist"):
        load_text_dataset(tmp_path / "missing.csv")
    bad = write_rows(tmp_path / "bad.jsonl", [{"text": "a", "label": "maybe"}])
    with pytest.raises(InputError, match="label 'maybe' is neither"):
        load_text_dataset(bad, label_names=("no", "yes"))
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="not valid JSON lines"):
        load_text_dataset(tmp_path / "broken.jsonl")
    (tmp_path / "empty.csv").write_text("text\n")
    with pytest.raises(InputError, match="has no rows"):
        load_text_dataset(tmp_path / "empty.csv")
