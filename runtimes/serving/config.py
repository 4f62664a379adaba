"""Typed settings for serving an artifact with Ray Serve, and the Serve config file made from them.

Plain dataclasses (the runtime does not depend on pydantic), validated at construction. The config
file written by `serve_config_document` is the standard Ray Serve one (`serve run FILE`,
`serve deploy FILE`): what the replica needs to load the model goes in the application's `args`;
replicas, autoscaling, health checks and CPUs go in its `deployments` entry, where operators expect
to edit them; dynamic batching goes in `user_config`, so a changed batch size or wait time is
applied to running replicas without restarting them.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from runtimes.common.errors import EdgeError
from runtimes.serving.protocol import RequestLimits, is_int

# The application's import path in Serve config files: a builder taking the `args` mapping.
APP_BUILDER = "runtimes.serving.ray_serve:app_builder"
DEPLOYMENT_NAME = "ArtifactDeployment"
LOOPBACK = "127.0.0.1"


class ServingError(EdgeError):
    """A serving setting is invalid (batch size, replicas, name, ...) or an application did not start."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ServingError(message)


@dataclass(frozen=True)
class BatchingConfig:
    """Serve's dynamic batching (`@serve.batch`): requests that arrive within `wait_timeout_s` of
    each other run as one model batch of at most `max_batch_size` inputs.

    `enabled=False` runs each request on its own (the baseline the throughput benchmark compares with).
    """

    enabled: bool = True
    max_batch_size: int = 16
    wait_timeout_s: float = 0.005

    def __post_init__(self) -> None:
        _require(isinstance(self.enabled, bool), f"batching.enabled must be true or false, got {self.enabled!r}")
        _require(is_int(self.max_batch_size) and self.max_batch_size >= 1,
                 f"max_batch_size must be a positive integer, got {self.max_batch_size!r}")
        _require(isinstance(self.wait_timeout_s, (int, float)) and not isinstance(self.wait_timeout_s, bool)
                 and 0 <= self.wait_timeout_s <= 10,
                 f"batch wait timeout must be between 0 and 10 seconds, got {self.wait_timeout_s!r}")

    @classmethod
    def from_dict(cls, data: Any) -> BatchingConfig:
        return _from_dict(cls, data, "batching")


@dataclass(frozen=True)
class AutoscalingConfig:
    """Serve autoscaling: keep about `target_ongoing_requests` in flight per replica."""

    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 16.0

    def __post_init__(self) -> None:
        _require(is_int(self.min_replicas) and self.min_replicas >= 0,
                 f"min_replicas must be a non-negative integer, got {self.min_replicas!r}")
        _require(is_int(self.max_replicas) and self.max_replicas >= max(1, self.min_replicas),
                 f"max_replicas must be at least max(1, min_replicas={self.min_replicas}), got {self.max_replicas!r}")
        _require(isinstance(self.target_ongoing_requests, (int, float)) and self.target_ongoing_requests > 0,
                 f"target_ongoing_requests must be positive, got {self.target_ongoing_requests!r}")


@dataclass(frozen=True)
class ReplicaConfig:
    """How many replicas, what each reserves and runs with, and how Serve checks them.

    `threads` is the model's intra-op thread count; by default the CPUs the replica reserves (at
    least one), so replicas on one machine do not oversubscribe its cores.
    """

    num_replicas: int = 1
    autoscaling: AutoscalingConfig | None = None
    num_cpus: float = 1.0
    threads: int | None = None
    max_ongoing_requests: int | None = None  # default: twice the max batch size, at least 8
    health_check_period_s: float = 5.0
    health_check_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        _require(is_int(self.num_replicas) and self.num_replicas >= 1,
                 f"num_replicas must be a positive integer, got {self.num_replicas!r}")
        _require(isinstance(self.num_cpus, (int, float)) and self.num_cpus > 0,
                 f"num_cpus must be positive, got {self.num_cpus!r}")
        _require(self.threads is None or (is_int(self.threads) and self.threads >= 1),
                 f"threads must be a positive integer, got {self.threads!r}")
        _require(self.max_ongoing_requests is None
                 or (is_int(self.max_ongoing_requests) and self.max_ongoing_requests >= 1),
                 f"max_ongoing_requests must be a positive integer, got {self.max_ongoing_requests!r}")
        for name in ("health_check_period_s", "health_check_timeout_s"):
            value = getattr(self, name)
            _require(isinstance(value, (int, float)) and value > 0, f"{name} must be positive, got {value!r}")

    @property
    def model_threads(self) -> int:
        return self.threads if self.threads is not None else max(1, math.ceil(self.num_cpus))


@dataclass(frozen=True)
class ModelArgs:
    """What a replica needs to load the artifact; the application's `args` in the Serve config."""

    artifact: str
    backend: str = "auto"
    device: str | None = None
    threads: int = 1
    model_batch_size: int = 16  # the pipeline's batch: one dynamic batch is one model call
    max_items: int = 64
    max_body_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        _require(isinstance(self.artifact, str) and bool(self.artifact), "artifact must be a folder path")
        _require(is_int(self.threads) and self.threads >= 1,
                 f"threads must be a positive integer, got {self.threads!r}")
        _require(is_int(self.model_batch_size) and self.model_batch_size >= 1,
                 f"model_batch_size must be a positive integer, got {self.model_batch_size!r}")
        try:
            _ = self.limits  # builds (and so validates) the limits now, not at the first request
        except ValueError as exc:
            raise ServingError(str(exc)) from None

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits(max_items=self.max_items, max_body_bytes=self.max_body_bytes)

    @classmethod
    def from_dict(cls, data: Any) -> ModelArgs:
        return _from_dict(cls, data, "args")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class ServeConfig:
    """One artifact served as one Serve application on `host:port` + `route_prefix`."""

    artifact: Path
    name: str = "model"
    route_prefix: str = "/"
    host: str = LOOPBACK
    port: int = 8000
    backend: str = "auto"
    device: str | None = None
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    replicas: ReplicaConfig = field(default_factory=ReplicaConfig)
    limits: RequestLimits = field(default_factory=RequestLimits)

    def __post_init__(self) -> None:
        _require(bool(_NAME.match(self.name)),
                 f"name {self.name!r} must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit")
        _require(self.route_prefix.startswith("/"), f"route prefix must start with '/', got {self.route_prefix!r}")
        _require(is_int(self.port) and 1 <= self.port <= 65535, f"port must be 1-65535, got {self.port!r}")
        object.__setattr__(self, "artifact", Path(self.artifact).resolve())

    def model_args(self) -> ModelArgs:
        return ModelArgs(
            artifact=str(self.artifact), backend=self.backend, device=self.device,
            threads=self.replicas.model_threads,
            model_batch_size=max(self.batching.max_batch_size, 8),
            max_items=self.limits.max_items, max_body_bytes=self.limits.max_body_bytes,
        )

    def max_ongoing_requests(self) -> int:
        # Serve holds back requests beyond this per replica; it must exceed the batch size or the
        # batcher never sees a full batch (Serve's default is 5).
        if self.replicas.max_ongoing_requests is not None:
            return self.replicas.max_ongoing_requests
        return max(8, 2 * self.batching.max_batch_size)

    def deployment_options(self) -> dict[str, Any]:
        """Options of the one deployment, in Serve config-file form (also passed to `.options()`)."""
        r = self.replicas
        options: dict[str, Any] = {
            "name": DEPLOYMENT_NAME,
            "max_ongoing_requests": self.max_ongoing_requests(),
            "health_check_period_s": r.health_check_period_s,
            "health_check_timeout_s": r.health_check_timeout_s,
            "ray_actor_options": {"num_cpus": r.num_cpus},
            "user_config": {"batching": asdict(self.batching)},
        }
        if r.autoscaling is not None:
            options["autoscaling_config"] = asdict(r.autoscaling)
        else:
            options["num_replicas"] = r.num_replicas
        return options

    def serve_config_document(self) -> dict[str, Any]:
        """The Ray Serve config file (`serve run` / `serve deploy`) for this artifact, as a mapping."""
        return {
            "proxy_location": "HeadOnly",
            "http_options": {"host": self.host, "port": self.port},
            "applications": [{
                "name": self.name,
                "route_prefix": self.route_prefix,
                "import_path": APP_BUILDER,
                "args": asdict(self.model_args()),
                "deployments": [self.deployment_options()],
            }],
        }


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ServingError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ServingError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ServingError(f"{where}: {exc}") from None


def write_serve_config(cfg: ServeConfig, path: Path | str) -> Path:
    """Write `cfg` as a Ray Serve YAML config file (needs PyYAML, which Ray installs)."""
    try:
        import yaml
    except ImportError:
        from runtimes.common.errors import BackendUnavailableError

        raise BackendUnavailableError(
            "writing a Serve config needs PyYAML: pip install 'edge-toolchain[serve]'") from None
    path = Path(path)
    header = (f"# Ray Serve config for {cfg.artifact} (written by `optimise serve config`).\n"
              f"# Start it with: serve run {path.name}   (or: serve deploy {path.name} on a running cluster)\n")
    path.write_text(header + yaml.safe_dump(cfg.serve_config_document(), sort_keys=False), encoding="utf-8")
    return path
