"""Serving artifacts at scale: Ray Serve with dynamic batching, and Triton / OpenVINO Model Server
model repositories generated from the manifest.

Importing this package imports neither Ray nor tritonclient (the `[serve]` extra); the modules that
need them import them when used:

    config       typed settings (`ServeConfig`, `BatchingConfig`, ...) and the Serve config file
    protocol     the JSON request/response bodies, engine-independent
    ray_serve    the Ray Serve deployment (imports ray)
    local        a local Ray cluster on 127.0.0.1 for `optimise serve run`, tests and benchmarks
    triton, ovms model repository exports; remote: the tokenising client for both
    cli          `optimise serve ...`
"""

from runtimes.serving.config import (
    AutoscalingConfig,
    BatchingConfig,
    ReplicaConfig,
    ServeConfig,
    ServingError,
    write_serve_config,
)
from runtimes.serving.protocol import RequestLimits

__all__ = [
    "AutoscalingConfig",
    "BatchingConfig",
    "ReplicaConfig",
    "RequestLimits",
    "ServeConfig",
    "ServingError",
    "write_serve_config",
]
