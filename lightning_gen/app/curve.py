"""``lightning-gen curve``: a run's validation curve, beside a published number, as a PNG.

    lightning-gen curve --metrics RUN/lightning_logs/version_*/metrics.csv --paper 88.86 \\
        --title "NADE, static binarized MNIST" --x epoch minutes --out docs/repro_nade.png

draws the validation curve (from the CSV logs of one run and its resumed stages) against each ``--x`` (epoch, step,
or wall-clock minutes from the WallClock callback; ``--minutes-from-grids`` for a run without it), one panel each,
with the published number as a dashed line.
"""

from __future__ import annotations

import argparse
import csv
import glob
import math
import os

from lightning_gen.app.cli import PROG


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


def main(argv: list[str] | None = None) -> int:
    from PIL import Image, ImageDraw

    p = argparse.ArgumentParser(prog=f"{PROG} curve", description=__doc__.split("\n\n")[0])
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
