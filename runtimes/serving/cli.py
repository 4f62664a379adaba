"""`optimise serve ...`: put an artifact behind Ray Serve, Triton or OpenVINO Model Server.

    optimise serve config ART [--out serve.yaml]    write a Ray Serve config file (serve run / serve deploy)
    optimise serve run ART [--port 8000]            start Ray on 127.0.0.1 and serve ART until Ctrl-C
    optimise serve triton ART --repo DIR            write a Triton model repository entry
    optimise serve ovms ART --repo DIR              write an OpenVINO Model Server repository entry

Expected errors print one line and exit 2; -v shows tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from runtimes.common.cli_boundary import Parser, option_names, parse, run_boundary

EXIT_OK = 0
log = logging.getLogger(__name__)


def _add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=Path, help="artifact folder written by `optimise`")
    p.add_argument("--name", default=None, help="application name (default: the artifact folder's name)")
    p.add_argument("--route-prefix", default="/", help="URL path the application answers under (default /)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--backend", default="auto", help="runtime backend in each replica (default auto)")
    p.add_argument("--device", default=None, help="device for the backend (default: the backend's first)")
    p.add_argument("--no-batching", action="store_true", help="run each request alone (no dynamic batching)")
    p.add_argument("--max-batch-size", type=int, default=16, help="inputs per dynamic batch (default 16)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="how long a batch waits to fill, in milliseconds (default 5)")
    p.add_argument("--replicas", type=int, default=1, help="fixed number of replicas (default 1)")
    p.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX replicas instead")
    p.add_argument("--target-ongoing", type=float, default=16.0,
                   help="autoscaling: requests in flight per replica to aim for (default 16)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs each replica reserves (default 1)")
    p.add_argument("--threads", type=int, default=None, help="model threads per replica (default: --num-cpus)")
    p.add_argument("--max-ongoing", type=int, default=None,
                   help="requests in flight per replica (default: twice --max-batch-size, at least 8)")
    p.add_argument("--max-items", type=int, default=64, help="inputs per request (default 64; more: HTTP 413)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="optimise serve", description="Serve an artifact with Ray Serve, or export it "
                                "to a Triton / OpenVINO Model Server model repository.")
    p.add_argument("-v", "--verbose", action="store_true", help="log everything and show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="{config,run,triton,ovms}")

    config = sub.add_parser("config", help="write a Ray Serve config file for an artifact")
    _add_serve_options(config)
    config.add_argument("--out", "-o", type=Path, default=Path("serve.yaml"), help="file to write (default serve.yaml)")
    config.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    run = sub.add_parser("run", help="start Ray on this machine and serve an artifact until Ctrl-C")
    _add_serve_options(run)
    run.add_argument("--cpus", type=int, default=None, help="CPUs Ray may use (default: all)")
    run.add_argument("--exit-after", type=float, default=None, metavar="SECONDS",
                     help="stop by itself after this many seconds (smoke tests)")

    triton = sub.add_parser("triton", help="write <repo>/<name>/ for Triton Inference Server")
    triton.add_argument("artifact", type=Path)
    triton.add_argument("--repo", type=Path, required=True, help="model repository folder")
    triton.add_argument("--name", default=None, help="model name (default: the artifact folder's name)")
    triton.add_argument("--max-batch-size", type=int, default=32)
    triton.add_argument("--max-queue-delay-us", type=int, default=1000, help="dynamic batcher's wait (default 1000)")
    triton.add_argument("--instances", type=int, default=1, help="model instances (default 1)")
    triton.add_argument("--kind", choices=["auto", "cpu", "gpu"], default="auto")
    triton.add_argument("--accelerator", choices=["auto", "none", "tensorrt", "openvino"], default="auto",
                        help="ONNX Runtime execution accelerator (default: from the artifact's target)")
    triton.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads per instance")
    triton.add_argument("--overwrite", action="store_true", help="replace <repo>/<name> if it exists")

    ovms = sub.add_parser("ovms", help="write <repo>/<name>/ and <repo>/config.json for OpenVINO Model Server")
    ovms.add_argument("artifact", type=Path)
    ovms.add_argument("--repo", type=Path, required=True, help="model repository folder")
    ovms.add_argument("--name", default=None, help="model name (default: the artifact folder's name)")
    ovms.add_argument("--target-device", default="CPU")
    ovms.add_argument("--nireq", type=int, default=None, help="parallel inference requests (default: OVMS decides)")
    ovms.add_argument("--threads", type=int, default=None, help="OpenVINO inference threads")
    ovms.add_argument("--performance-hint", choices=["LATENCY", "THROUGHPUT"], default="LATENCY")
    ovms.add_argument("--overwrite", action="store_true", help="replace the model if the repository has it")
    return p


def serve_config_from_args(args: argparse.Namespace):
    """The `ServeConfig` the `config` and `run` subcommands describe."""
    from runtimes.serving.config import AutoscalingConfig, BatchingConfig, ReplicaConfig, ServeConfig, ServingError
    from runtimes.serving.protocol import RequestLimits

    autoscaling = None
    if args.autoscale:
        try:
            low, high = (int(v) for v in args.autoscale.split(":"))
        except ValueError:
            raise ServingError(f"--autoscale takes MIN:MAX (two integers), got {args.autoscale!r}") from None
        autoscaling = AutoscalingConfig(min_replicas=low, max_replicas=high,
                                        target_ongoing_requests=args.target_ongoing)
    if not args.artifact.is_dir():
        raise ServingError(f"{args.artifact} is not a folder: pass an artifact folder written by `optimise`")
    try:
        limits = RequestLimits(max_items=args.max_items)
    except ValueError as exc:
        raise ServingError(str(exc)) from None
    return ServeConfig(
        artifact=args.artifact, name=args.name or args.artifact.resolve().name, route_prefix=args.route_prefix,
        host=args.host, port=args.port, backend=args.backend, device=args.device,
        batching=BatchingConfig(enabled=not args.no_batching, max_batch_size=args.max_batch_size,
                                wait_timeout_s=args.batch_wait_ms / 1000.0),
        replicas=ReplicaConfig(num_replicas=args.replicas, autoscaling=autoscaling, num_cpus=args.num_cpus,
                               threads=args.threads, max_ongoing_requests=args.max_ongoing),
        limits=limits,
    )


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("runtimes").setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `optimise serve`; returns the exit code."""
    parser = build_parser()
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    _configure_logging(args.verbose)
    options = option_names(parser)
    # the servers handle SIGTERM themselves (a graceful stop): only Ctrl-C is the boundary's
    return run_boundary("optimise serve", lambda: _COMMANDS[args.command](args), args.verbose, handle_signals=False,
                        options=options)


def _cmd_config(args: argparse.Namespace) -> int:
    from runtimes.serving.config import ServingError, write_serve_config
    from runtimes.serving.repository import read_artifact

    cfg = serve_config_from_args(args)
    read_artifact(cfg.artifact)  # a folder without a valid manifest fails now, not on the cluster
    if args.out.is_dir():
        raise ServingError(f"--out {args.out} is a folder; name the YAML file to write")
    if args.out.resolve().parent == Path(cfg.artifact).resolve():
        raise ServingError(f"--out {args.out} is inside the artifact, which must hold only its own files; "
                           "write the config elsewhere")
    if args.out.exists() and not args.overwrite:
        raise ServingError(f"{args.out} exists; pass --overwrite to replace it")
    path = write_serve_config(cfg, args.out)
    print(f"wrote {path}: application {cfg.name} on http://{cfg.host}:{cfg.port}{cfg.route_prefix}")
    print(f"  start it with: serve run {path}")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from runtimes.serving.local import LocalCluster

    cfg = serve_config_from_args(args)
    from runtimes.serving.repository import read_artifact

    read_artifact(cfg.artifact)
    # SIGTERM (a service manager stopping us) shuts the cluster down like Ctrl-C does.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with LocalCluster(num_cpus=args.cpus) as cluster:
        url = cluster.deploy(cfg)
        print(f"serving {cfg.artifact} at {url} (cluster {cluster.cluster_s:.1f}s, deploy {cluster.deploy_s:.1f}s)")
        print(f"  curl -s -X POST {url} -d '{_example_body(cfg)}'")
        print("  GET / describes the model, GET /stats shows this replica's batch sizes; Ctrl-C stops", flush=True)
        deadline = None if args.exit_after is None else time.monotonic() + args.exit_after
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    return EXIT_OK


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _example_body(cfg) -> str:
    from runtimes.common.manifest import Manifest
    from runtimes.embedded.pipelines import PIPELINES

    return PIPELINES[Manifest.read(cfg.artifact).task].example_body


def _cmd_triton(args: argparse.Namespace) -> int:
    from runtimes.serving.triton import TritonOptions, export_triton_repository

    options = TritonOptions(name=args.name, max_batch_size=args.max_batch_size,
                            max_queue_delay_us=args.max_queue_delay_us, instances=args.instances,
                            kind=args.kind, accelerator=args.accelerator, threads=args.threads)
    export = export_triton_repository(args.artifact, args.repo, options, overwrite=args.overwrite)
    check = ("checked against Triton's ModelConfig schema" if export.validated
             else "NOT checked: install tritonclient[grpc] to validate")
    print(f"wrote {export.model_dir} ({export.backend} backend); config {check}")
    print(f"  tritonserver --model-repository {args.repo.resolve()}")
    return EXIT_OK


def _cmd_ovms(args: argparse.Namespace) -> int:
    from runtimes.serving.ovms import OvmsOptions, export_ovms_repository

    options = OvmsOptions(name=args.name, target_device=args.target_device, nireq=args.nireq, threads=args.threads,
                          performance_hint=args.performance_hint)
    export = export_ovms_repository(args.artifact, args.repo, options, overwrite=args.overwrite)
    print(f"wrote {export.model_dir} and {export.config_path}")
    print(f"  ovms --config_path {export.config_path.resolve()} --rest_port 8000")
    return EXIT_OK


_COMMANDS = {"config": _cmd_config, "run": _cmd_run, "triton": _cmd_triton, "ovms": _cmd_ovms}


if __name__ == "__main__":
    sys.exit(main())
