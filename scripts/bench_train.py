"""Training images/s of each family's default config: Lightning vs a plain PyTorch loop, measured in one run.

    LIGHTNING_GEN_DATA=../shared/data python scripts/bench_train.py [--steps 20] [--configs ...]

Last line: ``min_ratio=<x>`` (Lightning / plain, worst family; target >= 0.95).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from lightning_gen.runtime import tune_host
from lightning_gen.throughput import FAMILY_CONFIGS, compare


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2, help="alternating measurements; the best of each side counts")
    p.add_argument("--configs", nargs="*", default=list(FAMILY_CONFIGS.values()))
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    host = tune_host()  # as `fit` does; both loops run in this process, so both get it
    from tqdm import tqdm

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in tqdm(args.configs, desc="configs"):
            rows.append(compare(config, steps=args.steps, warmup=args.warmup, repeats=args.repeats, log_dir=Path(tmp)))
    print(f"\n{'config':42s} {'params':>9s} {'batch':>5s} {'plain img/s':>12s} {'lightning img/s':>16s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['config']:42s} {r['params']:9d} {r['batch_size']:5d} {r['plain_img_s']:12.1f} "
              f"{r['lightning_img_s']:16.1f} {r['ratio']:6.3f}")
    print(f"threads={args.threads} steps={args.steps} repeats={args.repeats} host_tuning={host}")
    print(f"min_ratio={min(r['ratio'] for r in rows):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
