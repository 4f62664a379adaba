"""An artifact's own runtime settings (`manifest.runtime`, written by `optimise search`) and windows."""

import dataclasses
import json
import re
import shutil

import pytest

from runtimes import load
from runtimes.common.errors import ArtifactError, InputError
from runtimes.common.manifest import Manifest, RuntimeSettings


@pytest.fixture()
def art(artifact_factory, tmp_path):
    folder = tmp_path / "art"
    shutil.copytree(artifact_factory("bert", "text-classification").path, folder)
    return folder


def _set_runtime(folder, **settings):
    manifest = Manifest.read(folder)
    dataclasses.replace(manifest, runtime=RuntimeSettings(**settings)).write(folder)


def test_load_takes_the_artifacts_threads_and_spinning_unless_the_caller_says_otherwise(art):
    _set_runtime(art, threads=1, spinning=False, measured_on="test machine")
    options = load(art).session._inner.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert load(art, threads=2).session._inner.get_session_options().intra_op_num_threads == 2
    assert Manifest.read(art).runtime == RuntimeSettings(1, False, "test machine")  # round trip


@pytest.mark.parametrize("threads", [0, True, 5000, "2"])
def test_a_manifest_with_unusable_thread_settings_is_refused(art, threads):
    data = json.loads((art / "manifest.json").read_text())
    data["runtime"]["threads"] = threads
    (art / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="runtime"):
        Manifest.read(art)


def test_a_shorter_window_truncates_and_a_longer_one_is_refused(art):
    manifest = Manifest.read(art)
    pipe = load(art, max_length=8)
    assert pipe.encoder.max_length == 8
    assert len(pipe.encoder.encode(["word " * 50])[0].ids) == 8
    pipe("word " * 50)  # runs at the shorter window
    with pytest.raises(InputError, match="max_length"):
        load(art, max_length=manifest.max_length + 1)
    with pytest.raises(InputError, match="spinning"):
        load(art, spinning="yes")


def test_head_tail_truncation_keeps_both_ends_of_an_overlong_text(art):
    words = [f"w{i}" for i in range(20)]  # longer than 18 tokens, shorter than the full window
    text = " ".join(words)
    head = load(art, max_length=18).encoder
    both = load(art, max_length=18, truncation="head+tail").encoder
    [h], [b] = head.encode([text]), both.encode([text])
    assert len(h.ids) == len(b.ids) == 18 and h.ids[0] == b.ids[0] and h.ids[-1] == b.ids[-1]  # same specials
    assert both.encode(["w1 w2"])[0].ids == head.encode(["w1 w2"])[0].ids  # a short text keeps every token
    untruncated = load(art).encoder.encode([text])[0].ids[1:-1]
    assert 16 < len(untruncated) < Manifest.read(art).max_length - 2
    assert b.ids[1:-1] == untruncated[:4] + untruncated[-12:]  # a quarter of the 16 content tokens, then the end
    assert h.ids[1:-1] == untruncated[:16]
    load(art, truncation="head+tail")("word " * 500)  # runs end to end at the full window


def test_head_tail_is_recorded_and_checked(art, artifact_factory, tmp_path):
    manifest = Manifest.read(art)
    dataclasses.replace(manifest, truncation="head+tail").write(art)
    assert load(art).encoder.truncation == "head+tail"  # the manifest's choice is the default
    with pytest.raises(InputError, match="truncation must be one of"):
        load(art, truncation="middle")
    data = json.loads((art / "manifest.json").read_text())
    data["truncation"] = "tail"
    (art / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=re.escape("manifest.truncation")):
        Manifest.read(art)
    ner = tmp_path / "ner"
    shutil.copytree(artifact_factory("bert", "token-classification").path, ner)
    with pytest.raises(InputError, match="text classification"):
        load(ner, truncation="head+tail")
