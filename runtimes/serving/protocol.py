"""The JSON request/response protocol of served artifacts, independent of any serving engine.

A request body is shaped like the Hugging Face inference API:

    text / token classification   {"inputs": "a text" | ["text", ...], "parameters": {...}}
    question answering            {"inputs": {"question": "...", "context": "..."} | [{...}, ...],
                                   "parameters": {...}}

and the response body is exactly what the in-process pipeline (`runtimes.load(ART)(...)`) returns
for the same inputs and parameters: one result for a single input, a list for a list.

Each input becomes one `Item`; items with equal parameters can run in one model batch, which is how
the Ray Serve deployment batches across requests. Everything here is plain Python so it can be tested
without a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from runtimes.common.errors import EdgeError, InputError
from runtimes.common.manifest import Task
from runtimes.embedded.pipelines import PIPELINES
from runtimes.embedded.pipelines.base import is_int as is_int  # serving's configs check their integers with it
from runtimes.embedded.pipelines.base import positive_int

# One model input: a text, or a (question, context) pair for question answering.
ItemValue = str | tuple[str, str]
# Parameters as a hashable, sorted tuple of (name, value) so items can be grouped by them.
Options = tuple[tuple[str, Any], ...]



class RequestError(EdgeError):
    """A request that cannot be served as sent; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, kind: str = "InputError"):
        super().__init__(message)
        self.status = status
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return error_body(self.kind, str(self))


def error_body(kind: str, message: str) -> dict[str, Any]:
    """The JSON body of every error response: `{"error": {"type": ..., "message": ...}}`."""
    return {"error": {"type": kind, "message": message}}


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one request, checked before any work is queued."""

    max_items: int = 64
    max_body_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("max_items", "max_body_bytes"):
            value = getattr(self, name)
            if not positive_int(value):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ParsedRequest:
    """A validated request: its items, the pipeline parameters, and whether one input was sent."""

    items: tuple[ItemValue, ...]
    options: Options
    single: bool

    def shape(self, results: Sequence[Any]) -> Any:
        """The response body for the per-item `results`: one result or the list, as the pipeline does."""
        return results[0] if self.single else list(results)


def parse_request(task: Task, body: bytes, limits: RequestLimits = RequestLimits()) -> ParsedRequest:
    """Decode and validate a request body for `task`; raise `RequestError` with a 4xx status."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(f"request body is {len(body)} bytes; the limit is {limits.max_body_bytes}", status=413)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError('request body must be a JSON object such as {"inputs": ...}')
    unknown = sorted(set(data) - {"inputs", "parameters"})
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}; "
                           "a request has \"inputs\" and optional \"parameters\"")
    if "inputs" not in data:
        raise RequestError('request body has no "inputs"')
    items, single = _parse_inputs(task, data["inputs"])
    if len(items) > limits.max_items:
        raise RequestError(f"request has {len(items)} inputs; the limit is {limits.max_items} per request", status=413)
    return ParsedRequest(items=tuple(items), options=_parse_parameters(task, data.get("parameters")), single=single)


def _parse_inputs(task: Task, inputs: Any) -> tuple[list[ItemValue], bool]:
    single = not isinstance(inputs, list)
    values = [inputs] if single else inputs
    if not values:
        raise RequestError('"inputs" is an empty list')
    items: list[ItemValue] = []
    for i, value in enumerate(values):
        where = "inputs" if single else f"inputs[{i}]"
        if PIPELINES[task].takes_pairs:
            if not (isinstance(value, dict) and set(value) == {"question", "context"}):
                raise RequestError(f'{where} must be an object with exactly "question" and "context"')
            if not (isinstance(value["question"], str) and isinstance(value["context"], str)):
                raise RequestError(f"{where}: question and context must be strings")
            items.append((value["question"], value["context"]))
        else:
            if not isinstance(value, str):
                raise RequestError(f"{where} must be a string, got {type(value).__name__}")
            items.append(value)
    return items, single


def _parse_parameters(task: Task, parameters: Any) -> Options:
    if parameters is None:
        return ()
    if not isinstance(parameters, dict):
        raise RequestError('"parameters" must be a JSON object')
    # The task's pipeline names the options it accepts. Anything else is a 400, because a silently
    # ignored option (a typo of `top_k`) gives an answer the client did not ask for.
    allowed = {name: (check, expected) for name, check, expected in PIPELINES[task].request_options}
    unknown = sorted(set(parameters) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise RequestError(f"unknown parameter(s) {', '.join(unknown)} for {task.value} (known: {known})")
    for name, value in parameters.items():
        check, expected = allowed[name]
        if not check(value):
            raise RequestError(f"parameter {name} must be {expected}, got {json.dumps(value)}")
    # Lists become tuples so the options are hashable and items can be grouped by them.
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in parameters.items()))


def run_items(pipeline: Any, task: Task, items: Sequence[ItemValue], options: Options) -> list[Any]:
    """Run one model batch: `items` that share `options`, through the in-process pipeline.

    Returns one result per item, in order, exactly as the pipeline gives them for a list input.
    """
    kwargs = dict(options)
    if PIPELINES[task].takes_pairs:
        pairs = cast("Sequence[tuple[str, str]]", items)  # parse_request gave this task (question, context) pairs
        questions = [q for q, _ in pairs]
        contexts = [c for _, c in pairs]
        results = pipeline(question=questions, context=contexts, **kwargs)
    else:
        results = pipeline(list(items), **kwargs)
    return list(results)


@dataclass(frozen=True)
class Outcome:
    """The result of one item in a batch, or the expected error that item alone caused."""

    value: Any = None
    error: InputError | None = None


def run_isolated(pipeline: Any, task: Task, items: Sequence[ItemValue], options: Options) -> list[Outcome]:
    """Run `items` as one batch; if the batch is refused, run each item alone so one bad input
    (a QA question longer than the window, say) fails only its own request, not its batch-mates'.
    """
    try:
        return [Outcome(value=v) for v in run_items(pipeline, task, items, options)]
    except InputError as exc:
        if len(items) == 1:
            return [Outcome(error=exc)]
    outcomes = []
    for item in items:
        try:
            outcomes.append(Outcome(value=run_items(pipeline, task, [item], options)[0]))
        except InputError as exc:
            outcomes.append(Outcome(error=exc))
    return outcomes
