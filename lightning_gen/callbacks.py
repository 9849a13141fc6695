"""Callbacks: sample grids, latent-space pictures, preemption checkpoints, compilation, memory format, a
throttled progress bar and the reason training stopped."""

from __future__ import annotations

import re
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lightning_gen.images import image_grid, save_png
from lightning_gen.pictures import latent_pictures, save_latent_pictures


class SampleGrid(L.Callback):
    """Samples ``num_samples`` images with a fixed seed, saves ``<run dir>/samples/step_<7-digit global step>.png`` and logs the
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
        """The run's own folder (:func:`run_folder`)."""
        return run_folder(trainer)

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
    ``<run dir>/pictures/<name>_step_<7-digit global step>.png`` and logs them to every attached logger (W&B, TensorBoard).
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
        self.last_paths = save_latent_pictures(grids, run_folder(trainer) / "pictures", f"_step_{step:07d}")
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


class StopReason(L.Callback):
    """Say why ``fit`` stopped before its ``max_epochs`` / ``max_steps`` budget, and how to resume.

    Lightning stops quietly on ``--trainer.max_time`` (its Timer's note is drawn over by the progress bar) and on a
    ``should_stop`` set by a callback; this prints one line at the end of ``fit`` naming the cause, the epoch and
    step reached and the checkpoint to resume from. ``lightning_gen fit`` adds it to every run. Resuming after
    ``max_time`` needs a larger ``max_time``: the time already spent is restored with the checkpoint and counts.
    """

    def __init__(self) -> None:
        self.message: str | None = None

    @staticmethod
    def reason(trainer: L.Trainer) -> str | None:
        """Why training stopped early, or None where it ran its budget (or was not stopped by a callback)."""
        from lightning.pytorch.callbacks import Timer

        if not trainer.should_stop:
            return None
        if any(isinstance(c, PreemptionCheckpoint) and (c.signalled or c.requeue_requested) for c in trainer.callbacks):
            return None  # PreemptionCheckpoint has said so, with its own checkpoint to resume from
        for timer in (c for c in trainer.callbacks if isinstance(c, Timer)):
            remaining = timer.time_remaining()
            if remaining is not None and remaining <= 0:
                total = int(round(timer.time_elapsed() + remaining))
                days, rest = divmod(total, 86400)
                limit = f"{days:02d}:{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
                return f"reached --trainer.max_time {limit}"
        for stopper in trainer.early_stopping_callbacks:
            if stopper.stopped_epoch or stopper.stopping_reason_message:
                return f"early stopping ({stopper.stopping_reason_message or stopper.monitor})".replace("\n", " ")
        return "trainer.should_stop was set by the model or a callback"

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        reason = self.reason(trainer)
        if reason is None:
            return
        saved = latest_checkpoint(trainer)
        resume = ""
        if saved:
            resume = f"; resume with --ckpt_path {saved}"
            if reason.startswith("reached --trainer.max_time"):
                resume += " and a larger --trainer.max_time (the time already spent counts)"
        self.message = (f"Training stopped: {reason} after {trainer.current_epoch} epochs "
                        f"({trainer.global_step:,} steps){resume}")
        rank_zero_info(self.message)


class WallClock(L.Callback):
    """Log ``time/train_minutes`` at every validation: wall-clock minutes of ``fit`` so far, validation included.

    Learning curves against time (``scripts/reproduce.py curve --x minutes``) need it: a CPU budget is stated in
    minutes, not steps. The count is saved in checkpoints, so a resumed stage continues it.
    """

    def __init__(self) -> None:
        self.before = 0.0  # minutes spent by the stages this run resumed from
        self.started: float | None = None

    def minutes(self) -> float:
        return self.before + (0.0 if self.started is None else (time.monotonic() - self.started) / 60)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.monotonic()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            pl_module.log("time/train_minutes", self.minutes(), rank_zero_only=True)

    def state_dict(self) -> dict:
        return {"minutes": self.minutes()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.before = float(state_dict["minutes"])


def latest_checkpoint(trainer: L.Trainer) -> str:
    """The checkpoint holding the newest training state, to resume from: the most recently written file among every
    ModelCheckpoint's ``last.ckpt`` and the files of those that monitor nothing (which keep the latest); "" if none.

    Not ``trainer.checkpoint_callback.last_model_path``: since Lightning 2.6 a ModelCheckpoint with a ``monitor``
    writes ``last.ckpt`` (``save_last``) only when it also saves a top-k file, so beside ``save_top_k: 1`` its
    ``last.ckpt`` is a copy of the best checkpoint, and resuming from it silently drops the epochs after the best
    one. The configs therefore keep the latest state with a second ModelCheckpoint, ``{filename: last}``.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    paths = [path for callback in trainer.callbacks if isinstance(callback, ModelCheckpoint)
             for path in (callback.last_model_path, callback.best_model_path if callback.monitor is None else "")
             if path and Path(path).is_file()]
    return max(paths, key=lambda path: Path(path).stat().st_mtime_ns, default="")


def run_folder(trainer: L.Trainer) -> Path:
    """The run folder everything of a training run goes to (``lightning_gen fit`` makes it one folder whatever the
    loggers: :func:`lightning_gen.app.cli.place_run`): the first logger's ``log_dir`` (CSV, TensorBoard) or
    ``save_dir`` (W&B), else ``default_root_dir``. Unlike ``trainer.log_dir`` it does not broadcast, so rank-0-only
    code may ask."""
    from lightning.pytorch.loggers import CSVLogger

    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    first = trainer.loggers[0]
    folder = first.log_dir if isinstance(first, (TensorBoardLogger, CSVLogger)) else first.save_dir
    return Path(folder or trainer.default_root_dir)


class SampleMetrics(L.Callback):
    """FID and KID (and IS where the extractor has logits) of ``num_samples`` fresh samples against the data
    module's ``split`` (validation by default: choosing checkpoints by test-set FID would leak the test set), at the
    end of every ``every_n_epochs``-th validation epoch, logged as ``val/fid``, ``val/kid`` and ``val/is``, so a
    ModelCheckpoint can keep the best checkpoint by sample quality (``monitor: val/fid``) and every logger draws the
    curve.

    Samples are drawn the way the benchmark draws them (:mod:`lightning_gen.evaluation`): chunk ``c`` from a
    generator seeded with ``chunk_seed(seed, c)``, class labels ``index % num_classes`` for a conditional model,
    chunks dealt round-robin to the ranks, features gathered and put back in sample order, so 1 or N processes give
    the same numbers. The reference statistics of the split are cached (:mod:`lightning_gen.metrics.stats_cache`)
    under a key holding a hash of the split's images. The numbers are for following training and picking a
    checkpoint; ``lightning-gen benchmark`` (10,000 samples against the test split) is the one to report, as FID
    from fewer samples is biased upwards.

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
        self.seconds = 0.0  # wall time of all measurements so far (this process)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning_gen.metrics.features import get_extractor

        datamodule = trainer.datamodule
        name = self.extractor_name or getattr(datamodule, "default_extractor", None)
        if name is None:
            raise ValueError("SampleMetrics: name an extractor (the data module has no default_extractor)")
        self.extractor = get_extractor(name).eval()

    def due(self, trainer: L.Trainer) -> bool:
        return (not trainer.sanity_checking) and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.due(trainer):
            return
        start = time.perf_counter()
        n = min(self.num_samples, 4) if trainer.fast_dev_run else self.num_samples
        results = self.measure(trainer, pl_module, n)
        results = trainer.strategy.broadcast(results)  # rank 0 scored them; every rank logs the same values
        for name, value in results.items():
            pl_module.log(f"val/{name}", value, on_epoch=True, sync_dist=False)
        self.last = results
        self.seconds += time.perf_counter() - start

    def reference(self, datamodule):
        """The split's reference statistics (features kept, for KID), through the stats cache."""
        import hashlib

        from lightning_gen.metrics.stats_cache import reference_stats

        if self._reference is None:
            images = datamodule.datasets[self.split].images
            digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()[:12]
            self._reference = reference_stats(self.extractor, images, dataset=f"{type(datamodule).__name__}-{digest}",
                                              split=self.split, keep_features=True, batch_size=self.chunk_size)
        return self._reference

    @torch.no_grad()
    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule, n: int) -> dict[str, float]:
        """Draw this rank's chunks of the ``n`` samples, gather their features; FID/KID/IS on rank 0 (an empty
        dict elsewhere)."""
        import math

        from lightning_gen.evaluation import chunk_seed
        from lightning_gen.metrics.torchmetrics_wrappers import SampleFeatures

        device = pl_module.device
        self.extractor.to(device)
        was_training = pl_module.training
        pl_module.eval()
        indices, features, logits = [], [], []
        rank, world = trainer.global_rank, trainer.world_size
        for chunk in range(math.ceil(n / self.chunk_size))[rank::world]:
            index = torch.arange(chunk * self.chunk_size, min((chunk + 1) * self.chunk_size, n), device=device)
            labels = index % pl_module.num_classes if getattr(pl_module, "conditional", False) else None
            seed = chunk_seed(self.seed, chunk)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)  # for samplers that also draw from the global generator
                generator = torch.Generator(device=device).manual_seed(seed)
                images = pl_module.sample(len(index), generator=generator, labels=labels)
            out = self.extractor(images.to(device))
            indices.append(index)
            features.append(out.features.double())
            if out.logits is not None:
                logits.append(out.logits.double())
        pl_module.train(was_training)
        blank = self.extractor(torch.zeros(1, *pl_module.image_shape, dtype=torch.uint8, device=device))
        index = _gather_rows(indices, (), torch.long, device)
        feats = _gather_rows(features, blank.features.shape[1:], torch.float64, device)
        logits = None if blank.logits is None else _gather_rows(logits, blank.logits.shape[1:], torch.float64, device)
        if not trainer.is_global_zero:
            return {}
        order = index.argsort()  # sample order: KID subsets and IS splits must not depend on the number of ranks
        metric = SampleFeatures(reference=self.reference(trainer.datamodule), kid_subsets=self.kid_subsets,
                                kid_subset_size=self.kid_subset_size, seed=self.seed, prdc_k=0, sync_on_compute=False,
                                is_splits=10 if n >= 100 else 1, kid_feature_scale=self.extractor.kid_feature_scale)
        metric.update(features=feats[order].cpu(), logits=None if logits is None else logits[order].cpu())
        scores = metric.compute()
        out = {"fid": float(scores["fid"]), "kid": float(scores["kid_mean"])}
        if "is_mean" in scores:
            out["is"] = float(scores["is_mean"])
        return out


def _gather_rows(parts: list[torch.Tensor], shape, dtype: torch.dtype, device) -> torch.Tensor:
    """This rank's ``parts`` concatenated, then concatenated over all processes (row counts may differ)."""
    local = torch.cat(parts) if parts else torch.zeros(0, *shape, dtype=dtype, device=device)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
            or torch.distributed.get_world_size() == 1:
        return local
    from torchmetrics.utilities.distributed import gather_all_tensors

    return torch.cat(gather_all_tensors(local))
