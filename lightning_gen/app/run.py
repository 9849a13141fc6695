"""A training run on disk, opened once: its folder, checkpoint, ``config.yaml`` and the data module the config names.

``python -m lightning_gen fit`` writes one run folder, ``<default_root_dir>/lightning_logs/version_N/``, whatever its
loggers: ``config.yaml``, ``checkpoints/*.ckpt``, ``samples/``, ``pictures/`` and, under W&B, ``wandb/`` and
``wandb_run.json`` (:func:`lightning_gen.app.trainer_cli.place_run`; the names: :mod:`lightning_gen.loggers`).
:meth:`Run.open` takes the run folder or one of its checkpoints. The checkpoint is read once, weights-only
(:func:`read_checkpoint`, the one way every command reads one): a file carrying pickled code is refused unexecuted.
The model and the data module are both rebuilt the way LightningCLI built them for ``fit``, through jsonargparse
from their class paths and arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentParser

from lightning_gen.compat import checkpoint_hparams_class, instantiate_class_path
from lightning_gen.data import ImageDataModule  # the package: its data modules resolve by short name ("MNIST")
from lightning_gen.loggers import checkpoint_run_folder, read_wandb_run_file, run_folder_name
from lightning_gen.models.base import GenerativeModule

#: Preferred checkpoint names in ``<run>/checkpoints/``; otherwise the newest ``*.ckpt`` there.
PREFERRED_CHECKPOINTS = ("best.ckpt", "last.ckpt")


class CheckpointError(ValueError):
    """A path that is not a loadable lightning_gen checkpoint or run folder."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """The path, or the checkpoint a run folder should hold, does not exist."""


class DataConfigError(ValueError):
    """The run does not say which data module it was trained on, or the data module cannot be built as asked."""


def run_name(checkpoint: Path) -> str:
    """A short, file-name-safe name: :func:`~lightning_gen.loggers.run_folder_name` of the run folder, ``_<stem>``
    added for a checkpoint other than ``best`` or ``last`` (the ones a run folder opens with); a checkpoint outside
    a ``checkpoints/`` folder is named by its stem."""
    checkpoint = checkpoint.resolve()
    if checkpoint.parent.name != "checkpoints":
        name = checkpoint.stem
    else:
        name = run_folder_name(checkpoint_run_folder(checkpoint))
        if checkpoint.name not in PREFERRED_CHECKPOINTS:
            name += f"_{checkpoint.stem}"
    return "".join(c if c.isalnum() or c in "-_." else "" if c == "=" else "_" for c in name)


def choose_checkpoint(folder: Path) -> Path:
    """The checkpoint of a run folder: ``best.ckpt`` > ``last.ckpt`` > the newest ``*.ckpt`` in ``checkpoints/``."""
    candidates = folder / "checkpoints"
    for name in PREFERRED_CHECKPOINTS:
        if (candidates / name).is_file():
            return candidates / name
    found = sorted(candidates.glob("*.ckpt"), key=lambda p: p.stat().st_mtime) if candidates.is_dir() else []
    if not found:
        raise CheckpointNotFound(f"run folder {folder} holds no checkpoint: expected {candidates}/best.ckpt, "
                                 "last.ckpt or another *.ckpt (written by `python -m lightning_gen fit`)")
    return found[-1]


def run_checkpoints(root: Path) -> list[Path]:
    """``*.ckpt`` files in the ``checkpoints/`` folders of a run root or run folder (as deep as Lightning's loggers
    put them), newest first."""
    found = {p for pattern in ("checkpoints/*.ckpt", "*/checkpoints/*.ckpt", "*/*/checkpoints/*.ckpt")
             for p in root.glob(pattern) if p.is_file()}
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def runs_like(path: Path) -> list[Path]:
    """Checkpoints of the runs ``path`` may have meant, where its run root does not exist or holds none: under the
    deepest existing folder above it, ``<that>/<name>_*`` (a ``--run_name`` variant such as dcgan_mnist_5min) and
    ``<that>/*/<name>`` (``make demo`` trains into runs/demo/<config>), ``<name>`` being the first missing or empty
    part of ``path``. Newest first."""
    parts = path.parts
    for i in range(len(parts) - 1, 0, -1):
        base, name = Path(*parts[:i]), parts[i]
        if base.is_dir() and not run_checkpoints(base / name):
            roots = [p for p in (*base.glob(f"{name}_*"), *base.glob(f"*/{name}")) if p.is_dir()]
            found = [c for root in roots for c in run_checkpoints(root)]
            if found:
                return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
    return []


def listing(paths: list[Path], limit: int = 5) -> str:
    """``paths`` one per line, indented, relative to the working directory where they lie below it."""
    shown = "\n".join(f"  {shown_path(p)}" for p in paths[:limit])
    return shown + (f"\n  ... and {len(paths) - limit} more" if len(paths) > limit else "")


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def missing_path_message(path: Path) -> str:
    """Why ``path`` opens no run, with the checkpoints it may have meant: a misspelt file beside its siblings
    (did you mean last.ckpt?), else the runs :func:`runs_like` finds."""
    from lightning_gen.app.cli import closest

    head = f"checkpoint {path} does not exist" if path.suffix == ".ckpt" else \
        f"{path} does not exist: give a run folder or a .ckpt file"
    siblings = sorted(path.parent.glob("*.ckpt")) if path.suffix == ".ckpt" and path.parent.is_dir() else []
    if siblings:
        guess = closest(path.name, [p.name for p in siblings])
        meant = f"; did you mean {shown_path(path.parent / guess)}?" if guess else ""
        return f"{head}{meant}\nCheckpoints in {shown_path(path.parent)}:\n{listing(siblings)}"
    elsewhere = runs_like(path)
    if elsewhere:
        return f"{head}\nCheckpoints of runs with a similar name, newest first:\n{listing(elsewhere)}"
    return head


def _build_datamodule(section: dict | None, data: str | None, overrides: dict[str, Any]) -> ImageDataModule:
    """A config's ``data:`` section (``class_path`` + ``init_args``) with ``data`` and ``overrides`` layered on top,
    parsed and instantiated by jsonargparse as LightningCLI does for ``--config run.yaml --data X``."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(ImageDataModule, "data", fail_untyped=False)
    layers = [section] if section else []
    if data is not None or overrides:
        layers.append({"init_args": overrides} | ({"class_path": data} if data is not None else {}))
    namespace = None
    try:
        for layer in layers:
            namespace = parser.parse_object({"data": layer}, namespace=namespace)
        return parser.instantiate(namespace).data
    except argparse.ArgumentError as e:
        raise DataConfigError(f"cannot build data module {data or section['class_path']!r} with {overrides} (name a "
                              f"class of lightning_gen.data such as MNIST or Digits, or a full import path): {e}") from e


def read_checkpoint(path: Path) -> tuple[bytes, dict]:
    """``(the file's bytes, the checkpoint dict)`` of a ``torch.save`` file, read weights-only: the one way every
    command opens a checkpoint. A file carrying pickled code is refused unexecuted (:class:`CheckpointError`)."""
    data = path.read_bytes()
    if not (data.startswith(b"PK\x03\x04") or data[:1] == b"\x80"):  # torch.save's zip archive, or a pickle
        raise CheckpointError(f"{path} is not a checkpoint: not a file written by torch.save "
                              "(write checkpoints with `python -m lightning_gen fit`)")
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds pickled objects other than tensors and plain data, so it was refused unexecuted "
            "(weights-only loading). Only load checkpoints you trust with torch.load(weights_only=False). "
            f"Detail: {e}") from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated, or not a torch file?): {e}") from e
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not a lightning_gen checkpoint: it holds a {type(checkpoint).__name__}")
    return data, checkpoint


class Run:
    """A training run on disk: its folder, checkpoint(s), config.yaml, and the data module it names."""

    def __init__(self, folder: Path, checkpoint: Path) -> None:
        self.folder, self.checkpoint = folder, checkpoint

    @classmethod
    def open(cls, path: str | os.PathLike) -> Run:
        """A run folder (its checkpoint: ``best.ckpt`` > ``last.ckpt`` > the newest ``*.ckpt`` in
        ``checkpoints/``) or a checkpoint file."""
        path = Path(path)
        if path.is_dir():
            return cls(path, choose_checkpoint(path))
        if path.is_file():
            return cls(checkpoint_run_folder(path), path)
        raise CheckpointNotFound(missing_path_message(path))

    def __repr__(self) -> str:
        return f"Run({str(self.checkpoint)!r})"

    @cached_property
    def name(self) -> str:
        return run_name(self.checkpoint)

    @cached_property
    def config(self) -> dict | None:
        """The run's ``config.yaml`` (in the run folder, else next to the checkpoint), or None."""
        import yaml

        for folder in (self.folder, self.checkpoint.parent):
            path = folder / "config.yaml"
            if path.is_file():
                config = yaml.safe_load(path.read_text())
                return config if isinstance(config, dict) else None
        return None

    @cached_property
    def wandb_run(self) -> dict | None:
        """The W&B run that logged this training run (``<run folder>/wandb_run.json``: id, project, entity, name,
        mode, its offline folder relative to the run folder, url), or None for a run trained without W&B."""
        return read_wandb_run_file(self.folder)

    @cached_property
    def _contents(self) -> tuple[str, dict]:
        """``(sha256, checkpoint dict without optimizer state)`` from one read of the file."""
        data, checkpoint = read_checkpoint(self.checkpoint)
        # Optimizer states can be as large as the weights and nothing here uses them.
        kept = {k: v for k, v in checkpoint.items() if k not in ("optimizer_states", "lr_schedulers")}
        return hashlib.sha256(data).hexdigest(), kept

    @property
    def checkpoint_sha256(self) -> str:
        return self._contents[0]

    @cached_property
    def meta(self) -> dict:
        """What the checkpoint says about training: epoch, global step, hyperparameters, training time (s)."""
        checkpoint = self._contents[1]
        timer = (checkpoint.get("callbacks") or {}).get("Timer") or {}
        train_time = (timer.get("time_elapsed") or {}).get("train")
        return {"epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step"),
                "hyper_parameters": dict(checkpoint.get("hyper_parameters") or {}),
                "train_time_s": float(train_time) if train_time else None}

    def model(self, map_location: str | torch.device = "cpu") -> GenerativeModule:
        """A fresh copy of the checkpointed model, in eval mode on ``map_location``."""
        checkpoint = self._contents[1]
        class_path, init_args = checkpoint_hparams_class(self.meta["hyper_parameters"])
        if class_path is None or "state_dict" not in checkpoint:
            raise CheckpointError(f"{self.checkpoint} is not a lightning_gen checkpoint: it names no model class "
                                  "(write checkpoints with `python -m lightning_gen fit`)")
        model = instantiate_class_path(GenerativeModule, class_path, init_args)
        model.load_state_dict(checkpoint["state_dict"])
        return model.to(map_location).eval()

    def datamodule(self, *, data: str | None = None, root: str | None = None, **init_args: Any) -> ImageDataModule:
        """The data module the run's config.yaml names, built as LightningCLI built it for ``fit``; ``data`` (a class
        of :mod:`lightning_gen.data` or a full import path), ``root`` and ``init_args`` override the config's. When
        ``data`` names another class, the config's arguments that the new class accepts carry over."""
        section = (self.config or {}).get("data")
        if data is None and not section:
            raise DataConfigError(f"{self.checkpoint}: no config.yaml in {self.folder} says which data the run was "
                                  "trained on; pass --data CLASS (e.g. --data BinarizedMNIST)")
        return _build_datamodule(section, data, {**init_args, **({"root": root} if root is not None else {})})


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """The model of a checkpoint or run folder, in eval mode (``Run.open(path).model(map_location)``)."""
    return Run.open(path).model(map_location)
