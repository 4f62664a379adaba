"""An artifact as a Ray Serve deployment, with Serve's dynamic batching across requests.

Imported only when serving with Ray (it imports ray at module level, which `import runtimes` never
does). Routes, relative to the application's route prefix:

    POST /        a request body as in `runtimes.serving.protocol`; the pipeline's output as JSON
    GET  /        what is served: task, labels, backend, batching
    GET  /stats   this replica's counters, including every dynamic batch size it ran

Errors are JSON `{"error": {"type", "message"}}` with 400 (bad body), 404, 405, 413 (too large)
or 500 (the model failed; logged with its traceback).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, cast

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from runtimes.common.errors import EdgeError
from runtimes.embedded.loader import load
from runtimes.serving.config import DEPLOYMENT_NAME, BatchingConfig, ModelArgs, ServeConfig
from runtimes.serving.protocol import Options, Outcome, RequestError, error_body, parse_request, run_isolated

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    item: Any
    options: Options


class _Stats:
    """Counters of one replica; read through GET /stats (per replica, not per deployment)."""

    def __init__(self) -> None:
        self.requests = 0
        self.items = 0
        self.errors_4xx = 0
        self.errors_5xx = 0
        self.batch_sizes: Counter[int] = Counter()  # dynamic batch size -> how many batches had it

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "items": self.items, "errors_4xx": self.errors_4xx,
                "errors_5xx": self.errors_5xx,
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())}}


@serve.deployment(name=DEPLOYMENT_NAME)
class ArtifactDeployment:
    """One replica: the artifact loaded with `runtimes.load`, behind Serve's HTTP proxy."""

    def __init__(self, model: dict[str, Any]):
        started = time.perf_counter()
        self.args = ModelArgs.from_dict(model)
        self.pipeline = load(self.args.artifact, backend=self.args.backend, device=self.args.device,
                             threads=self.args.threads, batch_size=self.args.model_batch_size, warmup=True)
        self.task = self.pipeline.task
        self.batching = BatchingConfig()
        # One inference thread per replica: the model already uses `threads` cores per call, so two
        # calls at once would only fight over them. Scale out with replicas instead.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._stats = _Stats()
        self._internal_errors = 0  # since the last health check
        self._load_s = time.perf_counter() - started
        log.info("loaded %s (%s on %s/%s) in %.2fs", self.args.artifact, self.task.value,
                 self.pipeline.backend, self.pipeline.device, self._load_s)

    # -- Serve hooks --------------------------------------------------------------------------
    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply `user_config` (the batching settings); Serve calls this without restarting the replica."""
        self.batching = BatchingConfig.from_dict((user_config or {}).get("batching", {}))
        # ray types @serve.batch as a plain callable; the wrapper it returns has these setters (documented API)
        self._batched.set_max_batch_size(self.batching.max_batch_size)  # type: ignore[attr-defined]
        self._batched.set_batch_wait_timeout_s(self.batching.wait_timeout_s)  # type: ignore[attr-defined]

    async def check_health(self) -> None:
        """Serve restarts a replica whose check raises. After internal errors, prove the model still runs."""
        if self._internal_errors:
            self._internal_errors = 0
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self.pipeline.warmup)

    def __del__(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # -- HTTP ---------------------------------------------------------------------------------
    async def __call__(self, request: Request) -> JSONResponse:
        path = _relative_path(request)
        try:
            if path == "/" and request.method == "POST":
                return await self._predict(request)
            if path == "/" and request.method == "GET":
                return JSONResponse(self._describe())
            if path == "/stats" and request.method == "GET":
                return JSONResponse(self._stats_body())
            if path in ("/", "/stats"):
                raise RequestError(f"{request.method} is not allowed on {path}", status=405, kind="MethodNotAllowed")
            raise RequestError(f"no route {path}; POST / to predict, GET / or /stats to inspect",
                               status=404, kind="NotFound")
        except RequestError as exc:
            self._stats.errors_4xx += 1
            return JSONResponse(exc.body(), status_code=exc.status)
        except EdgeError as exc:  # an InputError from the pipeline itself: still the client's input
            self._stats.errors_4xx += 1
            return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=400)
        except Exception as exc:
            log.exception("request failed")
            self._stats.errors_5xx += 1
            self._internal_errors += 1
            return JSONResponse(error_body("InternalError", f"{type(exc).__name__}: {exc}"), status_code=500)

    async def _predict(self, request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        limit = self.args.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(f"request body is {declared} bytes; the limit is {limit}", status=413)
        parsed = parse_request(self.task, await request.body(), self.args.limits)
        self._stats.requests += 1
        self._stats.items += len(parsed.items)
        if self.batching.enabled:
            outcomes = await asyncio.gather(*(self._batched(_Job(item, parsed.options)) for item in parsed.items))
        else:
            outcomes = await self._run_in_thread([_Job(item, parsed.options) for item in parsed.items])
        for index, outcome in enumerate(outcomes):
            if outcome.error is not None:
                where = "inputs" if parsed.single else f"inputs[{index}]"
                raise RequestError(f"{where}: {outcome.error}")
        return JSONResponse(parsed.shape([o.value for o in outcomes]))

    # -- batching -----------------------------------------------------------------------------
    # The decorator's defaults are replaced by `reconfigure` (Serve always calls it with the
    # deployment's user_config before the first request).
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _batched(self, jobs: list[_Job]) -> list[Outcome]:
        return await self._run_in_thread(jobs)

    async def _run_in_thread(self, jobs: list[_Job]) -> list[Outcome]:
        # The pipeline call blocks for milliseconds; off the event loop, the next batch can gather.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_jobs, jobs)

    def _run_jobs(self, jobs: list[_Job]) -> list[Outcome]:
        self._stats.batch_sizes[len(jobs)] += 1
        outcomes: list[Outcome | None] = [None] * len(jobs)
        groups: dict[Options, list[int]] = {}
        for index, job in enumerate(jobs):  # requests with different parameters cannot share a call
            groups.setdefault(job.options, []).append(index)
        for options, indices in groups.items():
            results = run_isolated(self.pipeline, self.task, [jobs[i].item for i in indices], options)
            for index, outcome in zip(indices, results):
                outcomes[index] = outcome
        return outcomes  # type: ignore[return-value]

    # -- introspection ------------------------------------------------------------------------
    def _describe(self) -> dict[str, Any]:
        return {"artifact": self.args.artifact, "task": self.task.value,
                "labels": list(self.pipeline.manifest.labels), "backend": self.pipeline.backend,
                "device": self.pipeline.device, "threads": self.args.threads,
                "batching": asdict(self.batching), "max_items": self.args.max_items}

    def _stats_body(self) -> dict[str, Any]:
        context = serve.get_replica_context()
        return {"replica": context.replica_id.unique_id, "pid": os.getpid(), "load_s": round(self._load_s, 3),
                "batching": asdict(self.batching), **self._stats.as_dict()}


def _relative_path(request: Request) -> str:
    """The request path below the application's route prefix ("/" for the prefix itself)."""
    path = request.url.path
    root = request.scope.get("root_path", "") or ""
    if root and path.startswith(root):
        path = path[len(root):]
    return "/" + path.strip("/") if path.strip("/") else "/"


def _deployment() -> serve.Deployment:
    """`ArtifactDeployment` as `@serve.deployment` made it: a `Deployment` (mypy ignores class decorators)."""
    return cast(serve.Deployment, ArtifactDeployment)


def build_app(cfg: ServeConfig) -> serve.Application:
    """The Serve application for `cfg`, with the same deployment options its config file would set."""
    options = cfg.deployment_options()
    return _deployment().options(**options).bind(asdict(cfg.model_args()))


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Entry point named by Serve config files (`import_path`): `args` are `ModelArgs` fields.

    The file's `deployments` entry supplies replicas, batching and health checks; without one
    (e.g. `serve run runtimes.serving.ray_serve:app_builder artifact=DIR`) Serve's own defaults
    apply, except the batching defaults of `BatchingConfig`.
    """
    model = ModelArgs.from_dict(dict(args))
    defaults: dict[str, Any] = {"user_config": {"batching": asdict(BatchingConfig())},
                                "max_ongoing_requests": max(8, 2 * BatchingConfig().max_batch_size)}
    return _deployment().options(**defaults).bind(asdict(model))
