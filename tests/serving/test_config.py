"""Serving settings: validation at construction, and the Serve config file Ray itself accepts."""

from __future__ import annotations

import pytest

from runtimes.serving import AutoscalingConfig, BatchingConfig, ReplicaConfig, ServeConfig, ServingError
from runtimes.serving.config import APP_BUILDER, ModelArgs, write_serve_config

from .conftest import needs_serve_extra


@pytest.mark.parametrize("make, fragment", [
    (lambda: BatchingConfig(max_batch_size=0), "max_batch_size"),
    (lambda: BatchingConfig(wait_timeout_s=-1), "wait timeout"),
    (lambda: BatchingConfig(enabled="yes"), "enabled"),
    (lambda: AutoscalingConfig(min_replicas=3, max_replicas=2), "max_replicas"),
    (lambda: ReplicaConfig(num_replicas=0), "num_replicas"),
    (lambda: ReplicaConfig(num_cpus=0), "num_cpus"),
    (lambda: ReplicaConfig(threads=0), "threads"),
    (lambda: ServeConfig(artifact=".", name="bad name"), "name"),
    (lambda: ServeConfig(artifact=".", route_prefix="api"), "route prefix"),
    (lambda: ServeConfig(artifact=".", port=70000), "port"),
    (lambda: ModelArgs.from_dict({"artifact": "a", "thread": 2}), r"unknown field\(s\) thread"),
    (lambda: BatchingConfig.from_dict({"max_batch": 2}), r"unknown field\(s\) max_batch"),
])
def test_invalid_settings_fail_at_construction(make, fragment):
    with pytest.raises(ServingError, match=fragment):
        make()


def test_defaults_keep_the_batcher_fed(tmp_path):
    cfg = ServeConfig(artifact=tmp_path, batching=BatchingConfig(max_batch_size=24), replicas=ReplicaConfig(num_cpus=2))
    # Serve's default of 5 requests in flight per replica would cap every batch at 5.
    assert cfg.max_ongoing_requests() == 48
    assert cfg.model_args().threads == 2 and cfg.model_args().model_batch_size == 24
    app = cfg.serve_config_document()["applications"][0]
    assert app["import_path"] == APP_BUILDER and app["args"]["artifact"] == str(tmp_path.resolve())
    assert app["deployments"][0]["user_config"] == {"batching": {"enabled": True, "max_batch_size": 24,
                                                                 "wait_timeout_s": 0.005}}


@needs_serve_extra
@pytest.mark.parametrize("autoscaling", [None, AutoscalingConfig(min_replicas=1, max_replicas=3)])
def test_config_file_is_a_valid_serve_config(tmp_path, autoscaling):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    cfg = ServeConfig(artifact=tmp_path, name="sentiment", route_prefix="/sentiment", port=8123,
                      replicas=ReplicaConfig(autoscaling=autoscaling))
    path = write_serve_config(cfg, tmp_path / "serve.yaml")
    document = yaml.safe_load(path.read_text())
    schema = ServeDeploySchema.model_validate(document)  # Ray's own schema for `serve deploy` files
    app = schema.applications[0]
    assert (app.name, app.route_prefix, app.import_path) == ("sentiment", "/sentiment", APP_BUILDER)
    assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 8123
    deployment = app.deployments[0]
    if autoscaling is None:
        assert deployment.num_replicas == 1
    else:
        assert deployment.autoscaling_config["max_replicas"] == 3
    assert ModelArgs.from_dict(app.args) == cfg.model_args()
