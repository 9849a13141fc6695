"""Board rows and their order: the rankable metrics, one :class:`Entry` per run or published number, ranking.

The board has one section per ``dataset_id`` and conditioning (:func:`section_key`: numbers of different data sets,
static and dynamic binarized MNIST among them, are never ranked against each other, nor a class-conditional model's
log p(x|y) and label-driven samples against an unconditional model's), and each section is ranked by its primary
metric (:func:`choose_metric`: the likelihood wherever an entry has one, else FID), best first with competition ranks
(:func:`rank`); the HTML page and the W&B table both rank this way. Rows tie (share a rank, so a difference inside
the noise is not shown as an order) by one of two rules (:func:`tie_rule`):

- two of our runs with per-image NLL on the same test split: paired, :data:`~lightning_gen.leaderboard.paired.
  PAIRED_RULE` (the 95% interval of the mean per-image difference contains 0);
- anything else (a published number, a seed aggregate, a record without per-image values, a sample metric): their
  intervals, value ± the spread the board prints (:func:`spread`), overlap. The spread is the std over seeds for a
  seed aggregate, the standard error over test images for an NLL, the std across independent draws for FID / KID /
  IS where the record has several draws, else the one draw's own spread (FID bootstrap, KID subsets, IS splits);
  :func:`spread_kind` names which. A run's entry also carries the sample grids its :class:`~lightning_gen.callbacks.SampleGrid` saved during
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

from lightning_gen.leaderboard.grids import resolve, training_grids
from lightning_gen.leaderboard.paired import PAIRED_RULE, Z95, paired_difference
from lightning_gen.leaderboard.references import published_entries
from lightning_gen.leaderboard.sections import section_key, sections

__all__ = ["ANCHOR_FAMILY", "LIKELIHOOD_METRICS", "METRICS", "RUN_LOCATION_KEYS", "Entry", "Metric",
           "aggregate_seeds", "build_entries", "choose_metric", "interval", "leader_difference", "paired", "rank",
           "ranked_by_dataset", "section_key", "sections", "seed_group_key", "spread", "spread_kind", "tie_rule", "ties",
           "training_grids"]

#: The family of a real-data anchor record (the benchmark's ``--anchor``): listed, never ranked.
ANCHOR_FAMILY = "data"


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    lower_is_better: bool
    kind: str  # "quality", "likelihood", "probe", "speed": decides which protocol fields are printed beside it
    std_key: str | None = None  # the record's own spread (within one draw for KID and IS)
    draws_std_key: str | None = None  # the std across independent draws, where a record has several


#: Rankable metrics, in the order their columns appear.
METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("fid", "FID", True, "quality", std_key="fid_std"),  # bootstrap or over --repeats draws
    Metric("kid_mean", "KID ×10³", True, "quality", std_key="kid_std",  # printed ×1000: formatting.DISPLAY_SCALE
           draws_std_key="kid_mean_std"),
    Metric("is_mean", "IS", False, "quality", std_key="is_std", draws_std_key="is_mean_std"),
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

    @property
    def conditional(self) -> bool:
        """A class-conditional model's row: ``protocol.conditional``, or for a record that predates it, the model's
        ``conditional`` option in its config."""
        flag = self.protocol.get("conditional")
        if isinstance(flag, bool):
            return flag
        config = ((self.seeds[0].record if self.seeds else self.record) or {}).get("config") or {}
        model = config.get("model")
        args = model.get("init_args") if isinstance(model, dict) else None
        return (args if isinstance(args, dict) else config).get("conditional") is True

    def value(self, metric: str) -> float | None:
        v = self.metrics.get(metric)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


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
              sample_grid=resolve(r.get("sample_grid"), roots), training_grids=training_grids(r, roots))
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
    """The ± the board prints beside ``entry``'s ``metric`` (what it is: :func:`spread_kind`): the standard
    deviation over the seeds of a seed aggregate; else the std across independent draws where the record has
    several (KID, IS; ``fid_std`` is over draws then too), else the record's own spread (the NLL's standard error
    over test images, FID's bootstrap, KID's and IS's within one draw); None where none is known (published)."""
    if entry.seeds:
        return entry.seed_std.get(metric)
    m = METRICS[metric]
    for key in (m.draws_std_key, m.std_key):
        if key and entry.value(key) is not None:
            return entry.value(key)
    return None


def _several_draws(entry: Entry) -> bool:
    kind = entry.protocol.get("fid_spread")
    if kind in ("draws", "bootstrap"):
        return kind == "draws"
    return any(entry.value(k) is not None for k in ("kid_mean_std", "is_mean_std"))


def spread_kind(entry: Entry, metric: str) -> str | None:
    """What :func:`spread` is, in words ("std over 3 seeds", "SE over 10,000 test images", "std over draws",
    "bootstrap std, one draw", "within one draw: 100 KID subsets"); None where there is no spread."""
    if spread(entry, metric) is None:
        return None
    if entry.seeds:
        return f"std over {len(entry.seeds)} seeds"
    m = METRICS[metric]
    if m.kind == "likelihood":
        n = entry.protocol.get("num_test_images")
        return f"SE over {n:,} test images" if isinstance(n, int) else "SE over test images"
    if m.kind == "probe":
        return "binomial SE"
    if (m.draws_std_key and entry.value(m.draws_std_key) is not None) or (metric == "fid" and _several_draws(entry)):
        return "std over draws"
    return {"fid": "bootstrap std, one draw", "kid_mean": "within one draw: KID subsets",
            "is_mean": "within one draw: IS splits"}.get(metric)


def interval(entry: Entry, metric: str) -> tuple[float, float]:
    """``value ± spread`` (a point where no spread is known): the interval :func:`rank` compares for ties where
    the runs cannot be paired."""
    value, width = entry.value(metric), spread(entry, metric) or 0.0
    return value - width, value + width


def paired(entry: Entry, other: Entry, metric: str) -> tuple[float, float] | None:
    """``(mean, SE)`` of ``entry``'s per-image ``metric`` minus ``other``'s over their shared test images; None
    unless ``metric`` is an NLL and both are single runs with per-image values on the same split
    (:func:`~lightning_gen.leaderboard.paired.paired_difference`)."""
    if METRICS[metric].kind != "likelihood" or entry.record is None or other.record is None:
        return None
    scale = 1.0
    if metric == "nll_bpd":
        c, h, w = entry.record["image_shape"]
        scale = 1.0 / (c * h * w * math.log(2.0))
    return paired_difference(entry.record.get("nll_per_image"), other.record.get("nll_per_image"), scale)


def tie_rule(entry: Entry, other: Entry, metric: str) -> str:
    """The rule :func:`rank` decides a tie of the two by: :data:`~lightning_gen.leaderboard.paired.PAIRED_RULE`
    where :func:`paired` can pair them, else the interval overlap of value ± :func:`spread`."""
    if paired(entry, other, metric) is not None:
        return PAIRED_RULE
    return ("interval: the two tie when their intervals, value ± the spread shown (a published number: the value "
            "alone), overlap")


def ties(entry: Entry, lead: Entry, metric: str) -> bool:
    """Whether ``entry`` ties with ``lead`` by :func:`tie_rule`."""
    d = paired(entry, lead, metric)
    if d is not None:
        return abs(d[0]) <= Z95 * d[1]
    lo, hi = interval(entry, metric)
    lead_lo, lead_hi = interval(lead, metric)
    return not (lo > lead_hi or hi < lead_lo)


def rank(entries: Sequence[Entry], metric: str) -> list[tuple[int | None, Entry]]:
    """Entries best first by ``metric`` with competition ranks (1, 2, 2, 4); rows without it last, unranked.

    A row ties with the first row of the tie group above it (takes its rank) by :func:`ties`: two runs on the same
    test images when the 95% interval of their paired difference contains 0, anything else when value ± spread
    intervals overlap (a run whose interval covers a published number); equal values always tie. Ties do not
    chain: a row is compared with the group's first row, not with its neighbour.
    Real-data anchors (:attr:`Entry.anchor`) stand in order among them with no rank, and take none from the rows
    after them."""
    sign = 1.0 if METRICS[metric].lower_is_better else -1.0
    scored = [e for e in entries if e.value(metric) is not None]
    scored.sort(key=lambda e: sign * e.value(metric))  # stable: equal values keep their order
    out: list[tuple[int | None, Entry]] = []
    count = 0
    lead: tuple[int, Entry] | None = None  # rank and first row of the current tie group
    for e in scored:
        if e.anchor:
            out.append((None, e))
            continue
        count += 1
        if lead is None or (e.value(metric) != lead[1].value(metric) and not ties(e, lead[1], metric)):
            lead = (count, e)
        out.append((lead[0], e))
    out += [(None, e) for e in entries if e.value(metric) is None]
    return out


def leader_difference(entry: Entry, ranked: Sequence[tuple[int | None, Entry]],
                      metric: str) -> tuple[float, float] | None:
    """``entry``'s paired difference to its section's leader (the first ranked row of :func:`rank`'s ``ranked``),
    ``(mean, SE)``; None for the leader itself and where the two cannot be paired."""
    leader = next((e for r, e in ranked if r is not None), None)
    return None if leader is None or leader is entry else paired(entry, leader, metric)


def ranked_by_dataset(entries: Sequence[Entry], metric: str | None) -> list[tuple[int | None, Entry]]:
    """Every entry with its rank, section by section (:func:`sections`), each ranked by :func:`choose_metric`."""
    out: list[tuple[int | None, Entry]] = []
    for key in sections(entries):
        group = [e for e in entries if section_key(e) == key]
        key = choose_metric(group, metric)
        out += rank(group, key) if key else [(None, e) for e in group]
    return out
