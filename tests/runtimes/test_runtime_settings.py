"""An artifact's own runtime settings (`manifest.runtime`, written by `optimise search`) and windows."""

import dataclasses
import json
import shutil

import pytest

from runtimes import load
from runtimes.errors import ArtifactError, InputError
from runtimes.manifest import Manifest, RuntimeSettings


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
