"""The run folder, and Weights & Biases logging that never prompts or hangs.

A training run writes one folder, ``<default_root_dir>/lightning_logs/version_N/`` (``lightning_gen fit`` makes it
one folder whatever the loggers: :func:`lightning_gen.app.trainer_cli.place_run`): ``config.yaml``, ``checkpoints/``,
``samples/``, ``pictures/`` and, under W&B, ``wandb/`` and ``wandb_run.json``. :func:`run_folder` finds it from a
Trainer, :func:`checkpoint_run_folder` from a checkpoint, and :func:`run_folder_name` names it. W&B runs offline
unless credentials and a terminal say otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from lightning_gen.compat import wandb_logger_place, wandb_run_if_started


def run_folder(trainer) -> Path:
    """The run folder of a Trainer: the first logger's ``log_dir`` (CSV, TensorBoard) or ``save_dir`` (W&B, which
    :meth:`WandbLogger.place` points at the run folder), else ``default_root_dir``. Unlike ``trainer.log_dir`` it does
    not broadcast, so rank-0-only code may ask."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    first = trainer.loggers[0]
    folder = first.log_dir if isinstance(first, (TensorBoardLogger, CSVLogger)) else first.save_dir
    return Path(folder or trainer.default_root_dir)


#: Every scalar a run logs, one row per logging step, in the run folder whatever the loggers (the curve tools read it).
METRICS_CSV = "metrics.csv"


def metrics_csv_logger(folder: str | os.PathLike) -> CSVLogger:
    """A CSV logger writing ``<folder>/metrics.csv`` (and ``hparams.yaml``) directly into the run folder: the
    offline record of every logged scalar that ``lightning_gen fit`` adds beside W&B or TensorBoard."""
    return CSVLogger(save_dir=str(folder), name="", version="")


def checkpoint_run_folder(checkpoint: Path) -> Path:
    """The run folder of a checkpoint: ``<run>/checkpoints/x.ckpt`` -> ``<run>`` (where LightningCLI saves
    config.yaml); a checkpoint elsewhere -> its own folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def run_folder_name(folder: Path) -> str:
    """The name of a run folder: ``<root>`` for ``<root>/lightning_logs/version_0``, ``<root>_version_N`` for later
    versions, else the folder's own name (also the W&B display name of the run)."""
    if folder.name.startswith("version_") and folder.parent.name == "lightning_logs":
        return folder.parent.parent.name + ("" if folder.name == "version_0" else f"_{folder.name}")
    return folder.name


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_wandb_mode() -> str:
    """``$WANDB_MODE`` when set; else "online" with credentials, else "offline" (W&B would otherwise prompt)."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if _has_wandb_credentials() else "offline"


class WandbLogger(_WandbLogger):
    """Lightning's ``WandbLogger``, choosing the mode by :func:`resolve_wandb_mode` and saying how to sync.

    Without credentials (and ``WANDB_MODE`` unset) the run is written offline under ``save_dir/wandb`` and the
    end of training prints the ``wandb sync`` command that uploads it later.
    """

    def __init__(self, *args, **kwargs) -> None:
        if kwargs.get("mode") is None:  # the CLI passes every wandb.init option, unset ones as None
            kwargs["mode"] = "offline" if kwargs.get("offline") else resolve_wandb_mode()
        if kwargs["mode"] == "offline" and not os.environ.get("WANDB_MODE"):
            rank_zero_info("W&B: no credentials found (WANDB_API_KEY or `wandb login`); logging offline.")
        os.environ.setdefault("WANDB_SILENT", "true")
        # Never block on a prompt: with no terminal W&B must not ask for a key.
        if not sys.stdin or not sys.stdin.isatty():
            os.environ.setdefault("WANDB_DISABLE_CODE", "true")
        super().__init__(*args, **kwargs)
        # Lightning passes anonymous=None to wandb.init, on which recent W&B warns "The anonymous setting has no
        # effect" in every run; unset, it says nothing.
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        self._mode = kwargs["mode"]

    def place(self, run_folder: str | os.PathLike, name: str | None = None) -> None:
        """Write the W&B files into ``run_folder`` (``<run folder>/wandb/``) and the run's identity into
        ``<run folder>/wandb_run.json`` once it starts; ``name`` is the display name unless the config gave one.
        The CLI calls this before training, so checkpoints, config.yaml, samples and W&B share one folder."""
        # Absolute: W&B's service process, which writes the files, may have another working directory.
        wandb_logger_place(self, str(Path(run_folder).resolve()), name)

    @property
    def experiment(self):
        run = super().experiment
        if not getattr(self, "_run_file_written", False) and isinstance(getattr(run, "id", None), str):
            self._run_file_written = True
            write_wandb_run_file(Path(self.save_dir), run, self._mode)
        return run

    def finalize(self, status: str) -> None:
        super().finalize(status)
        run = wandb_run_if_started(self)
        if self._mode == "offline" and run is not None:
            rank_zero_info(f"W&B run saved offline in {run.dir}; upload it with:\n  wandb sync {Path(run.dir).parent}")


#: ``<run folder>/wandb_run.json``: which W&B run holds this run folder's logs (read by ``benchmark --wandb``).
WANDB_RUN_FILE = "wandb_run.json"


def write_wandb_run_file(run_folder: Path, run, mode: str) -> Path:
    """Record ``run``'s id, project, entity, mode, offline folder and URL in ``run_folder/wandb_run.json``."""
    import json

    info = {"id": run.id, "project": run.project, "entity": run.entity or None, "name": run.name, "mode": mode,
            "dir": _relative_to(Path(run.dir).parent, run_folder), "url": None if mode == "offline" else run.url}
    path = run_folder / WANDB_RUN_FILE
    run_folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=1) + "\n")
    return path


def _relative_to(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` where it lies inside (the run folder can then move), else absolute."""
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


def read_wandb_run_file(run_folder: str | os.PathLike) -> dict | None:
    """What :func:`write_wandb_run_file` recorded for ``run_folder``, or None where it logged no W&B run."""
    import json

    path = Path(run_folder) / WANDB_RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def sync_command(run_folder: Path) -> str:
    """The command that uploads every offline piece of the run folder's W&B run (training and any resumed
    benchmark): W&B syncs pieces with one run id in order of their start time."""
    return f"wandb sync {run_folder / 'wandb' / 'offline-run-*'}"
