"""Callbacks that draw from the model during training: fixed-seed sample grids, latent-space pictures, and sample
metrics (FID / KID / IS) through the evaluation engine (:mod:`lightning_gen.evaluation`)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lightning_gen.evaluation import (ChunkFeatures, chunks_of_rank, draw_chunk, reference_of_split, sample_metric,
                                      score)
from lightning_gen.images import image_grid, save_png
from lightning_gen.loggers import run_folder
from lightning_gen.metrics.features import get_extractor
from lightning_gen.pictures import latent_pictures, save_latent_pictures


def log_grid_image(trainer: L.Trainer, key: str, grid: np.ndarray, step: int, caption: str | None = None) -> None:
    """Log a uint8 ``(H, W, C)`` grid to every attached W&B and TensorBoard logger."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            # uint8 (H, W) or (H, W, 3): W&B casts floats to uint8 and would store a [0, 1] grid all black.
            logger.log_image(key=key, images=[grid[..., 0] if grid.shape[-1] == 1 else grid], step=step,
                             **({"caption": [caption]} if caption else {}))
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, step, dataformats="HWC")


class SampleGrid(L.Callback):
    """Samples ``num_samples`` images with a fixed seed, saves ``<run folder>/samples/step_<7-digit global
    step>.png`` and logs the uint8 grid to every attached logger (W&B, TensorBoard). The same seed every time, so
    grids compare over training.

    Args:
        num_samples: images in the grid.
        seed: generator seed of the draw.
        every_n_steps: also sample every N training steps (0: only at validation epoch ends).
        nrow: images per grid row (default: square grid).
    """

    def __init__(self, num_samples: int = 64, seed: int = 0, every_n_steps: int = 0, nrow: int | None = None) -> None:
        self.num_samples, self.seed, self.every_n_steps, self.nrow = num_samples, seed, every_n_steps, nrow
        self.last_path: Path | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.log_grid(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.log_grid(trainer, pl_module)

    @rank_zero_only
    def log_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        was_training = pl_module.training
        pl_module.eval()
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        # A fast_dev_run checks that the path works, not the picture: draw a handful of images.
        n = min(self.num_samples, 4) if trainer.fast_dev_run else self.num_samples
        labels = None
        if getattr(pl_module, "conditional", False):
            # one row per class when the model is class-conditional
            labels = torch.arange(n, device=pl_module.device) % pl_module.num_classes
        images = pl_module.sample(n, generator=generator, labels=labels)
        pl_module.train(was_training)
        grid = image_grid(images, self.nrow)
        step = trainer.global_step
        path = save_png(grid, run_folder(trainer) / "samples" / f"step_{step:07d}.png")
        log_grid_image(trainer, "samples", grid, step, caption=f"step {step}")
        self.last_path = path
        return path


class VAEPictures(L.Callback):
    """At each validation epoch end, saves :func:`~lightning_gen.pictures.latent_pictures` of the model (an
    :class:`~lightning_gen.models.vae.Autoencoder` or :class:`~lightning_gen.models.vae.VAE`) as
    ``<run folder>/pictures/<name>_step_<7-digit global step>.png`` and logs them to every attached logger (W&B,
    TensorBoard). The inputs are the first images of the first validation batch; seeds are fixed so the pictures compare over
    training. Under ``fast_dev_run`` it draws 4 of each.

    Args:
        num_samples, num_reconstructions, num_interpolations, interpolation_steps, manifold_side, seed: see
            :func:`~lightning_gen.pictures.latent_pictures`.
    """

    def __init__(self, num_samples: int = 64, num_reconstructions: int = 16, num_interpolations: int = 4,
                 interpolation_steps: int = 8, manifold_side: int = 20, seed: int = 0) -> None:
        self.kwargs = dict(num_samples=num_samples, num_reconstructions=num_reconstructions,
                           num_interpolations=num_interpolations, interpolation_steps=interpolation_steps,
                           manifold_side=manifold_side, seed=seed)
        self.last_paths: dict[str, Path] = {}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.log_pictures(trainer, pl_module)

    @rank_zero_only
    def log_pictures(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Path]:
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        images = next(iter(loader))[0]
        kwargs = dict(self.kwargs)
        if trainer.fast_dev_run:
            # A fast_dev_run checks that the path works, not the picture.
            kwargs.update(num_samples=4, num_reconstructions=4, num_interpolations=1, interpolation_steps=4,
                          manifold_side=4)
        grids = latent_pictures(pl_module, images, **kwargs)
        step = trainer.global_step
        self.last_paths = save_latent_pictures(grids, run_folder(trainer) / "pictures", f"_step_{step:07d}")
        for name, grid in grids.items():
            log_grid_image(trainer, f"pictures/{name}", grid, step)
        return self.last_paths


class SampleMetrics(L.Callback):
    """FID and KID (and IS where the extractor has logits) of ``num_samples`` fresh samples against the data
    module's ``split`` (validation by default: choosing checkpoints by test-set FID would leak the test set), at the
    end of every ``every_n_epochs``-th validation epoch, logged as ``val/fid``, ``val/kid`` and ``val/is``, so a
    ModelCheckpoint can keep the best checkpoint by sample quality (``monitor: val/fid``) and every logger draws the
    curve.

    Samples are drawn, gathered and scored by the benchmark's own functions (:mod:`lightning_gen.evaluation`:
    :func:`~lightning_gen.evaluation.draw_chunk`, :class:`~lightning_gen.evaluation.ChunkFeatures`,
    :func:`~lightning_gen.evaluation.sample_metric`), so 1 or N processes give the same numbers, and the split's
    reference statistics are cached under the same key (:func:`~lightning_gen.evaluation.reference_of_split`). The
    numbers are for following training and picking a checkpoint; ``lightning-gen benchmark`` (10,000 samples against
    the test split) is the one to report, as FID from fewer samples is biased upwards.

    Args:
        num_samples: samples per measurement (4 under ``fast_dev_run``).
        every_n_epochs: measure at the validation epochs ``e`` with ``(e + 1) % every_n_epochs == 0``. A
            ModelCheckpoint that monitors ``val/fid`` needs it at every validation it sees: give it the same
            ``every_n_epochs``, or leave this at 1 and set ``trainer.check_val_every_n_epoch``.
        extractor: a registered feature extractor (default: the data module's ``default_extractor``).
        split: the data split of the reference statistics.
        chunk_size: samples drawn per ``sample`` call.
        seed: seed of the samples and of the KID subsets (the same samples every time, so the curve shows the
            model changing, not the draw).
        kid_subsets, kid_subset_size: KID's subsets (the size is capped at the smaller sample count).
    """

    def __init__(self, num_samples: int = 1000, every_n_epochs: int = 1, extractor: str | None = None, *,
                 split: str = "val", chunk_size: int = 250, seed: int = 0, kid_subsets: int = 100,
                 kid_subset_size: int = 1000) -> None:
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2 (FID needs a covariance), got {num_samples}")
        if every_n_epochs < 1 or chunk_size < 1:
            raise ValueError(f"every_n_epochs and chunk_size must be >= 1, got {every_n_epochs} and {chunk_size}")
        self.num_samples, self.every_n_epochs, self.extractor_name = num_samples, every_n_epochs, extractor
        self.split, self.chunk_size, self.seed = split, chunk_size, seed
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.extractor = None
        self._reference = None
        self.last: dict[str, float] = {}
        self.seconds = 0.0  # wall time of all measurements so far (the runs this one resumed from included)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        name = self.extractor_name or getattr(datamodule, "default_extractor", None)
        if name is None:
            raise ValueError("SampleMetrics: name an extractor (the data module has no default_extractor)")
        self.extractor = get_extractor(name).eval()

    def due(self, trainer: L.Trainer) -> bool:
        """At every ``every_n_epochs``-th validation of a fit, and at every ``validate`` run (which asks for them)."""
        fitting = trainer.state.fn == "fit"
        return not trainer.sanity_checking and (not fitting or (trainer.current_epoch + 1) % self.every_n_epochs == 0)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.due(trainer):
            return
        start = time.perf_counter()
        n = min(self.num_samples, 4) if trainer.fast_dev_run else self.num_samples
        results = self.measure(trainer, pl_module, n)
        results = trainer.strategy.broadcast(results)  # rank 0 scored them; every rank logs the same values
        for name, value in results.items():
            # The max of equal values is that value exactly (a mean over 3 ranks need not be); syncing at all keeps
            # Lightning from warning that an epoch-level value is not synced.
            pl_module.log(f"val/{name}", value, on_epoch=True, sync_dist=True, reduce_fx="max")
        self.last = results
        self.seconds += time.perf_counter() - start

    def state_dict(self) -> dict:
        # Saved with a checkpoint, so a resumed run reports the last measurement and the time spent measuring.
        return {"last": dict(self.last), "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last, self.seconds = dict(state_dict["last"]), float(state_dict["seconds"])

    def reference(self, datamodule):
        """The split's reference statistics (features kept, for KID), through the stats cache."""
        if self._reference is None:
            self._reference = reference_of_split(datamodule, self.split, self.extractor, batch_size=self.chunk_size)
        return self._reference

    @torch.no_grad()
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, n: int) -> dict[str, float]:
        """Draw this rank's chunks of the ``n`` samples, gather their features; FID/KID/IS on rank 0 (an empty
        dict elsewhere)."""
        device = pl_module.device
        self.extractor.to(device)
        was_training = pl_module.training
        pl_module.eval()
        chunks = ChunkFeatures(self.extractor, pl_module.image_shape, device)
        for chunk in chunks_of_rank(math.ceil(n / self.chunk_size), trainer.global_rank, trainer.world_size):
            index, images, _ = draw_chunk(pl_module, chunk, num_samples=n, chunk_size=self.chunk_size, seed=self.seed,
                                          num_levels=pl_module.num_levels)
            chunks.add(index, images)
        pl_module.train(was_training)
        features, logits = chunks.gather(n)
        if not trainer.is_global_zero:
            return {}
        metric = sample_metric(self.reference(trainer.datamodule), self.extractor, seed=self.seed, fid_bootstrap=0,
                               is_splits=10 if n >= 100 else 1, kid_subsets=self.kid_subsets,
                               kid_subset_size=self.kid_subset_size, pr_k=0, dc_k=0)
        scores = score(metric, features, logits)
        out = {"fid": scores["fid"], "kid": scores["kid_mean"]}
        if "is_mean" in scores:
            out["is"] = scores["is_mean"]
        return out
