"""Training images/s of each family's default config in fp32, in bf16-mixed and compiled, on the CPU, in one run.

    LIGHTNING_GEN_DATA=../shared/data python benchmarks/bench_precision.py [--threads 1] [--configs ...]
    # the paper-sized Gated PixelCNN (3.2M), a short window of batch 16:
    LIGHTNING_GEN_DATA=../shared/data python benchmarks/bench_precision.py --variants fp32 bf16 --steps 4 \
        --warmup 2 --min-seconds 0 --configs configs/gated_pixelcnn_binarized_mnist.yaml \
        --args=--model.init_args.channels=128 --args=--data.init_args.batch_size=16

Each variant is Lightning's fit loop over the same fixed batches (``throughput.run_lightning``: CSV logging and the
progress bar as ``fit`` has them), from the same untrained model; the variants alternate ``--repeats`` times and
the best images/s of each counts, so drift hits all alike:

- ``fp32``: ``precision="32-true"``, what every CPU config trains in today;
- ``bf16``: ``precision="bf16-mixed"`` (configs/trainer/cpu_bf16.yaml): the forward under CPU autocast;
- ``compiled``: fp32 with ``torch.compile`` on every child module (configs/trainer/compile.yaml);
- ``compiled bf16``: both.

``compile s``: the wall time of the warm-up steps of the first compiled run minus that of the first fp32 run, the
price of compiling paid once per process (later runs hit the in-process cache; a new ``fit`` pays it again).
Last line: ``min_bf16_speedup=``, ``max_bf16_speedup=``, ``max_compile_speedup=``, ``max_compile_s=`` (key=value).
"""

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

from lightning_gen.app.runtime import tune_host
from throughput import FAMILY_CONFIGS, build_from_config, run_lightning, timing_batches

VARIANTS = {"fp32": ("32-true", False), "bf16": ("bf16-mixed", False), "compiled": ("32-true", True),
            "compiled bf16": ("bf16-mixed", True)}


def measure(config: str, *, steps: int, warmup: int, repeats: int, min_seconds: float, variants: list[str],
            log_dir: Path, extra: list[str] = ()) -> dict:
    model, datamodule = build_from_config(config, list(extra))
    batches = timing_batches(model, datamodule, steps=steps, warmup=warmup, min_seconds=min_seconds)
    best = {v: 0.0 for v in variants}
    first_warmup = {}
    for r in range(repeats):
        for v in variants:
            precision, compile = VARIANTS[v]
            torch._dynamo.reset()  # every compiled run compiles afresh, as a new `fit` would
            out = run_lightning(copy.deepcopy(model), batches, warmup, log_dir / f"{v}-{r}".replace(" ", "_"),
                                precision=precision, compile=compile)
            best[v] = max(best[v], out["img_s"])
            first_warmup.setdefault(v, out["warmup_s"])
    compile_s = max((first_warmup[v] - first_warmup["fp32"] for v in variants if VARIANTS[v][1]), default=None)
    return {"config": config, "batch": batches[0][0].shape[0], "img_s": best, "compile_s": compile_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=list(FAMILY_CONFIGS.values()))
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=8, help="timed steps per measurement (at least)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="lengthen each timed window to about this long")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--repeats", type=int, default=2, help="alternating measurements; the best of each counts")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPU recipes train on one)")
    p.add_argument("--args", action="append", default=[], dest="extra",
                   help="a config override for every config, repeatable: --args=--model.init_args.channels=128")
    args = p.parse_args()
    if "fp32" not in args.variants:
        p.error("--variants: include fp32, the baseline every speed-up is measured against")
    torch.set_num_threads(args.threads)
    host = tune_host()
    others = [v for v in args.variants if v != "fp32"]
    rows, table = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            r = measure(config, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                        min_seconds=args.min_seconds, variants=args.variants, log_dir=Path(tmp), extra=args.extra)
            base = r["img_s"]["fp32"]
            cells = " ".join(f"{r['img_s'][v] / base:16.2f}" for v in others)
            compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
            table.append(f"{Path(r['config']).stem:40s} {r['batch']:5d} {base:11.1f} {cells} {compile_s:>9s}")
            print(table[-1], file=sys.stderr, flush=True)  # each row as it is measured, among Lightning's output
            rows.append(r)
    print(f"\n{'config':40s} {'batch':>5s} {'fp32 img/s':>11s} " + " ".join(f"{v + ' x':>16s}" for v in others)
          + f" {'compile s':>9s}")
    print("\n".join(table))
    print(f"threads={args.threads} steps>={args.steps} min_seconds={args.min_seconds} repeats={args.repeats} "
          f"host_tuning={host} mkldnn={torch.backends.mkldnn.is_available()}")
    summary = {}
    if "bf16" in args.variants:
        speedups = [r["img_s"]["bf16"] / r["img_s"]["fp32"] for r in rows]
        summary.update(min_bf16_speedup=min(speedups), max_bf16_speedup=max(speedups))
    if "compiled" in args.variants:
        summary["max_compile_speedup"] = max(r["img_s"]["compiled"] / r["img_s"]["fp32"] for r in rows)
        summary["max_compile_s"] = max(r["compile_s"] for r in rows)
    print(" ".join(f"{k}={v:.3f}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
