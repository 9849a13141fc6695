"""Board rows and their order: the rankable metrics, one :class:`Entry` per run or published number, ranking.

The board has one section per ``dataset_id`` (numbers of different data sets, static and dynamic binarized MNIST
among them, are never ranked against each other), and each section is ranked by its primary metric
(:func:`choose_metric`: the likelihood wherever an entry has one, else FID), best first with competition ranks
(:func:`rank`); the HTML page and the W&B table both rank this way. Rows whose intervals (the value ± the spread the
board prints, :func:`spread`) overlap tie: they share a rank, so a difference inside the noise is not shown as an
order. A run's entry also carries the sample grids its :class:`~lightning_gen.callbacks.SampleGrid` saved during
training (:func:`training_grids`), found from the record's checkpoint path.

Seeds: runs whose records agree on the data set, model, family, protocol and config, all but the seed
(:func:`seed_group_key`: ``seed_everything`` and the keys that only say where a run wrote its files), are one
experiment; :func:`aggregate_seeds` makes them one row with the mean of each metric and its standard deviation over
the seeds (``ddof=1``), the single runs kept in :attr:`Entry.seeds`. Anchors: a record of family
:data:`ANCHOR_FAMILY` (``"data"``) scores real training images under the benchmark's protocol; it is listed in
order among the runs but never given a rank.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_gen.leaderboard.references import published_entries

__all__ = ["ANCHOR_FAMILY", "LIKELIHOOD_METRICS", "METRICS", "RUN_LOCATION_KEYS", "Entry", "Metric",
           "aggregate_seeds", "build_entries", "choose_metric", "interval", "rank", "ranked_by_dataset",
           "seed_group_key", "spread", "training_grids"]

#: The family of a real-data anchor record (the benchmark's ``--anchor``): listed, never ranked.
ANCHOR_FAMILY = "data"


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    lower_is_better: bool
    kind: str  # "quality", "likelihood", "probe", "speed": decides which protocol fields are printed beside it
    std_key: str | None = None


#: Rankable metrics, in the order their columns appear.
METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("fid", "FID", True, "quality", std_key="fid_std"),  # bootstrap or over --repeats draws
    Metric("kid_mean", "KID ×10³", True, "quality", std_key="kid_std"),  # printed ×1000: formatting.DISPLAY_SCALE
    Metric("is_mean", "IS", False, "quality", std_key="is_std"),
    Metric("nll_bpd", "NLL (bits/dim)", True, "likelihood", std_key="nll_bpd_se"),  # standard error
    Metric("nll_nats", "NLL (nats)", True, "likelihood", std_key="nll_nats_se"),
    Metric("probe_acc", "Probe acc.", False, "probe", std_key="probe_acc_se"),  # binomial standard error
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
    seeds: list["Entry"] = field(default_factory=list)  # the single runs of a seed aggregate (empty otherwise)
    seed_std: dict[str, float] = field(default_factory=dict)  # a metric's std over the seeds (ddof=1)

    @property
    def label(self) -> str:
        return self.run_name or self.model

    @property
    def anchor(self) -> bool:
        """A real-data row (family :data:`ANCHOR_FAMILY`): shown in order, never ranked."""
        return self.family == ANCHOR_FAMILY and not self.published

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
                  roots: Sequence[str | Path] = (), aggregate: bool = True) -> list[Entry]:
    """Board rows for ``records`` plus every published number; with ``aggregate``, runs that differ only in their
    seed are one row (:func:`aggregate_seeds`).

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
    return aggregate_seeds(entries) if aggregate else entries


#: Config entries that say where a run wrote its files, which seed it drew or which checkpoint it resumed, not what it
#: trained (dotted paths into the LightningCLI config): :func:`seed_group_key` leaves them out.
RUN_LOCATION_KEYS = ("seed_everything", "ckpt_path", "run_name", "trainer.default_root_dir")
#: Keys of a logger's ``init_args`` that name where and under which name it logs.
_LOGGER_LOCATION_KEYS = ("save_dir", "dir", "name", "version", "id")


def _without_run_location(config: dict[str, Any]) -> dict[str, Any]:
    config = json.loads(json.dumps(config))  # a deep copy
    for dotted in RUN_LOCATION_KEYS:
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    trainer = config.get("trainer")
    loggers = trainer.get("logger") if isinstance(trainer, dict) else None
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        args = logger.get("init_args") if isinstance(logger, dict) else None
        if isinstance(args, dict):
            for key in _LOGGER_LOCATION_KEYS:
                args.pop(key, None)
    return config


def seed_group_key(record: dict[str, Any]) -> str | None:
    """What runs of one experiment share: dataset id, model, family, protocol and the config without
    :data:`RUN_LOCATION_KEYS` (and the loggers' save folder and run name), as canonical JSON; ``None`` for a record
    without a config (nothing says which runs it could be a seed of)."""
    config = record.get("config")
    if not isinstance(config, dict):
        return None
    key = {"dataset_id": record.get("dataset_id"), "model": record.get("model"), "family": record.get("family"),
           "protocol": record.get("protocol") or {}, "config": _without_run_location(config)}
    return json.dumps(key, sort_keys=True, default=str)


_SEED_SUFFIX = re.compile(r"[_-]?seed[_-]?\d+$")


def _seed_of(entry: Entry) -> Any:
    return ((entry.record or {}).get("config") or {}).get("seed_everything")


def aggregate_seeds(entries: Sequence[Entry]) -> list[Entry]:
    """``entries`` with every group of runs that differ only in their seed (:func:`seed_group_key`), two or more
    seeds among them, replaced, where its first member was, by one row: each metric's mean over the runs that
    report it, its standard deviation over them in :attr:`Entry.seed_std` (``ddof=1``, where two or more report
    it), the runs themselves in :attr:`Entry.seeds`. Its name is the runs' shared name without ``_seed<S>`` (the
    first run's otherwise)."""
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        key = None if e.published or e.anchor or e.seeds or e.record is None else seed_group_key(e.record)
        if key is not None:
            groups.setdefault(key, []).append(e)
    out: list[Entry] = []
    done: set[str] = set()
    for e in entries:
        key = None if e.published or e.anchor or e.seeds or e.record is None else seed_group_key(e.record)
        members = groups.get(key, []) if key is not None else []
        if len({json.dumps(_seed_of(m)) for m in members}) < 2:  # runs of one seed are not a spread over seeds
            out.append(e)
            continue
        if key in done:
            continue
        done.add(key)
        members = sorted(members, key=lambda m: (str(_seed_of(m)), m.label))
        metrics: dict[str, Any] = {}
        spread: dict[str, float] = {}
        for name in dict.fromkeys(k for m in members for k in m.metrics):
            values = [v for v in (m.value(name) for m in members) if v is not None and math.isfinite(v)]
            if not values:
                metrics[name] = None
                continue
            mean = sum(values) / len(values)
            metrics[name] = mean
            if len(values) >= 2:
                spread[name] = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        names = {_SEED_SUFFIX.sub("", m.label) for m in members}
        first = members[0]
        out.append(Entry(model=first.model, family=first.family, dataset=first.dataset, dataset_id=first.dataset_id,
                         metrics=metrics, run_name=names.pop() if len(names) == 1 else first.label,
                         protocol=dict(first.protocol), sample_grid=first.sample_grid, seeds=members,
                         seed_std=spread))
    return out


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


def spread(entry: Entry, metric: str) -> float | None:
    """The ± the board prints beside ``entry``'s ``metric``: the standard deviation over the seeds of a seed
    aggregate, else the record's own spread (the NLL's standard error over test images, FID's bootstrap or
    over-draws standard deviation); None where none is known, as for published numbers."""
    if entry.seeds:
        return entry.seed_std.get(metric)
    key = METRICS[metric].std_key
    return entry.value(key) if key else None


def interval(entry: Entry, metric: str) -> tuple[float, float]:
    """``value ± spread`` (a point where no spread is known): the interval :func:`rank` compares for ties."""
    value, width = entry.value(metric), spread(entry, metric) or 0.0
    return value - width, value + width


def rank(entries: Sequence[Entry], metric: str) -> list[tuple[int | None, Entry]]:
    """Entries best first by ``metric`` with competition ranks (1, 2, 2, 4); rows without it last, unranked.

    A row ties with the first row of the tie group above it (takes its rank) when their intervals
    (:func:`interval`, value ± the spread shown) overlap, so two runs 0.1 nats apart with standard errors of 0.2,
    or a run whose interval covers a published number, share a rank; equal values always tie. Ties do not chain:
    a row is compared with the group's first row, not with its neighbour.
    Real-data anchors (:attr:`Entry.anchor`) stand in order among them with no rank, and take none from the rows
    after them."""
    sign = 1.0 if METRICS[metric].lower_is_better else -1.0
    scored = [e for e in entries if e.value(metric) is not None]
    scored.sort(key=lambda e: sign * e.value(metric))  # stable: equal values keep their order
    out: list[tuple[int | None, Entry]] = []
    count = 0
    lead: tuple[int, tuple[float, float]] | None = None  # rank and interval of the current tie group's first row
    for e in scored:
        if e.anchor:
            out.append((None, e))
            continue
        count += 1
        lo, hi = interval(e, metric)
        if lead is None or lo > lead[1][1] or hi < lead[1][0]:
            lead = (count, (lo, hi))
        out.append((lead[0], e))
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
