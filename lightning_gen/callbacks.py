"""Callbacks: sample grids, latent-space pictures, preemption checkpoints, compilation, memory format and a
throttled progress bar."""

from __future__ import annotations

import re
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lightning_gen.images import image_grid, save_png
from lightning_gen.pictures import latent_pictures, save_latent_pictures


class SampleGrid(L.Callback):
    """Samples ``num_samples`` images with a fixed seed, saves ``<run dir>/samples/step_XXXXXXX.png`` and logs the
    uint8 grid to every attached logger (W&B, TensorBoard). The same seed every time, so grids compare over
    training.

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

    @staticmethod
    def run_dir(trainer: L.Trainer) -> Path:
        """The run's own folder: the CSV/TensorBoard version folder, or ``<root>/wandb-<run id>`` under W&B
        (whose log_dir is shared by every run)."""
        logger = trainer.logger
        if isinstance(logger, WandbLogger):
            return Path(trainer.default_root_dir) / f"wandb-{logger.version}"
        return Path(trainer.log_dir or trainer.default_root_dir)

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
        path = save_png(grid, self.run_dir(trainer) / "samples" / f"step_{step:07d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # uint8 (H, W) or (H, W, 3): W&B casts floats to uint8 and would store a [0, 1] grid all black.
                logger.log_image(key="samples", images=[grid[..., 0] if grid.shape[-1] == 1 else grid], step=step,
                                 caption=[f"step {step}"])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", grid, step, dataformats="HWC")
        self.last_path = path
        return path


class VAEPictures(L.Callback):
    """At each validation epoch end, saves :func:`~lightning_gen.pictures.latent_pictures` of the model (an
    :class:`~lightning_gen.models.vae.Autoencoder` or :class:`~lightning_gen.models.vae.VAE`) as
    ``<run dir>/pictures/<name>_step_XXXXXXX.png`` and logs them to every attached logger (W&B, TensorBoard).
    The inputs are the first images of the first validation batch; seeds are fixed so the pictures compare over
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
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        self.last_paths = save_latent_pictures(grids, run_dir / "pictures", f"_step_{step:07d}")
        for name, grid in grids.items():
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    # uint8 arrays: W&B would turn a float [0, 1] grid black.
                    logger.log_image(key=f"pictures/{name}", images=[grid[..., 0] if grid.shape[-1] == 1 else grid],
                                     step=step)
                elif isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(f"pictures/{name}", grid, step, dataformats="HWC")
        return self.last_paths


class PreemptionCheckpoint(L.Callback):
    """Save a checkpoint and stop cleanly when the scheduler says the job is about to end.

    - **SIGTERM** (what schedulers send before they kill a job): save ``preempted.ckpt``; resume with
      ``fit --ckpt_path <dirpath>/preempted.ckpt``.
    - **Under SLURM**, the checkpoint is the run folder's next ``hpc_ckpt_<n>.ckpt`` instead, the name Lightning's
      SLURM support resumes from by itself, so a requeued job continues from its newest state with no
      ``--ckpt_path``. The requeue signal (SIGUSR1 unless the SLURM environment says otherwise, sent by
      ``#SBATCH --signal=SIGUSR1@90`` before the time limit) also saves one and then runs ``scontrol requeue``.

    Signal handlers only raise a flag. The ranks compare flags at the end of every ``sync_every_n_steps``-th
    training batch (one tiny all-reduce), then all save together and stop, even when only one was signalled.
    Lightning's own handlers for these signals are replaced for the run: under DDP they save (SIGUSR1) or
    broadcast (SIGTERM) from inside the signal handler, a collective that can meet another rank in a different
    collective; on 2 CPU processes here that hung the SLURM requeue and aborted the SIGTERM exit.

    Args:
        dirpath: where ``preempted.ckpt`` goes (default: the ModelCheckpoint folder, else ``<root>/checkpoints``).
        sync_every_n_steps: how often ranks compare notes when there are several.
    """

    def __init__(self, dirpath: str | None = None, sync_every_n_steps: int = 10) -> None:
        if sync_every_n_steps < 1:
            raise ValueError(f"sync_every_n_steps must be >= 1, got {sync_every_n_steps}")
        self.dirpath, self.sync_every_n_steps = dirpath, sync_every_n_steps
        self.signalled = False  # SIGTERM
        self.requeue_requested = False  # SLURM's requeue signal
        self._launcher = None
        self._handled: dict[int, object] = {}

    @staticmethod
    def _slurm_requeue_signal(trainer: L.Trainer):
        from lightning.fabric.plugins.environments import SLURMEnvironment

        env = getattr(trainer.strategy, "cluster_environment", None)
        if isinstance(env, SLURMEnvironment) and env.auto_requeue:
            return env.requeue_signal
        return None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed after Lightning registered its handlers (when the run starts), in their place.
        import signal
        import threading

        self.signalled = self.requeue_requested = False
        if threading.current_thread() is not threading.main_thread():
            return
        self._launcher = trainer.strategy.launcher
        self._handled = {signal.SIGTERM: self._on_sigterm}
        requeue = self._slurm_requeue_signal(trainer)
        if requeue is not None:
            self._handled[requeue] = self._on_requeue_signal
        for signum, handler in self._handled.items():
            signal.signal(signum, handler)

    def _on_sigterm(self, signum, frame) -> None:
        if not self.signalled and self._launcher is not None:
            self._launcher.kill(signum)  # processes Lightning started itself get the signal too, as Lightning does
        self.signalled = True

    def _on_requeue_signal(self, signum, frame) -> None:
        self.requeue_requested = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import signal

        for signum, handler in self._handled.items():
            if signal.getsignal(signum) == handler:  # Lightning may have restored its own already
                signal.signal(signum, signal.SIG_DFL)
        self._handled, self._launcher = {}, None

    def checkpoint_path(self, trainer: L.Trainer) -> Path:
        from lightning.fabric.plugins.environments import SLURMEnvironment

        if self.dirpath:
            return Path(self.dirpath) / "preempted.ckpt"
        if SLURMEnvironment.detect():
            root = Path(trainer.default_root_dir)
            versions = [int(m.group(1)) for p in root.glob("hpc_ckpt_*.ckpt")
                        if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))]
            return root / f"hpc_ckpt_{max(versions, default=0) + 1}.ckpt"
        if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.dirpath:
            return Path(trainer.checkpoint_callback.dirpath) / "preempted.ckpt"
        return Path(trainer.default_root_dir) / "checkpoints" / "preempted.ckpt"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        flags = (self.signalled, self.requeue_requested)
        if trainer.world_size > 1:
            if trainer.global_step % self.sync_every_n_steps:
                return
            votes = trainer.strategy.reduce(torch.tensor(flags, dtype=torch.float32, device=pl_module.device),
                                            reduce_op="sum")
            flags = tuple(bool(v > 0) for v in votes.tolist())
        sigterm, requeue = flags
        if not (sigterm or requeue):
            return
        from lightning.pytorch.utilities import rank_zero_warn

        path = trainer.strategy.broadcast(self.checkpoint_path(trainer))  # rank 0 names it, for every rank
        trainer.save_checkpoint(path)
        trainer.should_stop = True
        if requeue and trainer.is_global_zero:
            self._requeue(path)
        if sigterm:
            how = ("a requeued SLURM job resumes from it by itself" if path.name.startswith("hpc_ckpt_")
                   else f"resume with `fit ... --ckpt_path {path}`")
            rank_zero_warn(f"SIGTERM received: saved {path} at step {trainer.global_step} and stopped; {how}")

    @staticmethod
    def _requeue(path: Path) -> None:
        import os
        import subprocess

        from lightning.pytorch.utilities import rank_zero_warn

        array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
        try:
            code = subprocess.call(["scontrol", "requeue", job])
        except FileNotFoundError:
            code = None
        if code == 0:
            rank_zero_warn(f"SLURM requeue signal: saved {path} and requeued job {job}; the requeued job resumes "
                           "from it by itself")
        else:
            rank_zero_warn(f"SLURM requeue signal: saved {path}, but `scontrol requeue {job}` failed "
                           f"({'scontrol not found' if code is None else f'exit {code}'}); resubmit the job to resume")


class Compile(L.Callback):
    """``torch.compile`` every submodule of the model in place (``nn.Module.compile``), so checkpoints keep their
    parameter names and any model config gains compilation by adding ``configs/trainer/compile.yaml``.

    Args:
        mode: torch.compile mode ("default", "reduce-overhead", "max-autotune").
        dynamic: let shapes vary without recompiling (sampling loops feed varying shapes).
    """

    def __init__(self, mode: str = "default", dynamic: bool | None = None) -> None:
        self.mode, self.dynamic = mode, dynamic

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        compile_children(pl_module, mode=self.mode, dynamic=self.dynamic)


def compile_children(module: torch.nn.Module, mode: str = "default", dynamic: bool | None = None) -> None:
    """``torch.compile`` each child of ``module`` that has parameters, in place (what :class:`Compile` does)."""
    for child in module.children():
        if any(True for _ in child.parameters()):
            child.compile(mode=mode, dynamic=dynamic)


class ChannelsLast(L.Callback):
    """Keep the model's 4-D weights in channels-last memory format (faster convolutions on tensor cores)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, redrawn at most every ``min_interval`` seconds instead of every batch.

    The stock bar (``refresh_rate=1``) formats the logged metrics and redraws after every batch: about 0.16 ms
    per step on a 2-core CPU, as much as the rest of Lightning's per-step overhead together, and 5% of a small
    VAE's step. ``fit`` uses this bar unless the config names another progress bar or turns the bar off. The
    last batch of an epoch always redraws, so the bar ends on the true count.

    Args:
        min_interval: seconds between redraws.
        leave: keep finished epoch bars on screen.
    """

    def __init__(self, min_interval: float = 0.25, leave: bool = False) -> None:
        super().__init__(refresh_rate=1, leave=leave)
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval}")
        self.min_interval = min_interval
        self._last_redraw = float("-inf")

    def _due(self, current: int, total: int | float | None) -> bool:
        now = time.monotonic()
        if current == total or now - self._last_redraw >= self.min_interval:
            self._last_redraw = now
            return True
        return False

    # The stock hooks redraw on every batch (refresh_rate=1); a skipped call loses nothing, as the next one sets the
    # bar to the current count.
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(batch_idx + 1, self.train_progress_bar.total):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(batch_idx + 1, self.val_progress_bar.total):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
