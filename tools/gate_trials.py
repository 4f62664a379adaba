"""How often the latency gate cries wolf, and how often it catches a real slowdown (run on demand).

    python -m tools.gate_trials --checkpoint CKPT --baseline out/demo/cpu-int8 --trials 100 --out out/gate-trials

1. Makes an honestly slower artifact: the fine-tuned checkpoint with one encoder layer more (a copy
   of its last layer), through the same int8 preset as the baseline; and a byte-identical copy of
   the baseline folder.
2. Measures the true slowdown first, carefully: many interleaved rounds, ratio of medians with its
   bootstrap interval (end to end, batch 1, the gate's workload).
3. Runs the gate `--trials` times on (copy vs baseline) and on (slower vs baseline), alternating, each
   trial loading its sessions afresh as a CI job would; records every verdict and its time.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench import workload
from bench.gate.decision import GatePolicy, Outcome, ratio_interval
from bench.gate.run import CLOCKS, choose_clock, gate_interleaved
from bench.progress import interactive
from runtimes import load

log = logging.getLogger(__name__)


def make_deeper_checkpoint(checkpoint: Path, out: Path, extra_layers: int = 1) -> Path:
    """Save `checkpoint` with `extra_layers` copies of its last encoder layer appended.

    The model computes strictly more (one more attention + FFN block per token); nothing else changes.
    """
    from toolchain.checkpoint import inspect_checkpoint

    ckpt = inspect_checkpoint(checkpoint)
    model = ckpt.load_model()
    encoder = model.base_model.encoder
    layers = encoder.layer
    for _ in range(extra_layers):
        layers.append(copy.deepcopy(layers[-1]))
    model.config.num_hidden_layers = len(layers)
    model.save_pretrained(out)
    ckpt.tokenizer.save_pretrained(out)
    return out


def prepare(args) -> tuple[Path, Path]:
    """The identical copy and the slower artifact (built once, reused on later runs)."""
    from toolchain import optimise, preset

    args.out.mkdir(parents=True, exist_ok=True)
    twin = args.out / f"{args.baseline.name}-copy"
    if not twin.is_dir():
        shutil.copytree(args.baseline, twin)
    slower = args.out / f"{args.baseline.name}-plus-one-layer"
    if not slower.is_dir():
        deeper = make_deeper_checkpoint(args.checkpoint, args.out / "checkpoint-plus-one-layer")
        optimise(deeper, slower, recipe=preset(args.preset, "cpu"), overwrite=True)
    return twin, slower


def true_ratio(baseline: Path, slower: Path, texts, block: int, rounds: int, threads: int, clock: str) -> dict:
    """The slowdown measured as carefully as this machine allows: many interleaved rounds."""
    from runtimes.measure import cycle_blocks, time_interleaved
    from runtimes.measure.timing import workload_cost

    pipes = {"baseline": load(baseline, threads=threads, batch_size=1),
             "slower": load(slower, threads=threads, batch_size=1)}
    requests = workload.requests_for(pipes["baseline"].manifest.task, texts)[:block]
    times = time_interleaved({k: workload.runner_for(p) for k, p in pipes.items()}, cycle_blocks(requests, 3, rounds),
                             clock=CLOCKS[clock])
    costs = {k: t.block_costs(len(requests)) for k, t in times.items()}
    ratio, low, high = ratio_interval(costs["baseline"], costs["slower"], 0.99, True)
    # Each input's fastest call over every round: the closest this machine gets to the pure compute cost.
    best = {k: workload_cost(t.calls, len(requests)) for k, t in times.items()}
    calls = {k: t.stats().p50_ms for k, t in times.items()}
    return {"rounds": rounds, "block": len(requests), "clock": clock, "ratio_of_median_costs": ratio,
            "ci99": [low, high],
            "ratio_of_fastest_calls": best["slower"] / best["baseline"], "fastest_workload_ms": best,
            "per_call_p50_ms": calls, "per_call_p50_ratio": calls["slower"] / calls["baseline"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.gate_trials", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="the fine-tuned checkpoint the baseline came from")
    p.add_argument("--baseline", type=Path, required=True, help="the baseline artifact (e.g. out/demo/cpu-int8)")
    p.add_argument("--preset", default="int8", help="the preset the baseline was built with (default int8)")
    p.add_argument("--out", type=Path, default=Path("out/gate-trials"))
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--max-slowdown", type=float, default=0.10)
    p.add_argument("--block", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--true-rounds", type=int, default=200, help="rounds for the careful measurement of step 2")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if (args.verbose or interactive()) else logging.WARNING,
                        format="%(message)s")
    twin, slower = prepare(args)
    texts = workload.load_texts(None)
    clock = choose_clock(args.clock, args.threads)
    truth = true_ratio(args.baseline, slower, texts, args.block, args.true_rounds, args.threads, clock)
    print(f"true slowdown of {slower.name}: fastest calls {truth['ratio_of_fastest_calls']:.3f}; median workload cost "
          f"{truth['ratio_of_median_costs']:.3f} (99% CI {truth['ci99'][0]:.3f}-{truth['ci99'][1]:.3f}); per-call p50 "
          f"{truth['per_call_p50_ratio']:.3f}; over {truth['rounds']} rounds", flush=True)
    policy = GatePolicy(max_slowdown=args.max_slowdown)
    trials = {"identical": [], "slower": []}
    for i in range(args.trials):
        for kind, candidate in (("identical", twin), ("slower", slower)):
            run = gate_interleaved(candidate, args.baseline, texts, policy, args.block, args.threads,
                                   repeats=args.repeats, clock=clock)
            trials[kind].append({**run.verdict.to_dict(), "seconds": run.seconds})
        ident, slow = trials["identical"][-1], trials["slower"][-1]
        print(f"trial {i + 1:3d}: identical {ident['outcome']:10s} {ident['ratio']:.3f} ({ident['rounds']} rounds, "
              f"{ident['seconds']:.1f}s) | slower {slow['outcome']:10s} {slow['ratio']:.3f} "
              f"({slow['rounds']} rounds, {slow['seconds']:.1f}s)", flush=True)
    summary = {}
    for kind, rows in trials.items():
        flagged = sum(r["outcome"] == Outcome.REGRESSION.value for r in rows)
        seconds = sorted(r["seconds"] for r in rows)
        summary[kind] = {"trials": len(rows), "regressions": flagged,
                         "inconclusive": sum(not r["conclusive"] for r in rows),
                         "median_ratio": statistics.median(r["ratio"] for r in rows),
                         "seconds_median": statistics.median(seconds), "seconds_max": seconds[-1],
                         "rounds_median": statistics.median(r["rounds"] for r in rows)}
    result = {"true_slowdown": truth, "policy": policy.__dict__, "block": args.block, "repeats": args.repeats,
              "threads": args.threads, "clock": clock,
              "summary": summary, "trials": trials, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    (args.out / "gate_trials.json").write_text(json.dumps(result, indent=2) + "\n")
    s_id, s_sl = summary["identical"], summary["slower"]
    print(f"identical: {s_id['regressions']}/{s_id['trials']} false alarms; slower: {s_sl['regressions']}/"
          f"{s_sl['trials']} caught; median time per decision {s_id['seconds_median']:.1f}s / "
          f"{s_sl['seconds_median']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
