"""Bad input gets a clear exception; odd but valid input (empty, very long) works; threads are safe."""

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtimes import ArtifactError, InputError, load


@pytest.fixture(scope="module")
def classifier(artifact_factory):
    return load(artifact_factory("bert", "text-classification").path, warmup=True)


@pytest.mark.parametrize(
    "bad, message",
    [
        (None, "got None"),
        (42, "got int"),
        ([], "empty list"),
        (["fine", 3, None], r"texts\[1\] is a int, not a string \(2 non-strings in all\)"),
        ({"text": "x"}, "got dict"),
    ],
)
def test_bad_texts(classifier, bad, message):
    with pytest.raises(InputError, match=message):
        classifier(bad)


def test_bad_options(classifier, artifact_factory):
    with pytest.raises(InputError, match="top_k"):
        classifier("x", top_k=0)
    with pytest.raises(InputError, match="batch_size"):
        load(artifact_factory("bert", "text-classification").path, batch_size=0)
    qa = load(artifact_factory("bert", "question-answering").path)
    with pytest.raises(InputError, match="2 questions but 1 contexts"):
        qa(question=["a", "b"], context=["c"])
    with pytest.raises(InputError, match="context must be"):
        qa(question="a", context=None)


def test_empty_and_very_long_texts_are_valid(classifier, artifact_factory):
    out = classifier(["", "long " * 5000])
    assert [r["label"] for r in out] and all(0 <= r["score"] <= 1 for r in out)
    ner = load(artifact_factory("bert", "token-classification").path)
    assert ner("") == []
    assert isinstance(ner("Paris " * 3000), list)


def test_missing_and_tampered_artifacts(artifact_factory, tmp_path):
    with pytest.raises(ArtifactError, match=re.escape("manifest.json is missing")):
        load(tmp_path)
    src = artifact_factory("bert", "text-classification").path
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 7}))
    with pytest.raises(ArtifactError, match="schema_version 7 is not supported"):
        load(copy)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        load(copy)


def test_concurrent_calls_match_serial(artifact_factory):
    pipes = [load(artifact_factory("bert", t).path, batch_size=3)
             for t in ("text-classification", "token-classification")]
    texts = [("word " * n + "Paris café 😀").strip() for n in range(40)]
    jobs = [(p, texts[i:i + 7]) for p in pipes for i in range(0, len(texts), 5)]
    serial = [p(batch) for p, batch in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            parallel = list(pool.map(lambda job: job[0](job[1]), jobs))
            assert parallel == serial
