"""``lightning-gen sample CHECKPOINT``: a grid of samples from a checkpoint or run folder.

A path that is not a checkpoint is a :class:`~lightning_gen.app.run.CheckpointError`, which the CLI reports in one
line.
"""

from __future__ import annotations

import argparse

import torch

from lightning_gen.app.cli import PROG
from lightning_gen.app.run import Run
from lightning_gen.images import image_grid, save_png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} sample", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a checkpoint, or a run folder (its best, else last, else newest checkpoint)")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="samples.png")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    model = Run.open(args.checkpoint).model(map_location=args.device)
    images = model.sample(args.num_samples, generator=torch.Generator(device=args.device).manual_seed(args.seed))
    print(save_png(image_grid(images), args.out))
    return 0
