"""Callbacks that shape a training run: compilation, memory format, a throttled progress bar, a line of the latest
validation metrics, the wall clock, and why training stopped (with the checkpoint to resume from)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_gen.callbacks.preemption import PreemptionCheckpoint


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
        if not compile_children(pl_module, mode=self.mode, dynamic=self.dynamic):
            rank_zero_warn(f"Compile: {type(pl_module).__name__} keeps its parameters on itself, in no submodule, so "
                           "nothing was compiled; this run trains as it would without configs/trainer/compile.yaml")


def compile_children(module: torch.nn.Module, mode: str = "default", dynamic: bool | None = None) -> int:
    """``torch.compile`` each child of ``module`` that has parameters, in place (what :class:`Compile` does); returns
    how many were compiled."""
    compiled = 0
    for child in module.children():
        if any(True for _ in child.parameters()):
            child.compile(mode=mode, dynamic=dynamic)
            compiled += 1
    return compiled


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


class ValidationSummary(L.Callback):
    """One line with the latest ``val/*`` metrics at the end of each validation of ``fit`` (rank 0), above the
    progress bar, which shows only the training losses: ``epoch 9, step 340: val/fid 3.21 · val/is 8.9 ·
    val/kid 0.0012``. ``lightning_gen fit`` adds it to every run."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        line = self.line(trainer)
        if line:
            bar = trainer.progress_bar_callback
            (bar.print if isinstance(bar, TQDMProgressBar) else print)(line)

    @staticmethod
    def line(trainer: L.Trainer) -> str | None:
        values = {name: float(value) for name, value in trainer.callback_metrics.items()
                  if name.startswith("val/") and torch.as_tensor(value).numel() == 1}
        if not values:
            return None
        shown = " · ".join(f"{name} {value:.4g}" for name, value in sorted(values.items()))
        return f"epoch {trainer.current_epoch}, step {trainer.global_step:,}: {shown}"


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

    @staticmethod
    def epochs_done(trainer: L.Trainer) -> str:
        """The training epochs run, a fraction where the run stopped inside one ("2.76 epochs"): not
        ``current_epoch``, which counts the interrupted epoch as done."""
        batches = trainer.num_training_batches
        done = trainer.fit_loop.epoch_loop.batch_progress.total.completed
        if not batches or math.isinf(batches):
            return f"{trainer.current_epoch} epochs"
        epochs = done / batches
        return f"{int(epochs)} epochs" if epochs == int(epochs) else f"{epochs:.2f} epochs"

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
        self.message = (f"Training stopped: {reason} after {self.epochs_done(trainer)} "
                        f"({trainer.global_step:,} steps){resume}")
        rank_zero_info(self.message)


class WallClock(L.Callback):
    """Log ``time/train_minutes`` at every validation: wall-clock minutes of ``fit`` so far, validation included.

    Learning curves against time (``lightning-gen curve --x minutes``) need it: a CPU budget is stated in
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
