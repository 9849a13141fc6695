"""Naive vs fast (cached) sampling speed of Gated PixelCNN, and of Row LSTM where it exists, in one run.

    python benchmarks/bench_sampling.py                 # CPU: 28x28 binary and 32x32x3 8-bit, batch 16
    python benchmarks/bench_sampling.py --device cuda --rgb-naive-images 16

For each model and image size: the fast sampler draws ``--batch`` images; the naive sampler (the whole network
rerun on the full image for every sub-pixel) draws ``--naive-images`` images (fewer: it is slow), and the two
draws of those images are checked to be identical. Where ``--rgb-naive-images`` is 0 the naive speed at 32x32x3
is extrapolated from timed full-network passes (one pass per sub-pixel, ``C * H * W`` passes per image; a whole
naive draw would take an hour on a CPU), and the report says so. Random weights: speed does not depend on them.

Sizes (stated in the output): Gated PixelCNN at 28x28 as configs/gated_pixelcnn_binarized_mnist.yaml (10 gated
layers of 64 maps, 3x3, 7x7 first layer); at 32x32x3 12 gated layers of 120 maps, 240 head maps (arXiv
1606.05328 uses 20 layers of 384 maps with 5x5 filters, too slow for a CPU naive baseline). Row LSTM: arXiv
1601.06759's MNIST size (7 layers, h = 16) at 28x28, 7 layers of h = 32 at 32x32x3.

The last line is ``speedup_28x28=<x> speedup_32x32x3=<x> ...`` (wall-clock images/s, fast over naive).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import time

import torch
from tqdm import tqdm

from lightning_gen.models.pixelcnn import GatedPixelCNN

BINARY, RGB = ((1, 28, 28), 2), ((3, 32, 32), 256)


def models(row_lstm: bool) -> list[tuple[str, str, type, tuple, dict]]:
    """(name, size key, class, (shape, levels), options) of every benchmarked model."""
    out = [
        ("GatedPixelCNN", "28x28", GatedPixelCNN, BINARY, dict(layers=10, channels=64, head_channels=32)),
        ("GatedPixelCNN", "32x32x3", GatedPixelCNN, RGB, dict(layers=12, channels=120, head_channels=240)),
    ]
    if row_lstm:
        try:  # written in parallel with this script: benchmarked once it exists
            cls = importlib.import_module("lightning_gen.models.pixelrnn").RowLSTM
        except (ImportError, AttributeError) as err:
            print(f"Row LSTM not benchmarked: {err}")
        else:
            out += [("RowLSTM", "28x28", cls, BINARY, dict(num_layers=7, hidden_channels=16)),
                    ("RowLSTM", "32x32x3", cls, RGB, dict(num_layers=7, hidden_channels=32))]
    return out


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def naive_pass_seconds(model, passes: int) -> tuple[float, float]:
    """Wall and CPU seconds of one full-network pass on one image, as the naive sampler runs it (float64)."""
    net = copy.deepcopy(model.net).to(torch.float64).eval()
    x = torch.zeros(1, *model.image_shape, dtype=torch.float64, device=model.device)
    with torch.no_grad():
        net(x)  # warm-up
        _, wall, cpu = timed(lambda: [net(x) for _ in range(passes)])
    return wall / passes, cpu / passes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16, help="images drawn by the fast sampler")
    p.add_argument("--naive-images", type=int, default=1, help="images drawn by the naive sampler at 28x28")
    p.add_argument("--rgb-naive-images", type=int, default=0,
                   help="images drawn by the naive sampler at 32x32x3; 0: extrapolate from timed passes")
    p.add_argument("--naive-passes", type=int, default=3, help="timed full passes when extrapolating")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-row-lstm", action="store_true", help="skip Row LSTM")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs, batch {args.batch}")
    speedups, rows = {}, []
    todo = models(not args.no_row_lstm)
    for name, size, cls, (shape, levels), options in tqdm(todo, desc="models", unit="model"):
        torch.manual_seed(args.seed)
        model = cls(shape, levels, 0, **options).to(device).eval()
        params = sum(q.numel() for q in model.parameters())
        gen = lambda: torch.Generator(device=device).manual_seed(args.seed)  # noqa: E731
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        model.sample(1, generator=gen())  # warm-up (allocator, kernels)
        _, fast_wall, fast_cpu = timed(lambda: (model.sample(args.batch, generator=gen()), sync()))
        k = args.naive_images if size == "28x28" else args.rgb_naive_images
        if k > 0:
            naive, naive_wall, naive_cpu = timed(lambda: model.sample(k, generator=gen(), naive=True))
            identical = torch.equal(naive, model.sample(k, generator=gen()))
            how = f"measured on {k} image(s), identical to fast: {identical}"
            if not identical:
                raise AssertionError(f"{name} {size}: the fast and naive samplers disagree")
        else:
            k = 1
            wall, cpu = naive_pass_seconds(model, args.naive_passes)
            naive_wall, naive_cpu = wall * model.num_dims, cpu * model.num_dims
            how = f"extrapolated: {model.num_dims} passes x {wall:.3f} s (timed {args.naive_passes} passes)"
        fast_ips, naive_ips = args.batch / fast_wall, k / naive_wall
        speedup, cpu_speedup = fast_ips / naive_ips, (args.batch / fast_cpu) / (k / naive_cpu)
        speedups[(name, size)] = speedup
        rows.append(f"{name:14s} {size:8s} {params:>10,d} params | fast {fast_ips:8.3f} img/s | naive {naive_ips:8.4f} "
                    f"img/s ({how}) | speedup {speedup:7.1f}x wall, {cpu_speedup:7.1f}x CPU time")
        tqdm.write(rows[-1])
    print("sizes: " + "; ".join(f"{n} {s}: {o}" for n, s, _, _, o in todo))
    pairs = [f"speedup_28x28={speedups[('GatedPixelCNN', '28x28')]:.1f}",
             f"speedup_32x32x3={speedups[('GatedPixelCNN', '32x32x3')]:.1f}"]
    pairs += [f"row_lstm_speedup_{s}={v:.1f}" for (n, s), v in speedups.items() if n == "RowLSTM"]
    print(" ".join(pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
