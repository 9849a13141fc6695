"""Where a record's images are on this machine: its sample grid and the grids its run saved while it trained."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["resolve", "training_grids"]


def _exists(path: Path, kind: str) -> bool:
    """``path.is_file()`` / ``is_dir()``, false for a path the OS refuses (too long, no permission): a record's
    paths come from other machines."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except OSError:
        return False


def resolve(path: str | None, roots: Sequence[Path], kind: str = "file") -> Path | None:
    if not path:
        return None
    p = Path(path)
    for candidate in [p] if p.is_absolute() else [p, *(root / p for root in roots)]:
        if _exists(candidate, kind):
            return candidate
    return None


_STEP_FILE = re.compile(r"step_(\d+)\.png")


def training_grids(record: dict[str, Any], roots: Sequence[Path] = ()) -> list[tuple[int, Path]]:
    """The ``(step, path)`` of every grid :class:`~lightning_gen.callbacks.SampleGrid` saved in the record's run,
    by step; empty if none is found.

    ``SampleGrid`` writes ``<run dir>/samples/step_<7-digit global step>.png``. The run dir is the checkpoint's run folder
    (``<run>/checkpoints/x.ckpt`` -> ``<run>``), or, under W&B, ``<default_root_dir>/wandb-<run id>`` where the
    checkpoint lies in ``.../<run id>/checkpoints``; a record whose ``sample_grid`` is itself one of these files
    names its folder directly. Relative paths are looked up as in :func:`build_entries`.
    """
    folders: list[str | Path] = []
    ckpt = record.get("checkpoint")
    if isinstance(ckpt, str) and ckpt:
        ckpt_path = Path(ckpt)
        run = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
        folders.append(run / "samples")
        trainer = (record.get("config") or {}).get("trainer")
        root = trainer.get("default_root_dir") if isinstance(trainer, dict) else None
        if isinstance(root, str) and root and run.name:
            folders.append(Path(root) / f"wandb-{run.name}" / "samples")
    grid = record.get("sample_grid")
    if isinstance(grid, str) and _STEP_FILE.fullmatch(Path(grid).name) and Path(grid).parent.name == "samples":
        folders.append(Path(grid).parent)
    for folder in folders:
        found = resolve(str(folder), roots, "dir")
        if found is None:
            continue
        try:
            grids = sorted((int(m.group(1)), f) for f in found.iterdir()
                           if (m := _STEP_FILE.fullmatch(f.name)) and f.is_file())
        except OSError:
            continue
        if grids:
            return grids
    return []
