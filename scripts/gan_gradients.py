"""Why the non-saturating generator loss: the generator's gradient against D(G(z)), minimax vs non-saturating.

Left panel, analytic: the gradient of each generator loss w.r.t. the discriminator's logit on a generated image,
``|dL/dl| = D(G(z))`` for the minimax loss ``log(1 - D(G(z)))`` and ``1 - D(G(z))`` for the non-saturating loss
``-log D(G(z))`` (Goodfellow et al. 2014, arXiv 1406.2661, section 3).

Right panel, measured (the experiment of Arjovsky & Bottou 2017, arXiv 1701.04862, figure 2, on the 8x8 digits): an
MLP GAN (the nets of ``configs/gan_digits.yaml``) is trained briefly, then its generator is frozen and a fresh
discriminator is trained against it. As the discriminator wins, D(G(z)) falls, and at every discriminator step the
norm of the generator's gradient ``||grad_theta L_G||`` is measured for both losses on the same noise batch. The
minimax gradient vanishes with D(G(z)); the non-saturating one does not.

    python scripts/gan_gradients.py --out runs/gan/gan_gradients.png

The last line is ``key=value`` pairs (final D(G(z)) and both gradient norms at the start and the end).
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch

from lightning_gen.data import Digits
from lightning_gen.models.gan import GAN

REPO = Path(__file__).resolve().parents[1]
COLORS = {"minimax": (214, 39, 40), "non_saturating": (31, 119, 180)}
LABELS = {"minimax": "minimax  log(1 - D(G(z)))", "non_saturating": "non-saturating  -log D(G(z))"}


def digits_gan(**overrides) -> GAN:
    """The MLP GAN of configs/gan_digits.yaml."""
    adam = functools.partial(torch.optim.Adam, lr=5e-4, betas=(0.5, 0.999))
    options = dict(generator="mlp", discriminator="mlp", z_dim=32, g_width=256, d_width=256, mlp_depth=2,
                   g_norm="batch", d_norm="none", g_optimizer=adam, d_optimizer=adam)
    return GAN(Digits.image_shape, 256, Digits.num_classes, **{**options, **overrides})


class GradientProbe(L.Callback):
    """After every discriminator step: mean D(G(z)) and the generator gradient norm under each loss, fixed z."""

    def __init__(self, z: torch.Tensor) -> None:
        self.z = z
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with torch.no_grad():
            d_fake = torch.sigmoid(pl_module.discriminator(pl_module.generator(self.z))).mean().item()
        row = {"d_step": float(pl_module.d_steps), "d_fake": d_fake}
        for kind in COLORS:
            row[kind] = pl_module.generator_gradient_norm(self.z, g_loss=kind).item()
        self.rows.append(row)


def measure(warmup_steps: int, d_steps: int, seed: int, batch_size: int) -> list[dict[str, float]]:
    trainer_args = dict(max_epochs=-1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    L.seed_everything(seed)
    gan = digits_gan()
    L.Trainer(max_steps=2 * warmup_steps, **trainer_args).fit(gan, Digits(batch_size=batch_size))
    # A fresh discriminator against the frozen generator: no generator step ever comes (k is out of reach).
    critic = digits_gan(d_steps_per_g_step=10**9)
    critic.generator.load_state_dict(gan.generator.state_dict())
    probe = GradientProbe(torch.randn(512, critic.z_dim, generator=torch.Generator().manual_seed(seed + 1)))
    L.Trainer(max_steps=d_steps, callbacks=[probe], **trainer_args).fit(critic, Digits(batch_size=batch_size))
    return probe.rows


# ---- drawing with PIL (matplotlib is not a dependency) -------------------------------------------------------------
class Panel:
    """A rectangle of the canvas with data -> pixel transforms (log10 axes where asked)."""

    def __init__(self, draw, box, xlim, ylim, xlog, ylog, font) -> None:
        self.draw, self.box, self.font = draw, box, font
        self.xlog, self.ylog = xlog, ylog
        self.xlim = tuple(map(math.log10, xlim)) if xlog else xlim
        self.ylim = tuple(map(math.log10, ylim)) if ylog else ylim

    def px(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        x = math.log10(max(x, 1e-300)) if self.xlog else x
        y = math.log10(max(y, 1e-300)) if self.ylog else y
        fx = (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
        fy = (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        return left + fx * (right - left), bottom - fy * (bottom - top)

    def frame(self, title: str, xlabel: str, ylabel: str, xticks, yticks) -> None:
        left, top, right, bottom = self.box
        d, f = self.draw, self.font
        d.rectangle(self.box, outline=(0, 0, 0))
        for value, text in xticks:
            x, _ = self.px(value, 10 ** self.ylim[0] if self.ylog else self.ylim[0])
            d.line([(x, bottom), (x, bottom + 5)], fill=(0, 0, 0))
            d.line([(x, top), (x, bottom)], fill=(225, 225, 225))
            d.text((x, bottom + 8), text, fill=(0, 0, 0), font=f, anchor="mt")
        for value, text in yticks:
            _, y = self.px(10 ** self.xlim[0] if self.xlog else self.xlim[0], value)
            d.line([(left - 5, y), (left, y)], fill=(0, 0, 0))
            d.line([(left, y), (right, y)], fill=(225, 225, 225))
            d.text((left - 8, y), text, fill=(0, 0, 0), font=f, anchor="rm")
        d.rectangle(self.box, outline=(0, 0, 0))
        d.text(((left + right) / 2, top - 34), title, fill=(0, 0, 0), font=f, anchor="mb")
        d.text(((left + right) / 2, bottom + 30), xlabel, fill=(0, 0, 0), font=f, anchor="mt")
        d.text((left - 60, top - 8), ylabel, fill=(0, 0, 0), font=f, anchor="lb")

    def line(self, xs, ys, color, width: int = 3) -> None:
        self.draw.line([self.px(x, y) for x, y in zip(xs, ys)], fill=color, width=width)

    def dots(self, xs, ys, color, r: float = 2.5) -> None:
        for x, y in zip(xs, ys):
            cx, cy = self.px(x, y)
            self.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)

    def legend(self, entries, corner: str = "lower right") -> None:
        left, top, right, bottom = self.box
        x0 = right - 250 if corner.endswith("right") else left + 12
        y0 = {"lower": bottom - 14 - 20 * len(entries), "upper": top + 10}.get(
            corner.split()[0], (top + bottom) / 2 - 10 * len(entries))
        for i, (color, text) in enumerate(entries):
            y = y0 + 20 * i + 8
            self.draw.line([(x0, y), (x0 + 24, y)], fill=color, width=4)
            self.draw.text((x0 + 32, y), text, fill=(0, 0, 0), font=self.font, anchor="lm")


def draw_figure(rows: list[dict[str, float]], out: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the bitmap font has no size
        font = ImageFont.load_default()
    img = Image.new("RGB", (1200, 540), "white")
    draw = ImageDraw.Draw(img)
    decades = [(10.0 ** e, f"1e{e}") for e in range(-4, 1)]

    left = Panel(draw, (90, 80, 570, 450), (1e-4, 1.0), (0.0, 1.05), True, False, font)
    left.frame("analytic: gradient w.r.t. the logit of D", "D(G(z))  (log scale)", "|dL_G / d logit|",
               decades, [(v, f"{v:.1f}") for v in np.arange(0, 1.01, 0.2)])
    d = np.logspace(-4, 0, 200)
    left.line(d, d, COLORS["minimax"])
    left.line(d, 1 - d, COLORS["non_saturating"])
    left.legend([(COLORS[k], LABELS[k]) for k in COLORS], corner="center left")

    d_fake = np.array([r["d_fake"] for r in rows])
    norms = {k: np.array([r[k] for r in rows]) for k in COLORS}
    lo = min(v.min() for v in norms.values())
    hi = max(v.max() for v in norms.values())
    ylim = (10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi)))
    xlim = (10 ** math.floor(math.log10(max(d_fake.min(), 1e-12))), 1.0)
    right = Panel(draw, (700, 80, 1180, 450), xlim, ylim, True, True, font)
    right.frame(f"measured: frozen G, fresh D trained for {len(rows)} steps", "mean D(G(z))  (log scale)",
                "||grad_theta L_G||  (log)",
                [(10.0 ** e, f"1e{e}") for e in range(int(math.log10(xlim[0])), 1)],
                [(10.0 ** e, f"1e{e}") for e in range(int(math.log10(ylim[0])), int(math.log10(ylim[1])) + 1)])
    for kind, color in COLORS.items():
        right.dots(d_fake, norms[kind], color)
    right.legend([(COLORS[k], LABELS[k]) for k in COLORS], corner="lower right")
    draw.text((600, 512), "As the discriminator wins (D(G(z)) -> 0) the minimax generator's gradient vanishes; "
              "the non-saturating one stays large.", fill=(0, 0, 0), font=font, anchor="mm")
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup-steps", type=int, default=200, help="GAN training batches before G is frozen")
    parser.add_argument("--d-steps", type=int, default=300, help="steps of the fresh discriminator")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gan" / "gan_gradients.png")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    rows = measure(args.warmup_steps, args.d_steps, args.seed, args.batch_size)
    print(f"saved {draw_figure(rows, args.out)}")
    first, last = rows[0], rows[-1]
    print(f"d_fake_start={first['d_fake']:.4g} d_fake_end={last['d_fake']:.4g} "
          f"minimax_grad_start={first['minimax']:.4g} minimax_grad_end={last['minimax']:.4g} "
          f"non_saturating_grad_start={first['non_saturating']:.4g} "
          f"non_saturating_grad_end={last['non_saturating']:.4g}")


if __name__ == "__main__":
    main()
