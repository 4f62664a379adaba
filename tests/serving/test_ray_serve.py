"""The Ray Serve deployment on a real Ray cluster started here, on 127.0.0.1, for this module only.

One classifier application is deployed from the config file `optimise serve config` writes, through
Ray's own `serve run` command; a question-answering application through the Python API. Traffic is
bounded (a few hundred small requests, every call with a timeout) and the cluster is shut down at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtimes import load
from runtimes.serving import BatchingConfig, ReplicaConfig, ServeConfig, write_serve_config

from .conftest import needs_serve_extra

pytestmark = needs_serve_extra

TIMEOUT_S = 30
TEXTS = ["the film was great", "bad", "", "a film of the report written in paris and the café was great " * 3,
         "Überraschend gut 😀", "who is it?", "it was bad and the film was bad", "great"]


def post(url: str, payload, raw: bytes | None = None, method: str = "POST") -> tuple[int, object]:
    data = raw if raw is not None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except json.JSONDecodeError:
            return err.code, text.decode(errors="replace")


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        return json.loads(response.read())


def assert_same(served, local, where="response"):
    """Labels, words and offsets equal; scores equal to 1e-5 (a dynamic batch pads differently)."""
    assert type(served) is type(local), f"{where}: {served!r} != {local!r}"
    if isinstance(local, dict):
        assert served.keys() == local.keys(), where
        for key in local:
            assert_same(served[key], local[key], f"{where}.{key}")
    elif isinstance(local, list):
        assert len(served) == len(local), where
        for i, (s, loc) in enumerate(zip(served, local)):
            assert_same(s, loc, f"{where}[{i}]")
    elif isinstance(local, float):
        assert served == pytest.approx(local, abs=1e-5), where
    else:
        assert served == local, where


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    from runtimes.serving.local import LocalCluster

    local = LocalCluster(num_cpus=2)
    local.start()
    try:
        yield local
    finally:
        local.shutdown()


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def classifier(cluster, port, artifact_factory, tmp_path_factory):
    """The classifier, deployed by `serve run CONFIG` (Ray's CLI) from the file we generate."""
    from runtimes.serving.local import wait_until_running

    art = artifact_factory("bert", "text-classification")
    cfg = ServeConfig(artifact=art.path, name="cls", route_prefix="/cls", port=port,
                      batching=BatchingConfig(max_batch_size=8, wait_timeout_s=0.05),
                      replicas=ReplicaConfig(num_cpus=1, threads=1, health_check_period_s=1.0))
    path = write_serve_config(cfg, tmp_path_factory.mktemp("serve") / "serve.yaml")
    command = [sys.executable, "-c", "from ray.serve.scripts import cli; cli()",
               "run", "--non-blocking", "--address", cluster.gcs_address, str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-3000:]
    wait_until_running("cls", timeout_s=90)
    return f"http://127.0.0.1:{port}/cls/", load(art.path)


def test_concurrent_requests_are_batched_and_match_the_pipeline(classifier):
    url, pipe = classifier
    before = get(url + "stats")
    payloads = []
    for i in range(48):
        if i % 3 == 0:
            payloads.append({"inputs": TEXTS[i % len(TEXTS)]})
        elif i % 3 == 1:
            payloads.append({"inputs": [TEXTS[(i + k) % len(TEXTS)] for k in range(3)]})
        else:
            payloads.append({"inputs": [TEXTS[i % len(TEXTS)]], "parameters": {"top_k": None}})
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda p: post(url, p), payloads))
    for payload, (status, body) in zip(payloads, responses):
        assert status == 200, body
        assert_same(body, pipe(payload["inputs"], **payload.get("parameters", {})))

    after = get(url + "stats")
    assert after["replica"] == before["replica"]  # one replica saw every request
    new = {int(k): v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
    items = sum(len(p["inputs"]) if isinstance(p["inputs"], list) else 1 for p in payloads)
    # Every input went through the batcher exactly once, and some batches held several requests' inputs.
    assert sum(size * count for size, count in new.items()) == items
    assert max(size for size, count in new.items() if count) > 1, new
    assert max(new) <= 8  # never beyond max_batch_size
    assert after["requests"] - before["requests"] == len(payloads)


@pytest.mark.parametrize("raw, method, path, status, kind", [
    (b"{oops", "POST", "", 400, "InputError"),
    (json.dumps({"text": "x"}).encode(), "POST", "", 400, "InputError"),
    (json.dumps({"inputs": 42}).encode(), "POST", "", 400, "InputError"),
    (json.dumps({"inputs": "x", "parameters": {"top_k": -1}}).encode(), "POST", "", 400, "InputError"),
    (json.dumps({"inputs": ["x"] * 65}).encode(), "POST", "", 413, "InputError"),
    (json.dumps({"inputs": "x"}).encode(), "PUT", "", 405, "MethodNotAllowed"),
    (json.dumps({"inputs": "x"}).encode(), "POST", "nope", 404, "NotFound"),
])
def test_bad_requests_get_4xx_with_a_json_error(classifier, raw, method, path, status, kind):
    url, _ = classifier
    code, body = post(url + path, None, raw=raw, method=method)
    assert code == status, body
    assert isinstance(body, dict) and body["error"]["type"] == kind and body["error"]["message"]


def test_describe_route(classifier):
    url, pipe = classifier
    info = get(url)
    assert info["task"] == "text-classification" and info["labels"] == list(pipe.manifest.labels)
    assert info["batching"] == {"enabled": True, "max_batch_size": 8, "wait_timeout_s": 0.05}


def test_question_answering_through_the_python_api(cluster, classifier, port, artifact_factory):
    art = artifact_factory("bert", "question-answering")
    url = cluster.deploy(ServeConfig(artifact=art.path, name="qa", route_prefix="/qa", port=port,
                                     batching=BatchingConfig(max_batch_size=8, wait_timeout_s=0.05),
                                     replicas=ReplicaConfig(num_cpus=1, threads=1)), timeout_s=90)
    pipe = load(art.path)
    pairs = [{"question": "who wrote it?", "context": "the report was written by ada in paris"},
             {"question": "where?", "context": "the film was great " * 20},  # longer than the window
             {"question": "what?", "context": ""}]
    payloads = [{"inputs": pairs[i % 3]} for i in range(12)] + [{"inputs": pairs, "parameters": {"top_k": 2}}]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda p: post(url, p), payloads))
    for payload, (status, body) in zip(payloads, responses):
        assert status == 200, body
        inputs = payload["inputs"] if isinstance(payload["inputs"], list) else [payload["inputs"]]
        expected = pipe(question=[p["question"] for p in inputs], context=[p["context"] for p in inputs],
                        **payload.get("parameters", {}))
        assert_same(body, expected if isinstance(payload["inputs"], list) else expected[0])
    # A question too long for the window fails its own request only, with a 400.
    status, body = post(url, {"inputs": {"question": "who " * 200, "context": "ada"}})
    assert status == 400 and "too long" in body["error"]["message"]


def test_a_killed_replica_is_replaced_and_no_request_is_dropped(classifier):
    """SIGKILL the replica under load: every request still gets an answer (a correct 200, or an
    explicit 5xx for those caught on the dead replica), and Serve starts a new replica that serves."""
    from ray import serve

    url, pipe = classifier
    victim = get(url + "stats")["pid"]
    payloads = [{"inputs": TEXTS[i % len(TEXTS)]} for i in range(40)]
    killer = threading.Timer(0.3, os.kill, args=(victim, signal.SIGKILL))

    def send(payload):
        time.sleep(0.02 * payloads.index(payload) % 1.0)  # spread the burst over about a second
        try:
            return post(url, payload)
        except OSError as exc:  # a connection error or timeout is a dropped request: the test fails on it
            return None, repr(exc)

    killer.start()
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(send, payloads))
    killer.join()
    assert all(status is not None for status, _ in responses), [b for s, b in responses if s is None]
    print("statuses around the kill:", sorted(Counter(status for status, _ in responses).items()))
    for payload, (status, body) in zip(payloads, responses):
        assert status == 200 or status >= 500, (status, body)
        if status == 200:
            assert_same(body, pipe(payload["inputs"]))

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            stats = get(url + "stats")
            if stats["pid"] != victim:
                break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        pytest.fail("no new replica served within 90s of the kill")
    status, body = post(url, {"inputs": TEXTS[:3]})
    assert status == 200
    assert_same(body, pipe(TEXTS[:3]))
    assert serve.status().applications["cls"].status == "RUNNING"
