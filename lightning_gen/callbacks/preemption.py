"""Stopping cleanly when a scheduler ends the job (a checkpoint on SIGTERM or SLURM's requeue signal), and resuming
from it exactly: every random stream a training step draws from is reseeded from the step's place in the run."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import torch

from lightning_gen.seeds import derive_seed, run_seed


def reseed(*parts: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy and Python's ``random`` from ``derive_seed(*parts)``."""
    import random

    import numpy as np

    seed = derive_seed(*parts)
    torch.manual_seed(seed)  # every CUDA device too (lazily, where CUDA is not initialised yet)
    np.random.seed(seed % 2**32)
    random.seed(seed)


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

    **Exact resume** (``exact=True``): before every training batch the global random streams of this process (torch
    on the CPU and on every CUDA device, numpy, Python's ``random``) are reseeded from ``(seed, rank, epoch,
    batch)``, the seed being ``seed_everything``'s. Dropout, a VAE's reparameterisation noise and anything else a
    step draws is then a function of the step's place in the run, the same in a run resumed from any checkpoint
    as in the uninterrupted one, on every rank, with no generator state to save or gather. (The data order and
    dynamic binarization are the training loader's, :class:`~lightning_gen.data.base.ResumableLoader`; the GAN's
    noise its own counter-based streams.) It changes which numbers a run draws, not how they are distributed.

    Args:
        dirpath: where ``preempted.ckpt`` goes (default: the ModelCheckpoint folder, else ``<root>/checkpoints``).
        sync_every_n_steps: how often ranks compare notes when there are several.
        exact: reseed the global random streams before every training batch, as above.
    """

    def __init__(self, dirpath: str | None = None, sync_every_n_steps: int = 10, exact: bool = True) -> None:
        if sync_every_n_steps < 1:
            raise ValueError(f"sync_every_n_steps must be >= 1, got {sync_every_n_steps}")
        self.dirpath, self.sync_every_n_steps, self.exact = dirpath, sync_every_n_steps, exact
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

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.exact:
            reseed(run_seed(), trainer.global_rank, trainer.current_epoch, batch_idx)

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
