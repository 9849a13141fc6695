"""MADE's incremental sampler against full forward passes, 28x28 binary images, one thread.

    OMP_NUM_THREADS=1 python benchmarks/bench_made_sampling.py

For one hidden layer of 2,000 and of 8,000 units (random weights: speed does not depend on them): the minimum
over ``--repeats`` of the seconds of ``sample(16)``, and of 784 forward passes of 16 images (what the naive
sampler, one full pass per pixel, costs). Then ``sample`` and the naive sampler draw ``--check-images`` images
from the same seed, which must be identical.

The last line is ``ratio_2000=<sample / 784 forwards> ratio_8000=<...> identical=<True|False>``.
"""

from __future__ import annotations

import argparse
import time

import torch

from lightning_gen.models.made import MADE

SHAPE = (1, 28, 28)


def best_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[2000, 8000])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--check-images", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results, identical = {}, True
    for hidden in args.hidden:
        model = MADE(SHAPE, hidden_sizes=[hidden]).eval()
        inputs = (torch.rand(args.batch, model.num_dims) < 0.5).float()

        def forwards():
            with torch.no_grad():
                for _ in range(model.num_dims):
                    model.logits(inputs, 0)

        sample = best_seconds(lambda: model.sample(args.batch, generator=torch.Generator().manual_seed(0)),
                              args.repeats)
        naive = best_seconds(forwards, args.repeats)
        fast = model.sample(args.check_images, generator=torch.Generator().manual_seed(1))
        slow = model._sample_naive(args.check_images, generator=torch.Generator().manual_seed(1))
        same = torch.equal(fast, slow)
        identical &= same
        results[hidden] = sample / naive
        print(f"1 x {hidden} units: sample({args.batch}) {sample:.3f} s, {model.num_dims} forwards of {args.batch} "
              f"{naive:.3f} s, ratio {sample / naive:.4f}; {args.check_images} images identical to the naive "
              f"sampler's: {same}", flush=True)
    print(" ".join(f"ratio_{h}={r:.4f}" for h, r in results.items()) + f" identical={identical}")


if __name__ == "__main__":
    main()
