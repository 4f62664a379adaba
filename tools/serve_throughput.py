"""Throughput of an artifact behind the Ray Serve deployment, with and without dynamic batching.

    python -m tools.serve_throughput [--artifact out/demo/cpu-int8] [--duration 10]

Starts a local Ray cluster on 127.0.0.1, deploys the artifact (one replica), and for each of 1, 8 and
32 concurrent clients runs a closed loop for `--duration` seconds: every client sends one Rotten
Tomatoes test review per request over a kept-alive HTTP connection and waits for the answer. Reports
requests/s, p50/p99 latency, the dynamic batch sizes the replica ran, start-up times and the
replica's memory. Clients, Serve's proxy and the replica share this machine's cores: the figures are
for the whole loop on one box, not for the replica alone. Every answer is checked to be a label.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

DEFAULT_ARTIFACT = Path("out/demo/cpu-int8")
MAX_REQUESTS_PER_LEVEL = 50_000  # a hard bound on traffic, whatever the duration


@dataclass
class LevelResult:
    clients: int
    requests: int
    errors: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    batch_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def mean_batch(self) -> float:
        total = sum(self.batch_sizes.values())
        return sum(int(k) * v for k, v in self.batch_sizes.items()) / total if total else 0.0


@dataclass
class ModeResult:
    batching: bool
    deploy_s: float
    replica_load_s: float
    replica_rss_mb: float
    replica_peak_rss_mb: float
    cluster_rss_mb: float
    levels: list[LevelResult]


def _closed_loop(url: str, texts: list[str], clients: int, duration_s: float) -> tuple[list[float], int, float]:
    """`clients` threads, each sending one request at a time until the deadline. Latencies in ms."""
    parsed = urlparse(url)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    budget = threading.Semaphore(MAX_REQUESTS_PER_LEVEL)
    start = time.perf_counter()
    deadline = start + duration_s

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        i = index
        while time.perf_counter() < deadline and budget.acquire(blocking=False):
            body = json.dumps({"inputs": texts[i % len(texts)]})
            i += clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", parsed.path, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                ok = response.status == 200 and "label" in json.loads(payload)
            except (OSError, http.client.HTTPException, json.JSONDecodeError):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
            if ok:
                latencies[index].append((time.perf_counter() - t0) * 1000)
            else:
                errors[index] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration_s + 60)
    elapsed = time.perf_counter() - start
    return [x for per in latencies for x in per], sum(errors), elapsed


def _get(url: str) -> dict:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        conn.request("GET", parsed.path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # the process ended while we looked
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def _cluster_rss_mb() -> float:
    total = 0.0
    for pid in _descendants(os.getpid()):
        try:
            total += _rss_mb(pid)
        except OSError:
            continue
    return total


def _batch_delta(before: dict, after: dict) -> dict[str, int]:
    delta = {k: v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
    return {k: v for k, v in sorted(delta.items(), key=lambda kv: int(kv[0])) if v}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run(args: argparse.Namespace) -> dict:
    from bench.data import load_rotten_tomatoes
    from runtimes.serving import BatchingConfig, ReplicaConfig, ServeConfig
    from runtimes.serving.local import LocalCluster

    texts = [e.text for e in load_rotten_tomatoes().test]
    levels = [int(x) for x in args.levels.split(",")]
    modes: list[ModeResult] = []
    with LocalCluster(num_cpus=args.cpus) as cluster:
        for batching in (True, False):
            name = "batched" if batching else "unbatched"
            cfg = ServeConfig(artifact=args.artifact, name=name, port=args.port,
                              batching=BatchingConfig(enabled=batching, max_batch_size=args.max_batch_size,
                                                      wait_timeout_s=args.wait_ms / 1000),
                              replicas=ReplicaConfig(num_cpus=1, threads=args.threads,
                                                     max_ongoing_requests=max(levels) * 2))
            url = cluster.deploy(cfg)
            stats = _get(url + "stats")
            _closed_loop(url, texts, max(levels), args.warmup)  # warm the replica, the proxy and the client
            results = []
            for clients in levels:
                before = _get(url + "stats")
                lat, errors, elapsed = _closed_loop(url, texts, clients, args.duration)
                after = _get(url + "stats")
                result = LevelResult(clients=clients, requests=len(lat), errors=errors, seconds=round(elapsed, 2),
                                     requests_per_s=round(len(lat) / elapsed, 1),
                                     p50_ms=round(_percentile(lat, 50), 2), p99_ms=round(_percentile(lat, 99), 2),
                                     batch_sizes=_batch_delta(before, after))
                log.info("batching=%s clients=%d: %.1f req/s p50 %.2f ms p99 %.2f ms mean batch %.1f errors %d",
                         batching, clients, result.requests_per_s, result.p50_ms, result.p99_ms, result.mean_batch,
                         errors)
                results.append(result)
            modes.append(ModeResult(batching=batching, deploy_s=round(cluster.deploy_s, 2),
                                    replica_load_s=stats["load_s"], replica_rss_mb=round(_rss_mb(stats["pid"]), 1),
                                    replica_peak_rss_mb=round(_rss_mb(stats["pid"], "VmHWM"), 1),
                                    cluster_rss_mb=round(_cluster_rss_mb(), 1), levels=results))
            cluster.remove(name)  # one replica at a time: the next mode gets the same cores
        cluster_s = cluster.cluster_s
    return {"artifact": str(args.artifact), "cpus": os.cpu_count(), "threads": args.threads,
            "max_batch_size": args.max_batch_size, "wait_ms": args.wait_ms, "duration_s": args.duration,
            "cluster_start_s": round(cluster_s, 2), "modes": [asdict(m) for m in modes]}


def markdown(report: dict) -> str:
    lines = ["| dynamic batching | clients | requests/s | p50 ms | p99 ms | mean batch | errors |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for mode in report["modes"]:
        for level in mode["levels"]:
            sizes = level["batch_sizes"]
            total = sum(sizes.values())
            mean = sum(int(k) * v for k, v in sizes.items()) / total if total else 0.0
            label = f"on (max {report['max_batch_size']}, {report['wait_ms']:g} ms)" if mode["batching"] else "off"
            lines.append(f"| {label} | {level['clients']} | {level['requests_per_s']:.1f} | {level['p50_ms']:.2f} | "
                         f"{level['p99_ms']:.2f} | {mean:.1f} | {level['errors']} |")
    lines.append("")
    lines.append(f"Ray cluster start: {report['cluster_start_s']:.1f} s. " + "; ".join(
        f"batching {'on' if m['batching'] else 'off'}: deploy to RUNNING {m['deploy_s']:.1f} s "
        f"(model load in the replica {m['replica_load_s']:.2f} s), replica RSS {m['replica_rss_mb']:.0f} MB "
        f"(peak {m['replica_peak_rss_mb']:.0f} MB), whole local cluster {m['cluster_rss_mb']:.0f} MB"
        for m in report["modes"]) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.serve_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT,
                   help="artifact folder (default: the demo's cpu int8)")
    p.add_argument("--levels", default="1,8,32", help="concurrent clients, comma-separated (default 1,8,32)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level (default 10)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up traffic per mode (default 3)")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--wait-ms", type=float, default=5.0, help="dynamic batching wait (default 5 ms)")
    p.add_argument("--threads", type=int, default=1,
                   help="model threads in the replica (default 1: it shares the cores with Serve's proxy and clients)")
    p.add_argument("--cpus", type=int, default=None, help="CPUs Ray may use (default: all)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--out", type=Path, default=Path("out/serve-throughput.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if not (args.artifact / "manifest.json").is_file():
        print(f"serve_throughput: error: {args.artifact} is not an artifact; run ./run.sh demo first "
              "(it writes out/demo/cpu-int8)", file=sys.stderr)
        return 2
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
