"""The README's samples picture: one `make demo` sample grid per model family, side by side and labelled.

    make demo && python docs/family_samples.py     # reads results/grids/<config>.png, writes docs/family_samples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

#: (label, demo config) per family, in the README's order.
PANELS = (("baseline: NADE", "nade_digits"), ("autoregressive: Gated PixelCNN", "gated_pixelcnn_digits"),
          ("latent: VAE", "vae_digits"), ("gan: DCGAN", "dcgan_digits"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grids", type=Path, default=Path("results/grids"), help="the demo's sample grids")
    p.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of each grid")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("family_samples.png"))
    args = p.parse_args(argv)
    grids = [Image.open(args.grids / f"{config}.png").convert("L") for _, config in PANELS]
    grids = [g.resize((g.width * args.scale, g.height * args.scale), Image.NEAREST) for g in grids]
    label_h, pad = 18, 12
    width = sum(g.width for g in grids) + pad * (len(grids) + 1)
    canvas = Image.new("L", (width, max(g.height for g in grids) + label_h + 2 * pad), 255)
    draw, x = ImageDraw.Draw(canvas), pad
    for (label, _), grid in zip(PANELS, grids):
        draw.text((x, pad // 2), label, fill=0)
        canvas.paste(grid, (x, pad // 2 + label_h))
        x += grid.width + pad
    canvas.save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
