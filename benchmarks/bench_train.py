"""Training images/s of each family's default config: Lightning vs a plain PyTorch loop, measured in one run.

    LIGHTNING_GEN_DATA=../shared/data python benchmarks/bench_train.py [--steps 20] [--configs ...]
    # on a GPU, bf16 and torch.compile, random images of the configs' shapes (no dataset needed):
    python benchmarks/bench_train.py --device cuda --precision bf16-mixed --compile --synthetic \
        --configs configs/dcgan_celeba64.yaml

Both loops run in this process with the same host settings as `fit` (lightning_gen.app.runtime). The table also gives
Lightning's extra milliseconds per step (``+ms/step``), the model FLOPs of a step (torch.utils.flop_counter:
matmuls and convolutions, forward and backward), the TFLOP/s Lightning reaches and, where the accelerator's dense
peak is known (bf16 on the GPUs in throughput.PEAK_BF16_TFLOPS, or --peak-tflops), the model FLOP
utilisation.
On the CPU it also times an almost empty model (:func:`throughput.lightning_floor`): the least Lightning adds to any
step here, and so the shortest step that can reach a ratio of 0.95 (``--no-floor`` skips it).
Last line: ``min_ratio=<x>`` (Lightning / plain, worst family; target >= 0.95), then ``floor_ms=`` (CPU) and
``mfu_<config>=`` values.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from lightning_gen.app.runtime import tune_host
from throughput import FAMILY_CONFIGS, compare, lightning_floor


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (at least)")
    p.add_argument("--min-seconds", type=float, default=1.0,
                   help="lengthen each timed window of a fast model to about this long (repeating its batches)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--repeats", type=int, default=2, help="alternating measurements; the best of each side counts")
    p.add_argument("--configs", nargs="*", default=list(FAMILY_CONFIGS.values()))
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    p.add_argument("--compile", action="store_true", help="torch.compile the nets on both sides")
    p.add_argument("--synthetic", action="store_true", help="random images of each config's shape, no dataset")
    p.add_argument("--no-floor", action="store_true", help="skip the almost-empty model's per-step floor (CPU)")
    p.add_argument("--peak-tflops", type=float, help="the accelerator's dense peak, for MFU where it is not known")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible here (torch.cuda.is_available() is False)")
    host = tune_host()  # as `fit` does; both loops run in this process, so both get it
    from tqdm import tqdm

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in tqdm(args.configs, desc="configs"):
            r = compare(config, steps=args.steps, warmup=args.warmup, repeats=args.repeats, log_dir=Path(tmp),
                        device=args.device, precision=args.precision, compile=args.compile, synthetic=args.synthetic,
                        min_seconds=args.min_seconds)
            if args.peak_tflops:
                r["mfu"] = r["lightning_tflops"] / args.peak_tflops
            rows.append(r)
        floor = None if args.no_floor or args.device != "cpu" else lightning_floor(Path(tmp))
    print(f"\n{'config':42s} {'params':>9s} {'batch':>5s} {'steps':>5s} {'plain img/s':>12s} {'lightning img/s':>16s} {'ratio':>6s} "
          f"{'+ms/step':>8s} {'GFLOP/step':>10s} {'TFLOP/s':>8s} {'MFU':>6s}")
    for r in rows:
        mfu = f"{r['mfu']:6.1%}" if r["mfu"] is not None else f"{'-':>6s}"
        # Lightning's cost per step in absolute terms: a fixed cost shows as a low ratio on a short step.
        extra_ms = 1e3 * r["batch_size"] * (1 / r["lightning_img_s"] - 1 / r["plain_img_s"])
        print(f"{r['config']:42s} {r['params']:9d} {r['batch_size']:5d} {r['timed_steps']:5d} {r['plain_img_s']:12.1f} "
              f"{r['lightning_img_s']:16.1f} {r['ratio']:6.3f} {extra_ms:8.3f} {r['gflops_per_step']:10.2f} "
              f"{r['lightning_tflops']:8.3f} {mfu}")
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"device={device!r} threads={args.threads} precision={args.precision} compile={args.compile} "
          f"synthetic={args.synthetic} steps>={args.steps} min_seconds={args.min_seconds} repeats={args.repeats} host_tuning={host}")
    if floor:
        print(f"floor: an almost empty model ({floor['model']}) takes {floor['plain_ms']:.3f} ms a step in the "
              f"plain loop and {floor['lightning_ms']:.3f} ms in fit: Lightning adds at least {floor['extra_ms']:.3f} ms "
              f"to every step, so a ratio of 0.95 needs a plain step of {floor['min_step_ms_for_095']:.1f} ms or more")
    mfus = " ".join(f"mfu_{Path(r['config']).stem}={r['mfu']:.3f}" for r in rows if r["mfu"] is not None)
    print(f"min_ratio={min(r['ratio'] for r in rows):.3f}" + (f" floor_ms={floor['extra_ms']:.3f}" if floor else "")
          + (f" {mfus}" if mfus else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
