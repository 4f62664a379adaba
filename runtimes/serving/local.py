"""Start a Ray cluster on this machine (127.0.0.1 only) and serve artifacts on it.

Used by `optimise serve run`, the serving tests and the throughput benchmark, so all three start
Ray the same way:

    with LocalCluster(num_cpus=2) as cluster:
        url = cluster.deploy(ServeConfig(artifact="art/", port=8000))
        ...                                  # POST JSON to url
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from runtimes.common.errors import BackendUnavailableError
from runtimes.serving.config import LOOPBACK, ServeConfig, ServingError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'edge-toolchain[serve]'"


# On Linux, Ray replaces 127.0.0.1 with the machine's routable address for its own services (GCS,
# raylet, object manager) unless this is off; a local cluster must stay on the loopback interface.
# Ray reads it once, at import, and passes it to every process it starts.
_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                 # Ray reports usage statistics to a remote endpoint unless told not to.
                 "RAY_USAGE_STATS_ENABLED": "0"}


def require_ray() -> None:
    """Raise `BackendUnavailableError` naming the extra to install unless Ray Serve imports.

    Also sets the environment that keeps a local cluster on 127.0.0.1; call it before Ray is imported.
    """
    for key, value in _LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)
    try:
        importlib.import_module("ray.serve")  # imported for real: a broken install fails here, not later
    except ImportError as exc:
        raise BackendUnavailableError(f"serving with Ray needs Ray Serve ({exc}): {INSTALL_HINT}") from None


@dataclass(frozen=True)
class StartupTimes:
    """Seconds spent starting the cluster and bringing an application to RUNNING."""

    cluster_s: float
    deploy_s: float


class LocalCluster:
    """A fresh single-node Ray cluster bound to 127.0.0.1, shut down on exit.

    It never joins a cluster named by RAY_ADDRESS: tests and benchmarks must own what they measure.
    `object_store_mb` is kept small because requests carry kilobytes; Ray's default reserves 30% of RAM.
    """

    def __init__(self, num_cpus: int | None = None, object_store_mb: int = 128):
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.cluster_s = 0.0
        self._started = False

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def start(self) -> None:
        require_ray()
        import ray
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise ServingError("Ray was imported before the local cluster could keep it on 127.0.0.1: set "
                               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment, or start the cluster first")
        t0 = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=self.num_cpus,
            object_store_memory=self.object_store_mb << 20,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            _node_ip_address=LOOPBACK,
        )
        self._started = True
        self.cluster_s = time.perf_counter() - t0
        log.info("local Ray cluster up in %.1fs at %s", self.cluster_s, self.gcs_address)

    @property
    def gcs_address(self) -> str:
        import ray

        return ray.get_runtime_context().gcs_address

    def deploy(self, cfg: ServeConfig, timeout_s: float = 120.0) -> str:
        """Start Serve's HTTP proxy on `cfg.host:cfg.port` (first call only), deploy `cfg` and wait
        until it is RUNNING. Returns the application's URL."""
        from ray import serve

        from runtimes.serving.ray_serve import build_app

        if not self._started:
            raise ServingError("the cluster is not started")
        t0 = time.perf_counter()
        serve.start(http_options={"host": cfg.host, "port": cfg.port})
        serve.run(build_app(cfg), name=cfg.name, route_prefix=cfg.route_prefix, blocking=False)
        wait_until_running(cfg.name, timeout_s)
        self.deploy_s = time.perf_counter() - t0
        log.info("application %s running after %.1fs", cfg.name, self.deploy_s)
        return app_url(cfg)

    def remove(self, app_name: str) -> None:
        """Delete an application and wait until its replicas are gone (their CPUs are free again)."""
        from ray import serve

        serve.delete(app_name, _blocking=True)

    def shutdown(self) -> None:
        if not self._started:
            return
        import ray
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            self._started = False


def app_url(cfg: ServeConfig) -> str:
    prefix = cfg.route_prefix.rstrip("/")
    return f"http://{cfg.host}:{cfg.port}{prefix}/"


def wait_until_running(app_name: str, timeout_s: float) -> None:
    """Poll Serve's status until `app_name` is RUNNING; raise with Serve's own message if it fails."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    status = "NOT_STARTED"
    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        status = app.status if app is not None else "NOT_STARTED"
        if status == "RUNNING":
            return
        if app is not None and status in ("DEPLOY_FAILED", "UNHEALTHY"):
            details = "; ".join(f"{name}: {d.message}" for name, d in app.deployments.items() if d.message)
            raise ServingError(f"application {app_name} is {status}: {app.message or details}")
        time.sleep(0.25)
    raise ServingError(f"application {app_name} was not RUNNING after {timeout_s:.0f}s (last status {status})")
