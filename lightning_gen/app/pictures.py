"""``lightning-gen pictures``: pictures of a checkpointed autoencoder's or VAE's latent space: reconstructions beside
their inputs, samples from the prior (drawn and mean images), interpolations between test images and, for a 2-D
latent space, the latent manifold. Written as PNG files into --out.

    lightning-gen pictures runs/vae_binarized_mnist/.../checkpoints/last.ckpt --out runs/pictures --data-root DATA
    lightning-gen pictures CKPT --out DIR --data Digits --data-arg binarize=true
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lightning_gen.app.cli import PROG, UserError
from lightning_gen.app.probe import add_data_options, data_arguments
from lightning_gen.app.run import Run
from lightning_gen.models.vae import VAE, Autoencoder
from lightning_gen.pictures import latent_pictures, save_latent_pictures


def pictures_from_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, data: str | None = None,
                             root: str | None = None, data_args: dict | None = None, device: str = "cpu",
                             **picture_kwargs) -> dict[str, Path]:
    """:func:`~lightning_gen.pictures.latent_pictures` of a checkpoint's (or run folder's) autoencoder or VAE on
    test images of the data module its run config names (or ``data``), saved as PNG in ``out_dir``."""
    run = Run.open(checkpoint)
    model = run.model(map_location=device)
    if not isinstance(model, (VAE, Autoencoder)):
        raise UserError(f"{type(model).__name__} is not an autoencoder or VAE of lightning_gen.models.vae: "
                        "pictures draws a latent space")
    datamodule = run.datamodule(data=data, root=root, **(data_args or {}))
    datamodule.prepare_data()
    datamodule.setup("test")
    test = datamodule.datasets["test"]
    wanted = max(picture_kwargs.get("num_reconstructions", 16), 2 * picture_kwargs.get("num_interpolations", 4))
    images, _ = test.__getitems__(list(range(min(len(test), wanted))))
    return save_latent_pictures(latent_pictures(model, images, **picture_kwargs), out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} pictures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint or its run folder")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    add_data_options(parser)
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--manifold-side", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    paths = pictures_from_checkpoint(args.checkpoint, args.out, data=args.data, root=args.root,
                                     data_args=data_arguments(args.data_arg), device=args.device,
                                     num_samples=args.num_samples, manifold_side=args.manifold_side, seed=args.seed)
    for path in paths.values():
        print(path)
    return 0
