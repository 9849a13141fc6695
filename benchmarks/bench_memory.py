"""Peak training memory of each family's default config, each measured in a fresh process.

    LIGHTNING_GEN_DATA=../shared/data python benchmarks/bench_memory.py [--steps 10] [--accelerator gpu --precision bf16-mixed]

CPU: growth of the peak resident set during ``fit`` over the loaded model and batches. GPU: the peak of
``torch.cuda.max_memory_allocated``. The state column is parameters + gradients + optimizer state (the part that
does not depend on the batch size); the rest of the peak is activations and workspace.
Last line: ``<config stem>=<training peak MiB>`` for every config.
"""

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from memory import peak_memory
from throughput import FAMILY_CONFIGS

MIB = 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--configs", nargs="*", default=list(FAMILY_CONFIGS.values()))
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--precision", default="32-true")
    args = p.parse_args()

    rows = []
    for config in args.configs:  # one process per config: ru_maxrss and freed heap are per process
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            rows.append(pool.submit(peak_memory, config, steps=args.steps, accelerator=args.accelerator,
                                    precision=args.precision).result())
    print(f"\n{'config':42s} {'params':>9s} {'batch':>5s} {'state MiB':>9s} {'peak MiB':>9s}  (device {rows[0]['device']}, "
          f"{args.precision}, {args.steps} steps)")
    for r in rows:
        state = r["param_bytes"] + r["grad_bytes"] + r["optimizer_bytes"]
        print(f"{r['config']:42s} {r['params']:9d} {r['batch_size']:5d} {state / MIB:9.1f} {r['training_peak_bytes'] / MIB:9.1f}")
    print(" ".join(f"{Path(r['config']).stem}={r['training_peak_bytes'] / MIB:.1f}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
