"""Callbacks: sample grids, preemption checkpoints, compilation, memory format and a throttled progress bar."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lightning_gen.images import image_grid, save_png


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


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM (what a scheduler sends before it kills a job) save a checkpoint and stop cleanly.

    The checkpoint is written at the end of the training batch during which the signal arrived, so its state is
    consistent; resume with ``fit --ckpt_path <dirpath>/preempted.ckpt``. Under several processes the ranks agree
    on the signal every ``sync_every_n_steps`` steps (one tiny all-reduce), so all of them save and stop together
    even when only one was signalled.

    Args:
        dirpath: where ``preempted.ckpt`` goes (default: the ModelCheckpoint folder, else ``<root>/checkpoints``).
        sync_every_n_steps: how often ranks compare notes when there are several.
    """

    def __init__(self, dirpath: str | None = None, sync_every_n_steps: int = 10) -> None:
        self.dirpath, self.sync_every_n_steps = dirpath, sync_every_n_steps
        self.signalled = False
        self._previous_handler = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import signal
        import threading

        if stage == "fit" and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        self.signalled = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import signal

        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def checkpoint_path(self, trainer: L.Trainer) -> Path:
        if self.dirpath:
            return Path(self.dirpath) / "preempted.ckpt"
        if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.dirpath:
            return Path(trainer.checkpoint_callback.dirpath) / "preempted.ckpt"
        return Path(trainer.default_root_dir) / "checkpoints" / "preempted.ckpt"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        signalled = self.signalled
        if trainer.world_size > 1:
            if trainer.global_step % self.sync_every_n_steps:
                return
            signalled = trainer.strategy.reduce_boolean_decision(signalled, all=False)
        if signalled:
            path = self.checkpoint_path(trainer)
            trainer.save_checkpoint(path)
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(f"SIGTERM received: saved {path} at step {trainer.global_step} and stopped; "
                           f"resume with `fit ... --ckpt_path {path}`")
            trainer.should_stop = True


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
        for child in pl_module.children():
            if any(True for _ in child.parameters()):
                child.compile(mode=self.mode, dynamic=self.dynamic)


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

    def _should_update(self, current: int, total: int) -> bool:
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if current == total or now - self._last_redraw >= self.min_interval:
            self._last_redraw = now
            return True
        return False
