"""Board rows and their order: the rankable metrics, one :class:`Entry` per run or published number, ranking.

The board has one section per ``dataset_id`` (numbers of different data sets, static and dynamic binarized MNIST
among them, are never ranked against each other), and each section is ranked by its primary metric
(:func:`choose_metric`: the likelihood wherever an entry has one, else FID), best first with competition ranks
(:func:`rank`); the HTML page and the W&B table both rank this way. A run's entry also carries the sample grids its
:class:`~lightning_gen.callbacks.SampleGrid` saved during training (:func:`training_grids`), found from the record's
checkpoint path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_gen.leaderboard.references import published_entries

__all__ = ["LIKELIHOOD_METRICS", "METRICS", "Entry", "Metric", "build_entries", "choose_metric", "rank",
           "ranked_by_dataset", "training_grids"]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    lower_is_better: bool
    kind: str  # "quality", "likelihood", "probe", "speed": decides which protocol fields are printed beside it
    std_key: str | None = None


#: Rankable metrics, in the order their columns appear.
METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("fid", "FID", True, "quality"),
    Metric("kid_mean", "KID ×10³", True, "quality", std_key="kid_std"),  # printed ×1000: formatting.DISPLAY_SCALE
    Metric("is_mean", "IS", False, "quality", std_key="is_std"),
    Metric("nll_bpd", "NLL (bits/dim)", True, "likelihood"),
    Metric("nll_nats", "NLL (nats)", True, "likelihood"),
    Metric("probe_acc", "Probe acc.", False, "probe"),
    Metric("samples_per_s", "Samples/s", False, "speed"),
)}
#: The likelihood metrics: a section where any entry has one is ranked by one of them.
LIKELIHOOD_METRICS = tuple(k for k, m in METRICS.items() if m.kind == "likelihood")


@dataclass
class Entry:
    """One row of the board: a stored run, or a published number (``published=True``). ``dataset`` is the data
    module class, ``dataset_id`` the data set, which decides the board section."""

    model: str
    family: str
    dataset: str
    dataset_id: str
    metrics: dict[str, Any]
    published: bool = False
    run_name: str | None = None
    protocol: dict[str, Any] = field(default_factory=dict)  # a run's record protocol
    protocol_note: str | None = None  # a published row's protocol, as printed in the source
    source: str | None = None
    note: str | None = None
    record: dict[str, Any] | None = None
    sample_grid: Path | None = None
    training_grids: list[tuple[int, Path]] = field(default_factory=list)  # (global step, PNG), by step

    @property
    def label(self) -> str:
        return self.run_name or self.model

    def value(self, metric: str) -> float | None:
        v = self.metrics.get(metric)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _exists(path: Path, kind: str) -> bool:
    """``path.is_file()`` / ``is_dir()``, false for a path the OS refuses (too long, no permission): a record's
    paths come from other machines."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except OSError:
        return False


def _resolve(path: str | None, roots: Sequence[Path], kind: str = "file") -> Path | None:
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

    ``SampleGrid`` writes ``<run dir>/samples/step_XXXXXXX.png``. The run dir is the checkpoint's run folder
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
        found = _resolve(str(folder), roots, "dir")
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


def build_entries(records: Sequence[dict[str, Any]], *, include_published: bool = True,
                  roots: Sequence[str | Path] = ()) -> list[Entry]:
    """Board rows for ``records`` plus every published number.

    A relative sample-grid or checkpoint path is looked up from the working directory, then from each of
    ``roots``.
    """
    roots = [Path(r) for r in roots]
    entries = [
        Entry(model=r["model"], family=r["family"], dataset=r["dataset"], dataset_id=r["dataset_id"],
              metrics=dict(r.get("metrics") or {}), run_name=r["run_name"], protocol=dict(r.get("protocol") or {}),
              record=r,
              sample_grid=_resolve(r.get("sample_grid"), roots), training_grids=training_grids(r, roots))
        for r in records
    ]
    if include_published:
        entries += [Entry(model=p["model"], family=p["family"], dataset=p["dataset"], dataset_id=p["dataset_id"],
                          metrics=p["metrics"], published=True, protocol_note=p["protocol"], source=p["source"],
                          note=p["note"])
                    for p in published_entries()]
    return entries


def choose_metric(entries: Sequence[Entry], preferred: str | None = None) -> str | None:
    """The metric one data set's table (one ``dataset_id``) is ranked by: its primary metric.

    ``preferred`` if any row has it. Otherwise the likelihood wherever any row, run or published, reports one: the
    NLL that more rows report (bits/dim on a tie). Published likelihood tables carry no FID, so ranking such a data
    set by FID put a 1-epoch 191-nat VAE first and left the published 79-89-nat models unranked. Without a
    likelihood, FID, KID or IS (first present), then probe accuracy, then sampling speed. ``None`` if no row has
    any metric.
    """
    def count(key: str) -> int:
        return sum(e.value(key) is not None for e in entries)

    if preferred is not None:
        if preferred not in METRICS:
            raise ValueError(f"unknown metric {preferred!r}; expected one of {tuple(METRICS)}")
        if count(preferred):
            return preferred
    if count("nll_bpd") or count("nll_nats"):
        return "nll_bpd" if count("nll_bpd") >= count("nll_nats") else "nll_nats"
    for key in ("fid", "kid_mean", "is_mean"):
        if count(key):
            return key
    for key in ("probe_acc", "samples_per_s"):
        if count(key):
            return key
    return None


def rank(entries: Sequence[Entry], metric: str) -> list[tuple[int | None, Entry]]:
    """Entries best first by ``metric`` with competition ranks (1, 2, 2, 4); rows without it last, unranked."""
    sign = 1.0 if METRICS[metric].lower_is_better else -1.0
    scored = [e for e in entries if e.value(metric) is not None]
    scored.sort(key=lambda e: sign * e.value(metric))  # stable: ties keep their order
    out: list[tuple[int | None, Entry]] = []
    for i, e in enumerate(scored):
        same_as_previous = i > 0 and e.value(metric) == scored[i - 1].value(metric)
        out.append((out[-1][0] if same_as_previous else i + 1, e))
    out += [(None, e) for e in entries if e.value(metric) is None]
    return out


def ranked_by_dataset(entries: Sequence[Entry], metric: str | None) -> list[tuple[int | None, Entry]]:
    """Every entry with its rank: dataset ids in alphabetical order, each ranked by :func:`choose_metric`."""
    out: list[tuple[int | None, Entry]] = []
    for dataset_id in sorted({e.dataset_id for e in entries}):
        group = [e for e in entries if e.dataset_id == dataset_id]
        key = choose_metric(group, metric)
        out += rank(group, key) if key else [(None, e) for e in group]
    return out
