"""Pictures of an autoencoder's or VAE's latent space as uint8 grids: reconstructions, samples and their mean
images, interpolations between inputs, and the 2-D latent manifold of [1] arXiv 1312.6114 (Figure 4)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lightning_gen.images import image_grid, save_png

if TYPE_CHECKING:
    from lightning_gen.models.vae import VAE, Autoencoder


@torch.no_grad()
def latent_pictures(model: VAE | Autoencoder, images: Tensor, *, seed: int = 0, num_samples: int = 64,
                    num_reconstructions: int = 16, num_interpolations: int = 4, interpolation_steps: int = 8,
                    manifold_side: int = 20) -> dict[str, np.ndarray]:
    """uint8 grids of an autoencoder or VAE, by name:

    - ``reconstructions``: rows of inputs alternating with rows of their reconstructions (mean images of the
      posterior mean's decoding);
    - ``samples``: ``model.sample`` (pixels drawn from ``p(x | z)``), and ``sample_means``: the mean images of the
      same codes;
    - ``interpolations``: one row per pair of inputs: the first input, the mean images along the straight line
      between the two codes, the second input;
    - ``manifold`` (``z_dim == 2`` only): mean images on a ``manifold_side`` squared grid of codes at the
      5%..95% quantiles of the sampling distribution, as in [1], Figure 4.

    ``images`` (uint8, ``(N, C, H, W)``) supplies the inputs of the reconstructions and interpolations.
    """
    was_training = model.training
    model.eval()
    device = model.device
    x = images.to(device)
    out: dict[str, np.ndarray] = {}
    n_rec = min(num_reconstructions, x.shape[0])
    if n_rec:
        rec = model.decode_mean(model.encode(x[:n_rec]))
        row = min(8, n_rec)
        pairs = [t for start in range(0, n_rec, row) for t in (x[start : start + row], rec[start : start + row])]
        out["reconstructions"] = image_grid(torch.cat(pairs), row)
    generator = torch.Generator(device=device).manual_seed(seed)
    out["samples"] = image_grid(model.sample(num_samples, generator=generator))
    eps = torch.randn(num_samples, model.z_dim, generator=generator.manual_seed(seed), device=device)
    out["sample_means"] = image_grid(model.decode_mean(model.prior_transform(eps)))
    n_int = min(num_interpolations, x.shape[0] // 2)
    if n_int:
        z = model.encode(x[: 2 * n_int])
        t = torch.linspace(0, 1, interpolation_steps, device=device)[None, :, None]  # (1, T, 1)
        path = z[0::2, None] * (1 - t) + z[1::2, None] * t  # (P, T, D)
        mids = model.decode_mean(path.flatten(0, 1)).view(n_int, interpolation_steps, *x.shape[1:])
        rows = torch.cat([x[0 : 2 * n_int : 2, None], mids, x[1 : 2 * n_int : 2, None]], 1)  # (P, T + 2, C, H, W)
        out["interpolations"] = image_grid(rows.flatten(0, 1), interpolation_steps + 2)
    if model.z_dim == 2:
        q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, manifold_side, device=device))
        # Rows run from high to low second coordinate so the picture reads like a plot with its y axis up.
        grid = torch.stack(torch.meshgrid(q.flip(0), q, indexing="ij"), -1).flip(-1).reshape(-1, 2)
        out["manifold"] = image_grid(model.decode_mean(model.prior_transform(grid)), manifold_side)
    model.train(was_training)
    return out


def save_latent_pictures(grids: dict[str, np.ndarray], out_dir: str | Path, suffix: str = "") -> dict[str, Path]:
    """Write each grid as ``out_dir/<name><suffix>.png``."""
    return {name: save_png(grid, Path(out_dir) / f"{name}{suffix}.png") for name, grid in grids.items()}
