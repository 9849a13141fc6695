"""The board as a ``wandb.Table``: the same rows and ranks as the HTML page, each run's sample grid as an image."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_gen.leaderboard.formatting import safe_url
from lightning_gen.leaderboard.ranking import METRICS, Entry, ranked_by_dataset

__all__ = ["WANDB_COLUMNS", "log_to_wandb", "wandb_table_rows"]

WANDB_COLUMNS = ("dataset_id", "dataset", "conditional", "rank", "published", "run_name", "model", "family", *METRICS, "is_std",
                 "kid_std", "num_params", "train_time_s", "protocol", "source", "wandb_url")


def wandb_table_rows(entries: Sequence[Entry], metric: str | None = None) -> list[list[Any]]:
    """The board as rows of :data:`WANDB_COLUMNS`, each section (dataset id, class-conditional or not) ranked as on
    the page."""
    rows = []
    for r, e in ranked_by_dataset(entries, metric):
        protocol = e.protocol_note if e.published else json.dumps(e.protocol, sort_keys=True)
        rows.append([e.dataset_id, e.dataset, e.conditional, r, e.published, e.run_name, e.model, e.family,
                     *(e.value(k) for k in METRICS), e.value("is_std"), e.value("kid_std"),
                     e.value("num_params"), (e.record or {}).get("train_time_s"), protocol, e.source,
                     safe_url((e.record or {}).get("wandb_url"))])
    return rows


def log_to_wandb(entries: Sequence[Entry], *, metric: str | None = None, project: str = "lightning_gen",
                 name: str | None = None, dir: str | Path | None = None) -> str:
    """Log the board as a ``wandb.Table`` under the key ``leaderboard``, with each run's sample grid as an image
    column; return the run's local folder.

    The run's mode follows ``WANDB_MODE`` as W&B always does: ``offline`` writes a local run that
    ``wandb sync`` can upload later, and needs no credentials; ``disabled`` logs nothing.
    """
    import wandb

    ranked = [e for _, e in ranked_by_dataset(entries, metric)]
    table = wandb.Table(columns=[*WANDB_COLUMNS, "samples"])
    for row, entry in zip(wandb_table_rows(entries, metric), ranked):
        image = wandb.Image(str(entry.sample_grid)) if entry.sample_grid is not None else None
        table.add_data(*row, image)
    run = wandb.init(project=project, name=name, job_type="leaderboard", dir=str(dir) if dir else None,
                     config={"metric": metric or "auto"})
    try:
        run.log({"leaderboard": table})
        run.summary["num_runs"] = sum(not e.published for e in entries)
        run_dir = str(Path(run.dir).parent) if run.dir else ""
    finally:
        run.finish()
    return run_dir
