"""Fixtures for the serving tests.

Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when it is imported, and on Linux otherwise binds
its services to the machine's routable address: set it before any test module can import Ray, so
every cluster the tests start stays on 127.0.0.1 (and no usage statistics are sent anywhere).
"""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

HAS_SERVE_EXTRA = all(importlib.util.find_spec(m) is not None for m in ("ray", "tritonclient", "jsonschema"))
# Skip only when the optional extra is absent; `./run.sh test` installs it (the dev extra includes it).
needs_serve_extra = pytest.mark.skipif(not HAS_SERVE_EXTRA,
                                       reason="the [serve] extra (ray[serve], tritonclient, jsonschema) "
                                              "is not installed")


@pytest.fixture(scope="session")
def ir_artifact(checkpoint_factory, tmp_path_factory):
    """The tiny BERT classifier as an OpenVINO IR artifact."""
    from toolchain import ExportOnnx, OpenVinoIR, Recipe, optimise

    out = tmp_path_factory.mktemp("serving-ir") / "bert-ir"
    return optimise(checkpoint_factory("bert", "text-classification"), out,
                    recipe=Recipe(target="openvino", steps=[ExportOnnx(), OpenVinoIR()]))
