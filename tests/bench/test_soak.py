"""The soak at CI size: shared pipeline, 8 threads, mixed and hostile requests; memory stays flat."""

import pytest

from runtimes import load
from tools.soak import request_pool, soak_memory, soak_threads


@pytest.mark.parametrize("task", ["text-classification", "token-classification", "question-answering"])
def test_threads_agree_with_serial_calls(artifact_factory, task):
    pipe = load(artifact_factory("bert", task).path, threads=1)
    pool = request_pool(pipe.manifest.task, size=60)
    result = soak_threads(pipe, pool, threads=8, requests=400)
    assert result.bad_requests > 0, "the mix must include hostile requests"
    assert (result.errors, result.mismatches) == (0, 0), result.first_problem


def test_memory_is_flat(artifact_factory):
    pipe = load(artifact_factory("bert", "text-classification").path, threads=1)
    result = soak_memory(pipe, request_pool(pipe.manifest.task, size=60), requests=3000)
    assert result.growth < 0.05, result
