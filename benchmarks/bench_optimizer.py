"""Training images/s of each family's default config with fused Adam (as the configs set it) against the same
config with the classic per-tensor Adam, plain PyTorch loop, measured in one run.

    LIGHTNING_GEN_DATA=../shared/data python benchmarks/bench_optimizer.py [--repeats 5] [--configs ...]

The configs set ``fused: true`` on every Adam: one kernel per parameter instead of about ten per-tensor ops.
Both variants start from the same seeded weights and time the same batches, alternating so drift hits both alike;
the best of ``repeats`` counts. Last line: ``min_speedup=<x>`` then ``speedup_<config>=`` values (fused / per-tensor).
"""

import argparse
import copy
import sys
from pathlib import Path

import torch

from lightning_gen.app.runtime import tune_host
from throughput import FAMILY_CONFIGS, build_from_config, time_plain, timing_batches

FUSED = "--model.init_args.optimizer.init_args.fused"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (at least)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="lengthen a fast model's timed window to this")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--configs", nargs="*", default=list(FAMILY_CONFIGS.values()))
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    host = tune_host()
    rows = []
    for config in args.configs:
        fused, datamodule = build_from_config(config, [FUSED, "true"])
        classic, _ = build_from_config(config, [FUSED, "false"])
        batches = timing_batches(fused, datamodule, steps=args.steps, warmup=args.warmup, min_seconds=args.min_seconds)
        best = {"fused": 0.0, "classic": 0.0}
        for _ in range(args.repeats):
            for name, model in (("classic", classic), ("fused", fused)):
                best[name] = max(best[name], time_plain(copy.deepcopy(model), batches, args.warmup))
        rows.append((Path(config).stem, best["classic"], best["fused"], len(batches) - args.warmup))
        print(f"{rows[-1][0]}: per-tensor {best['classic']:.1f} img/s, fused {best['fused']:.1f} img/s", flush=True)
    print(f"\n{'config':34s} {'steps':>5s} {'per-tensor img/s':>17s} {'fused img/s':>12s} {'speedup':>8s}")
    for name, classic, fused, steps in rows:
        print(f"{name:34s} {steps:5d} {classic:17.1f} {fused:12.1f} {fused / classic:8.3f}")
    print(f"threads={args.threads} repeats={args.repeats} min_seconds={args.min_seconds} host_tuning={host}")
    speedups = " ".join(f"speedup_{name}={fused / classic:.3f}" for name, classic, fused, _ in rows)
    print(f"min_speedup={min(f / c for _, c, f, _ in rows):.3f} {speedups}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
