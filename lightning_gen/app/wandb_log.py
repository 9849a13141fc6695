"""Benchmark results on the training run's own W&B run."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from lightning_gen.images import image_grid

def log_wandb(record: dict, grid: Tensor | None, *, project: str = "lightning_gen",
              run_folder: str | os.PathLike | None = None) -> str | None:
    """Add the record to the W&B run of the training run it measured: ``benchmark/<metric>`` in the run's summary,
    the record as a one-row table (``benchmark/table``) and the sample grid (``benchmark/samples``), also in the
    summary (an offline resume cannot know the run's last step, and history rows below it are dropped on sync).

    The run is the one ``<run folder>/wandb_run.json`` names (written by ``fit`` under W&B), resumed with
    ``resume="allow"`` and its files in the run folder, in the mode :func:`resolve_wandb_mode` picks; a run trained
    without W&B gets a new W&B run named after it. ``run_folder`` defaults to the checkpoint's. Uses the active
    run when there is one. Returns where to see it: the run's URL online; offline, :func:`offline_location`.
    """
    import wandb

    from lightning_gen.loggers import checkpoint_run_folder
    from lightning_gen.loggers import read_wandb_run_file, resolve_wandb_mode

    os.environ.setdefault("WANDB_SILENT", "true")
    folder = Path(run_folder) if run_folder is not None else checkpoint_run_folder(Path(record["checkpoint"]))
    own = wandb.run is None
    if own:
        folder.mkdir(parents=True, exist_ok=True)
        trained = read_wandb_run_file(folder)
        where = ({"id": trained["id"], "project": trained["project"], "entity": trained.get("entity"),
                  "resume": "allow"} if trained else {"project": project, "name": record["run_name"]})
        run = wandb.init(dir=str(folder.resolve()), mode=resolve_wandb_mode(), **where)
    else:
        run = wandb.run
    run.config.update({"benchmark": {"protocol": record["protocol"], "checkpoint": record["checkpoint"]}},
                      allow_val_change=True)
    columns = ["run_name", "model", "family", "dataset", *record["metrics"], "extractor", "num_samples",
               "nll_estimator"]
    row = [record["run_name"], record["model"], record["family"], record["dataset"], *record["metrics"].values(),
           record["protocol"]["extractor"], record["protocol"]["num_samples"], record["protocol"]["nll_estimator"]]
    summary = {f"benchmark/{k}": v for k, v in record["metrics"].items() if v is not None}
    summary["benchmark/table"] = wandb.Table(columns=columns, data=[row])
    if grid is not None:
        array = image_grid(grid)  # uint8: W&B would cast a float grid straight to uint8
        summary["benchmark/samples"] = wandb.Image(array[..., 0] if array.shape[-1] == 1 else array,
                                                   caption=record["run_name"])
    run.summary.update(summary)
    location = offline_location(Path(run.dir).parent, folder) if run.offline else run.url
    if own:
        run.finish()
    return location


#: How a record's ``wandb_url`` names a run kept offline (the dashboard shows the command).
OFFLINE_PREFIX = "offline: "


def offline_location(offline_dir: Path, run_folder: Path) -> str:
    """``offline: <W&B folder> | upload: wandb sync <run folder>/wandb/offline-run-*``, absolute paths."""
    from lightning_gen.loggers import sync_command

    return f"{OFFLINE_PREFIX}{offline_dir.resolve()} | upload: {sync_command(run_folder.resolve())}"


def wandb_note(location: str | None) -> str:
    """Where ``--wandb`` put a record: the run's URL, or the offline folder and the command that uploads it."""
    if not location:
        return "W&B: nothing logged"
    if location.startswith(OFFLINE_PREFIX):
        folder, _, upload = location[len(OFFLINE_PREFIX):].partition(" | upload: ")
        return f"W&B (offline): results saved in {folder}\n  upload them with: {upload}"
    return f"W&B: results logged to {location}"
