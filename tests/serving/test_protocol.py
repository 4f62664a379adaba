"""The JSON protocol without a cluster: parsing, limits, grouping, isolation of a bad input."""

from __future__ import annotations

import json

import pytest

from runtimes import Task, load
from runtimes.serving.protocol import RequestError, RequestLimits, parse_request, run_isolated, run_items


def body(data) -> bytes:
    return json.dumps(data).encode()


@pytest.mark.parametrize("raw, status, fragment", [
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (body(["a"]), 400, "must be a JSON object"),
    (body({}), 400, 'no "inputs"'),
    (body({"inputs": "a", "extra": 1}), 400, "unknown field(s) extra"),
    (body({"inputs": []}), 400, "empty list"),
    (body({"inputs": ["a", 3]}), 400, "inputs[1] must be a string"),
    (body({"inputs": None}), 400, "inputs must be a string"),
    (body({"inputs": "a", "parameters": {"topk": 2}}), 400, "unknown parameter(s) topk"),
    (body({"inputs": "a", "parameters": {"top_k": 0}}), 400, "top_k must be a positive integer or null"),
    (body({"inputs": "a", "parameters": {"top_k": True}}), 400, "top_k must be"),
    (body({"inputs": "a", "parameters": []}), 400, '"parameters" must be a JSON object'),
    (body({"inputs": ["a"] * 5}), 413, "limit is 4"),
    (b" " * 300, 413, "limit is 256"),
])
def test_bad_requests_name_the_problem(raw, status, fragment):
    with pytest.raises(RequestError) as err:
        parse_request(Task.TEXT_CLASSIFICATION, raw, RequestLimits(max_items=4, max_body_bytes=256))
    assert err.value.status == status
    assert fragment in str(err.value)
    assert err.value.body() == {"error": {"type": "InputError", "message": str(err.value)}}


def test_question_answering_inputs_are_pairs():
    parsed = parse_request(Task.QUESTION_ANSWERING,
                           body({"inputs": [{"question": "q", "context": "c"}], "parameters": {"top_k": 2}}))
    assert parsed.items == (("q", "c"),) and parsed.options == (("top_k", 2),) and not parsed.single
    with pytest.raises(RequestError, match='exactly "question" and "context"'):
        parse_request(Task.QUESTION_ANSWERING, body({"inputs": {"question": "q"}}))
    with pytest.raises(RequestError, match="unknown parameter"):
        parse_request(Task.QUESTION_ANSWERING, body({"inputs": {"question": "q", "context": "c"},
                                                     "parameters": {"ignore_labels": []}}))


def test_options_are_hashable_and_order_free():
    a = parse_request(Task.TOKEN_CLASSIFICATION, body({"inputs": "x", "parameters": {"ignore_labels": ["O", "B-PER"]}}))
    assert a.options == (("ignore_labels", ("O", "B-PER")),) and a.single
    hash(a.options)


def test_items_run_like_the_pipeline(artifact_factory):
    art = artifact_factory("bert", "text-classification")
    pipe = load(art.path)
    texts = ["the film was great", "bad", ""]
    assert run_items(pipe, Task.TEXT_CLASSIFICATION, texts, (("top_k", None),)) == pipe(texts, top_k=None)
    parsed = parse_request(Task.TEXT_CLASSIFICATION, body({"inputs": "the film was great"}))
    assert parsed.shape(run_items(pipe, Task.TEXT_CLASSIFICATION, parsed.items, parsed.options)) == pipe(texts[0])


def test_one_bad_input_fails_alone(artifact_factory):
    """A question longer than the window is refused by the pipeline; its batch-mates still get answers."""
    art = artifact_factory("bert", "question-answering")
    pipe = load(art.path)
    good = ("who wrote it?", "the report was written by ada in paris")
    bad = (" ".join(["who"] * 200), "the report")
    outcomes = run_isolated(pipe, Task.QUESTION_ANSWERING, [good, bad, good], ())
    assert [o.error is None for o in outcomes] == [True, False, True]
    assert outcomes[0].value == pipe(question=good[0], context=good[1])
    assert "too long" in str(outcomes[1].error)
