"""Pictures of a checkpointed autoencoder's or VAE's latent space on test images (``scripts/vae_pictures.py``)."""

from __future__ import annotations

import os
from pathlib import Path

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
        raise TypeError(f"{type(model).__name__} is not an autoencoder or VAE of lightning_gen.models.vae")
    datamodule = run.datamodule(data=data, root=root, **(data_args or {}))
    datamodule.prepare_data()
    datamodule.setup("test")
    test = datamodule.datasets["test"]
    wanted = max(picture_kwargs.get("num_reconstructions", 16), 2 * picture_kwargs.get("num_interpolations", 4))
    images, _ = test.__getitems__(list(range(min(len(test), wanted))))
    return save_latent_pictures(latent_pictures(model, images, **picture_kwargs), out_dir)
