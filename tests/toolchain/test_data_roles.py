"""Data roles and readers: CoNLL and tagged tables for NER, QA pairs, fallbacks, overlap, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.cli.optimise import main
from runtimes.common.manifest import Task
from toolchain import ConfigError, DataRole, TextDataset, load_dataset
from toolchain.data import resolve_roles
from toolchain.errors import InputError
from toolchain.transfer import NeighbourAugmenter, examples_of

NER = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def test_conll(tmp_path):
    path = tmp_path / "tweets.conll"
    path.write_text("-DOCSTART- O\n\nAda B-PER\nLovelace I-PER\nin O\nLondon B-LOC\n\n\nhi O\n")
    ds = load_dataset(path, Task.TOKEN_CLASSIFICATION, NER)
    assert ds.words == (("Ada", "Lovelace", "in", "London"), ("hi",))
    assert ds.tags == ((1, 2, 0, 3), (0,))
    assert ds.texts == ("Ada Lovelace in London", "hi")


def test_tagged_table(tmp_path):
    path = tmp_path / "ner.jsonl"
    path.write_text(json.dumps({"tokens": ["Ada", "in", "Paris"], "tags": ["B-PER", "O", 3]}) + "\n")
    ds = load_dataset(path, Task.TOKEN_CLASSIFICATION, NER)
    assert ds.words == (("Ada", "in", "Paris"),) and ds.tags == ((1, 0, 3),)


@pytest.mark.parametrize("content, name, message", [
    ("Ada B-PER\nParis B-CITY\n", "d.conll", "'B-CITY' is neither a class index nor a label name of the model"),
    ("Ada\n", "d.conll", "line 1 has no tag"),
    ("\n\n", "d.conll", "has no sentences"),
    (json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n", "d.jsonl", "one tag per word"),
    (json.dumps({"words": ["a"], "tags": ["O"]}) + "\n", "d.jsonl", "no 'tokens' column"),
    (json.dumps({"tokens": "a b", "tags": ["O"]}) + "\n", "d.jsonl", "must be a list of words"),
])
def test_bad_ner_files(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_dataset(path, Task.TOKEN_CLASSIFICATION, NER)


def test_qa_pairs(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,context\nWho?,Ada wrote it.\n")
    ds = load_dataset(path, Task.QUESTION_ANSWERING)
    assert ds.questions == ("Who?",) and ds.texts == ("Ada wrote it.",)
    with pytest.raises(InputError, match="no 'query' column"):
        load_dataset(path, Task.QUESTION_ANSWERING, question_column="query")


def test_roles_fall_back_and_never_overlap():
    train = TextDataset(("a", "b", "c"), (0, 1, 0))
    validation = TextDataset(("d", "e"), (1, 1))
    roles = resolve_roles({DataRole.TRAIN: train, DataRole.VALIDATION: validation})
    assert roles[DataRole.CALIBRATION] is validation  # calibration falls back to validation first
    assert resolve_roles({DataRole.TRAIN: train})[DataRole.CALIBRATION] is train
    assert DataRole.VALIDATION not in resolve_roles({DataRole.TRAIN: train})  # never to training data
    with pytest.raises(ConfigError, match="1 of the 2 validation examples also appear in the training data"):
        resolve_roles({DataRole.TRAIN: train, DataRole.VALIDATION: TextDataset(("a", "z"))})


def test_dataset_digest_and_selection():
    ds = TextDataset(("x y", "z"), words=(("x", "y"), ("z",)), tags=((1, 0), (0,)))
    assert ds.select([1]).words == (("z",),) and ds.head(1).tags == ((1, 0),)
    assert ds.sha256 != TextDataset(("x y", "z"), words=(("x", "y"), ("z",)), tags=((1, 1), (0,))).sha256
    with pytest.raises(InputError, match="2 words but 1 tags"):
        TextDataset(("x y",), words=(("x", "y"),), tags=((1,),))


def test_a_held_out_share_depends_on_content_alone_and_keeps_groups_together():
    texts = [f"context {i % 40}" for i in range(120)]  # 40 contexts with three questions each, as in QA
    ds = TextDataset(tuple(texts), questions=tuple(f"q{i}" for i in range(120)))
    rest, held = ds.split_off(0.1)
    assert (len(rest), len(held)) == (108, 12) and not set(rest.texts) & set(held.texts)
    order = [int(q[1:]) for q in held.questions]
    assert order == sorted(order)  # the file's order is kept
    shuffled = ds.select(list(reversed(range(120))))
    assert set(shuffled.split_off(0.1)[1].questions) == set(held.questions)  # order does not move the split
    assert set(ds.split_off(0.1, salt="other")[1].texts) != set(held.texts)
    tiny = TextDataset(("a", "b"), labels=(0, 1))
    assert [len(part) for part in tiny.split_off(0.01)] == [1, 1]  # at least one on each side
    with pytest.raises(InputError, match="one distinct text"):
        TextDataset(("a", "a"), labels=(0, 1)).split_off(0.5)


def test_cli_roles_and_errors(bert_cls, tmp_path, capsys):
    train, validation = tmp_path / "train.csv", tmp_path / "val.csv"
    train.write_text("text,label\ngood film,positive\nbad film,negative\n")
    validation.write_text("text,label\ngood film,positive\n")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": [{"kind": "distil", "epochs": 1}, {"kind": "export-onnx"}]}))
    code = main([str(bert_cls), "--out", str(tmp_path / "a"), "--recipe", str(recipe), "--train-data", str(train),
                 "--eval-data", str(validation), "-q"])
    assert code == 2 and "also appear in the training data" in capsys.readouterr().err
    code = main([str(bert_cls), "--out", str(tmp_path / "a"), "--recipe", str(recipe), "--eval-data", str(validation)])
    assert code == 2 and "distil needs train data" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_neighbour_augmentation_keeps_words_aligned(checkpoint_factory):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint_factory("bert", "text-classification"))
    vocab = tok.get_vocab()
    table = np.random.default_rng(0).normal(size=(len(vocab), 8)).astype(np.float32)
    table[vocab["bad"]] = table[vocab["great"]] + 0.01  # "bad" is "great"'s nearest neighbour
    augmenter = NeighbourAugmenter(tok, table, top_k=1, share=1.0, seed=0)
    assert augmenter.neighbours("great") == ["bad"]
    ds = TextDataset(("the film was great",), words=(("the", "film", "was", "great"),), tags=((0, 0, 0, 1),))
    (copy,) = augmenter.augment(examples_of(ds), copies=1)
    assert copy.words[3] == "bad" and len(copy.words) == 4 and copy.tags is None  # the teacher labels it


def test_one_file_in_both_roles_is_an_overlap(bert_cls, tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text("text,label\ngood film,positive\nbad film,negative\n")
    for role in ("--eval-data", "--data"):
        code = main([str(bert_cls), "--out", str(tmp_path / "a"), "--preset", "student", "--train-data", str(data),
                     role, str(data), "-q"])
        assert code == 2 and "also appear in the training data" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_files_as_spreadsheets_and_tools_write_them(tmp_path):
    bom = tmp_path / "excel.csv"
    bom.write_bytes("\ufefftext,label\r\ngood film,positive\r\n".encode())
    assert load_dataset(bom, label_names=("negative", "positive")).texts == ("good film",)
    long = tmp_path / "long.csv"
    long.write_text("text\n" + "word " * 60_000 + "\n")  # over Python's 128 KiB csv field limit
    assert len(load_dataset(long).texts[0]) == 300_000
    array = tmp_path / "rows.json"
    array.write_text(json.dumps([{"text": "good film", "label": 1}, {"text": "bad film", "label": 0}], indent=2))
    assert load_dataset(array, label_names=("negative", "positive")).labels == (1, 0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": }\n')
    with pytest.raises(InputError, match="at line 2, column"):
        load_dataset(bad, label_names=("negative", "positive"))
    (tmp_path / "folder.conll").mkdir()
    with pytest.raises(InputError, match="is a folder; a CoNLL file is a text file"):
        load_dataset(tmp_path / "folder.conll", Task.TOKEN_CLASSIFICATION, ("O", "B-PER"))
