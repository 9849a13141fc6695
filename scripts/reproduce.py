"""Per-image test NLL of a trained likelihood model on a full split, with its standard error, in fp32.

    python scripts/reproduce.py --config configs/repro/nade_binarized_mnist_static.yaml --ckpt CKPT \
        --data-root /path/to/data [--split test] [--k 1000]

Loads the model class named in the config from the checkpoint, reads the split through the config's data module
(every image, no DistributedSampler padding), and evaluates ``-log_prob`` image by image. The last line printed is

    nll_nats=<mean> se=<std / sqrt(N)> bpd=<mean / (D ln 2)>

For exact models (FVSBN, NADE, MADE) the mean is the test NLL; for a VAE it is the ``k``-sample importance-weighted
estimate (an upper bound on the NLL in expectation), computed with ``--k`` samples (default: the model's
``iw_samples``), each image's samples keyed on (``--seed``, the image) as in the benchmark.

    python scripts/reproduce.py set-lr --ckpt IN.ckpt --lr 0.0005 --out OUT.ckpt

writes a copy of a training checkpoint whose optimizer resumes at learning rate ``--lr`` (a stage of a step
schedule run as resumed fits, for models without a scheduler option; see configs/repro/vae_*.yaml).

    python scripts/reproduce.py curve --metrics RUN/lightning_logs/version_*/metrics.csv --paper 88.86 \
        --title "NADE, static binarized MNIST" --x epoch minutes --out docs/repro_nade.png

draws the validation curve (from the CSV logs of one run and its resumed stages) against each ``--x`` (epoch, step,
or wall-clock minutes from the WallClock callback; ``--minutes-from-grids`` for a run without it), one panel each,
with the published number as a dashed line.
"""

from __future__ import annotations

import argparse
import csv
import glob
import importlib
import math
import os
import sys
import time

import torch
import yaml

from lightning_gen.models.base import Estimate, bits_per_dim


def import_class(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def set_lr_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reproduce.py set-lr", description="resume a checkpoint at another learning rate")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    checkpoint = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    if not checkpoint.get("optimizer_states"):
        p.error(f"{args.ckpt} holds no optimizer state: it is not a training checkpoint")
    for state in checkpoint["optimizer_states"]:
        for group in state["param_groups"]:
            group["lr"] = args.lr
    torch.save(checkpoint, args.out)
    print(f"epoch={checkpoint['epoch']} global_step={checkpoint['global_step']} lr={args.lr:g} -> {args.out}")
    return 0


#: The x axes ``curve --x`` can draw: the metrics.csv column each reads, and its label.
X_AXES = {"epoch": ("epoch", "epoch"), "step": ("step", "training step"),
          "minutes": ("time/train_minutes", "wall-clock minutes of training")}


def grid_minutes(metrics_path: str) -> dict[int, float]:
    """Wall-clock minutes at each step a run's ``SampleGrid`` wrote ``samples/step_NNNNNNN.png``: the grid's file time
    less that of the run's ``config.yaml`` (written as fit starts). For runs that predate the WallClock callback."""
    run = os.path.dirname(os.path.abspath(metrics_path))
    start = os.path.getmtime(os.path.join(run, "config.yaml"))
    grids = glob.glob(os.path.join(run, "samples", "step_*.png"))
    return {int(os.path.basename(g)[5:-4]): (os.path.getmtime(g) - start) / 60 for g in grids}


def read_curve(paths: list[str], metric: str, x: str = "epoch",
               from_grids: bool = False) -> list[tuple[float, float]]:
    """``(x, value)`` of ``metric`` from CSVLogger files, ``x`` one of :data:`X_AXES`; a later file (a resumed
    stage) wins on an x value. Rows without the x column (a run without WallClock, for minutes) are skipped, unless
    ``from_grids``: then minutes come from :func:`grid_minutes` at the row's step (a grid written one step off, at
    the epoch's end, counts)."""
    column = X_AXES[x][0]
    by_x: dict[float, float] = {}
    for path in paths:
        grids = grid_minutes(path) if from_grids and x == "minutes" else {}
        with open(path) as f:
            for row in csv.DictReader(f):
                if not row.get(metric):
                    continue
                if row.get(column):
                    by_x[float(row[column])] = float(row[metric])
                elif grids:
                    step = int(row["step"])
                    at = next((grids[s] for s in (step, step + 1, step - 1) if s in grids), None)
                    if at is not None:
                        by_x[at] = float(row[metric])
    return sorted(by_x.items())


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    step *= next(m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= n)
    return [i * step for i in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def curve_main(argv: list[str]) -> int:
    from PIL import Image, ImageDraw

    p = argparse.ArgumentParser(prog="reproduce.py curve", description="a validation curve, beside a published number")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.csv files, in stage order")
    p.add_argument("--metric", default="val/nll_nats")
    p.add_argument("--x", nargs="+", default=["epoch"], choices=list(X_AXES),
                   help="x axis of each panel, side by side (minutes needs the WallClock callback's column)")
    p.add_argument("--minutes-from-grids", action="store_true",
                   help="for a run without the WallClock column: minutes from the file times of its sample grids")
    p.add_argument("--paper", type=float, default=None, help="the published number, drawn as a dashed line")
    p.add_argument("--paper-label", default="published test NLL")
    p.add_argument("--test", type=float, default=None, help="our test NLL (nats), marked at the best point")
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    panels = [(x, read_curve(args.metrics, args.metric, x, args.minutes_from_grids)) for x in args.x]
    for x, points in panels:
        if not points:
            p.error(f"no {args.metric} values with a {X_AXES[x][0]} column in {args.metrics}")
    values = [v for _, points in panels for _, v in points]
    best = min(values)
    if args.paper is not None:
        # Show the end of training, where the gap to the paper is decided: from the paper's number minus a margin
        # to the larger of the last value and the best plus the same spread, clipping the early epochs.
        lo = min(args.paper, best, args.test or best) - 1.0
        hi = max(lo + 4.0, min(max(values), best + 3 * (best - lo)))
    else:
        lo, hi = best - 0.05 * (max(values) - best) - 1e-9, max(values)
    panel_w, height, left, right, top, bottom = 560, 440, 70, 20, 40, 50
    img = Image.new("RGB", (panel_w * len(panels), height), "white")
    draw = ImageDraw.Draw(img)
    sy = lambda v: top + (height - top - bottom) * (hi - min(max(v, lo), hi)) / (hi - lo)  # noqa: E731
    # our test point above the published line: the two labels go on opposite sides of it
    ours_above = args.test is not None and args.paper is not None and sy(args.test) < sy(args.paper)
    for i, (x, points) in enumerate(panels):
        x0, x1 = i * panel_w + left, (i + 1) * panel_w - right
        x_max = max(points[-1][0], 1e-9)
        sx = lambda e: x0 + (x1 - x0) * e / x_max  # noqa: E731
        draw.rectangle([x0, top, x1, height - bottom], outline="black")
        for t in nice_ticks(lo, hi):
            draw.line([x0 - 4, sy(t), x0, sy(t)], fill="black")
            draw.text((x0 - 60, sy(t) - 6), f"{t:g}", fill="black")
        for t in nice_ticks(0, x_max):
            draw.line([sx(t), height - bottom, sx(t), height - bottom + 4], fill="black")
            draw.text((sx(t) - 8, height - bottom + 8), f"{t:g}", fill="black")
        if args.paper is not None:
            xd = x0
            while xd < x1:  # dashed line: the published number
                draw.line([xd, sy(args.paper), min(xd + 8, x1), sy(args.paper)], fill=(200, 30, 30), width=2)
                xd += 14
            # its label on the side of the line away from our test point's (above it, at the left, without room)
            room_below = sy(args.paper) + 18 < height - bottom
            lx, ly = ((x1 - 230, sy(args.paper) + 4) if ours_above and room_below
                      else (x0 + 8, sy(args.paper) - 16) if ours_above else (x1 - 230, sy(args.paper) - 16))
            draw.text((lx, ly), f"{args.paper_label} {args.paper:g}", fill=(200, 30, 30))
        if len(points) > 1:
            draw.line([(sx(e), sy(v)) for e, v in points], fill=(30, 80, 200), width=2)
        else:
            draw.ellipse([sx(points[0][0]) - 3, sy(points[0][1]) - 3, sx(points[0][0]) + 3, sy(points[0][1]) + 3],
                         fill=(30, 80, 200))
        label = X_AXES[x][1]
        draw.text(((x0 + x1) / 2 - draw.textlength(label) / 2, height - 20), label, fill="black")
        if args.test is not None:
            e = min(points, key=lambda ev: ev[1])[0]
            draw.ellipse([sx(e) - 4, sy(args.test) - 4, sx(e) + 4, sy(args.test) + 4], fill=(20, 140, 60))
            text = f"our test NLL {args.test:.2f} (best)"
            lx = sx(e) + 8 if sx(e) < x0 + (x1 - x0) * 0.6 else sx(e) - 8 - draw.textlength(text)
            draw.text((lx, sy(args.test) - 18 if ours_above else sy(args.test) + 4), text, fill=(20, 140, 60))
    draw.text((left, 12), f"{args.title}  ({args.metric}; best {best:.2f})", fill="black")
    img.save(args.out)
    last = panels[0][1][-1]
    print(f"{len(panels[0][1])} points, best {best:.3f}, last {last[1]:.3f} at {args.x[0]} {last[0]:g} -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["set-lr"]:
        return set_lr_main(argv[1:])
    if argv[:1] == ["curve"]:
        return curve_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the LightningCLI config the model was trained with")
    p.add_argument("--ckpt", required=True, help="checkpoint to evaluate")
    p.add_argument("--data-root", default=None, help="data root (default: the config's, else $LIGHTNING_GEN_DATA)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--k", type=int, default=None, help="importance samples, for models whose log_prob takes k")
    p.add_argument("--seed", type=int, default=0, help="seed of the importance samples")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (to time a large --k)")
    args = p.parse_args(argv)

    with open(args.config) as f:
        config = yaml.safe_load(f)
    model_cls = import_class(config["model"]["class_path"])
    # Our own training checkpoints: their hyperparameters name the optimizer class, which weights_only refuses.
    model = model_cls.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=False).float().eval()
    data_args = dict(config["data"].get("init_args") or {})
    if args.data_root is not None:
        data_args["root"] = args.data_root
    data = import_class(config["data"]["class_path"])(**data_args)
    images, labels = data.splits()[args.split]
    images, labels = images[: args.limit], labels[: args.limit]

    estimate = Estimate(k=args.k, seed=args.seed)  # each image's samples keyed on (seed, image): batch-free
    if model.likelihood_kind == "exact" and args.k is not None:
        p.error(f"{model_cls.__name__}.log_prob is exact and takes no --k")
    start = time.perf_counter()
    nll = []
    with torch.no_grad():
        for i in range(0, images.shape[0], args.batch_size):
            x = images[i : i + args.batch_size]
            y = labels[i : i + args.batch_size] if model.conditional else None
            nll.append(-model.log_prob(x, y, estimate=estimate).double())
    nll = torch.cat(nll)
    seconds = time.perf_counter() - start
    mean, se = nll.mean().item(), (nll.std() / math.sqrt(nll.numel())).item()
    bpd = bits_per_dim(torch.tensor(mean), model.num_dims).item()
    k = model.resolve_estimate(estimate).k
    print(f"model={model_cls.__name__} params={sum(t.numel() for t in model.parameters())} split={args.split} "
          f"images={nll.numel()} seconds={seconds:.1f}" + (f" k={k}" if k else ""))
    print(f"nll_nats={mean:.4f} se={se:.4f} bpd={bpd:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
