"""Mode coverage on the ring of 8 Gaussians: the minimax, non-saturating and WGAN-GP losses side by side.

Each variant trains ``configs/gan_ring.yaml`` (an MLP GAN) for the same number of generator steps with one loss
changed, then draws 10,000 points from the (EMA) generator and reports, per variant, the modes covered and the
fraction of high-quality samples (within 3 std of a mode; see ``lightning_gen.data.toy.mode_statistics``).

    python scripts/gan_modes.py                      # 3000 generator steps per variant
    python scripts/gan_modes.py --g-steps 500 --variants minimax non_saturating

The last line is ``key=value`` pairs, e.g. ``non_saturating_modes=8 non_saturating_high_quality=0.71 ...``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lightning_gen.app.cli import main as cli_main
from lightning_gen.data.toy import RingOfGaussians
from lightning_gen.app.run import load_model

REPO = Path(__file__).resolve().parents[1]

#: variant -> (model options changed from configs/gan_ring.yaml, discriminator steps per generator step)
VARIANTS: dict[str, tuple[list[str], int]] = {
    "minimax": (["--model.init_args.g_loss", "minimax"], 1),
    "non_saturating": (["--model.init_args.g_loss", "non_saturating"], 1),
    # WGAN-GP's toy-data recipe (Gulrajani et al. 2017, gan_toy.py): 5 critic steps, Adam betas (0.5, 0.9),
    # lambda = 0.1 (the paper's 10 is for images; on a ring of std-0.02 modes it over-smooths the critic).
    "wgan_gp": (["--model.init_args.objective", "wasserstein", "--model.init_args.gradient_penalty", "0.1",
                 "--model.init_args.d_norm", "none", "--model.init_args.d_steps_per_g_step", "5",
                 "--model.init_args.g_optimizer.init_args.betas", "[0.5, 0.9]",
                 "--model.init_args.d_optimizer.init_args.betas", "[0.5, 0.9]"], 5),
}


def train_and_measure(variant: str, g_steps: int, seed: int, out_dir: Path, num_samples: int) -> dict[str, float]:
    options, k = VARIANTS[variant]
    run_dir = out_dir / variant
    start = time.time()
    cli_main(["fit", "--config", str(REPO / "configs" / "gan_ring.yaml"), *options,
              "--seed_everything", str(seed), "--trainer.max_steps", str(g_steps * (k + 1)),
              "--trainer.default_root_dir", str(run_dir), "--trainer.logger", "false",
              "--trainer.enable_progress_bar", "false",
              # the config's one ModelCheckpoint (filename "last": the latest state), into a known folder
              "--trainer.callbacks.dirpath", str(run_dir / "checkpoints")])
    seconds = time.time() - start
    model = load_model(run_dir / "checkpoints" / "last.ckpt")
    data = RingOfGaussians()  # the config's ring: the data module's defaults
    z = torch.randn(num_samples, model.z_dim, generator=torch.Generator().manual_seed(seed))
    stats = data.mode_statistics(data.to_points(model.generate(z)))
    return {**stats, "g_steps": float(model.g_steps), "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--g-steps", type=int, default=3000, help="generator steps per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out-dir", type=Path, default=REPO / "runs" / "gan_modes")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    results = {v: train_and_measure(v, args.g_steps, args.seed, args.out_dir, args.num_samples) for v in args.variants}
    print(f"{'variant':<16}{'modes (of 8)':>14}{'high quality':>14}{'worst mode':>12}{'g steps':>9}{'seconds':>9}")
    for variant, r in results.items():
        print(f"{variant:<16}{r['modes_covered']:>14.0f}{r['high_quality']:>14.3f}{r['worst_mode_share']:>12.3f}"
              f"{r['g_steps']:>9.0f}{r['seconds']:>9.1f}")
    print(" ".join(f"{v}_modes={r['modes_covered']:.0f} {v}_high_quality={r['high_quality']:.3f}"
                   for v, r in results.items()))


if __name__ == "__main__":
    main()
