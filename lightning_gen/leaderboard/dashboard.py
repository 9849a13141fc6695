"""``python -m lightning_gen leaderboard``: build the static HTML leaderboard from the results database.

The command imports and exports records (:mod:`~lightning_gen.leaderboard.store`), turns them into board rows
(:mod:`~lightning_gen.leaderboard.ranking`), writes the page (:mod:`~lightning_gen.leaderboard.html`, with the
plots of :mod:`~lightning_gen.leaderboard.plots`) and, with ``--wandb``, logs the board as a table
(:mod:`~lightning_gen.leaderboard.wandb_table`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lightning_gen.leaderboard.html import render_dashboard
from lightning_gen.leaderboard.formatting import fmt_metric
from lightning_gen.leaderboard.ranking import (METRICS, Entry, build_entries, choose_metric, leader_difference, rank,
                                               section_key, sections, spread, spread_kind)
from lightning_gen.leaderboard.sections import missing_anchors
from lightning_gen.leaderboard.store import DEFAULT_DB, Store, read_records
from lightning_gen.leaderboard.wandb_table import log_to_wandb

__all__ = ["DEFAULT_OUT", "main", "ranks_text"]

DEFAULT_OUT = Path("results/leaderboard/index.html")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lightning-gen leaderboard",
        description="Build the static HTML leaderboard from the results database (and optionally log it to W&B).")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help="SQLite results database (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="HTML file to write (default: %(default)s)")
    p.add_argument("--metric", choices=tuple(METRICS), default=None,
                   help="metric to rank by where a data set has it (default: NLL wherever an entry has one, "
                        "else FID, else KID/IS, ...)")
    p.add_argument("--import", dest="imports", type=Path, nargs="+", default=[], metavar="FILE",
                   help="add records from .json / .jsonl / .csv files to the database first")
    p.add_argument("--export", type=Path, default=None, metavar="FILE",
                   help="also write every stored record to FILE (.json or .csv)")
    p.add_argument("--root", type=Path, default=None,
                   help="folder that relative sample-grid paths in records are relative to (default: the working "
                        "directory, then the database's folder and its parent)")
    p.add_argument("--all-evaluations", action="store_true",
                   help="show every stored evaluation, not just the newest per run, dataset and protocol")
    p.add_argument("--no-published", action="store_true", help="leave out the published reference numbers")
    p.add_argument("--ranks", action="store_true",
                   help="also print each section's ranks, tie groups and paired differences to its leader")
    p.add_argument("--title", default="lightning_gen leaderboard")
    p.add_argument("--wandb", action="store_true",
                   help="also log the board as a wandb.Table (mode from WANDB_MODE; offline needs no login)")
    p.add_argument("--wandb-project", default=os.environ.get("WANDB_PROJECT", "lightning_gen"))
    p.add_argument("--wandb-name", default=None, help="W&B run name (default: W&B chooses)")
    return p


def ranks_text(entries: list[Entry], *, metric: str | None = None) -> str:
    """Each section's rows as the page ranks them, as plain text: rank (``=N`` tied), name, value ± spread and what
    that spread is, the paired difference to the leader where there is one; then the tie groups."""
    lines = []
    for dataset_id, conditional in sections(entries):
        group = [e for e in entries if section_key(e) == (dataset_id, conditional)]
        key = choose_metric(group, metric)
        if key is None:
            continue
        ordered = rank(group, key)
        lines.append(f"\n{dataset_id}{' (class-conditional)' if conditional else ''}: ranked by {METRICS[key].label}")
        shared: dict[int, list[str]] = {}
        for r, e in ordered:
            if r is not None:
                shared.setdefault(r, []).append(e.label)
        for r, e in ordered:
            v, std = e.value(key), spread(e, key)
            if v is None:
                lines.append(f"     - {e.label[:40]:40s} no {METRICS[key].label}: unranked")
                continue
            tied = r is not None and len(shared[r]) > 1
            text = fmt_metric(key, v) + (f" ± {fmt_metric(key, std)} ({spread_kind(e, key)})" if std else "")
            diff = leader_difference(e, ordered, key)
            paired = f"  Δ leader {diff[0]:+.4f} ± {diff[1]:.4f} (paired SE)" if diff else ""
            rank_text = "-" if r is None else f"{'=' if tied else ''}{r}"
            lines.append(f"  {rank_text:>4} {e.label[:40]:40s} {text}{' [published]' if e.published else ''}{paired}")
        ties = [f"={r}: {', '.join(names)}" for r, names in shared.items() if len(names) > 1]
        lines.append("  ties: " + ("; ".join(ties) if ties else "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m lightning_gen leaderboard``: build ``--out`` from ``--db``; return the exit status."""
    args = _parser().parse_args(argv)
    if args.export is not None and args.export.suffix.lower() not in (".json", ".csv"):
        print(f"error: --export must end in .json or .csv, got {args.export}", file=sys.stderr)
        return 2

    records: list[dict[str, Any]] = []
    if args.imports or args.db.exists():
        with Store(args.db) as store:
            for path in args.imports:
                added = store.add_many(read_records(path))
                print(f"imported {added} new record(s) from {path}")
            if args.export is not None:
                n = store.export_csv(args.export) if args.export.suffix.lower() == ".csv" \
                    else store.export_json(args.export)
                print(f"exported {n} record(s) to {args.export}")
            records = store.records(latest_only=not args.all_evaluations)
    else:
        print(f"warning: no results database at {args.db}; the board shows published numbers only",
              file=sys.stderr)

    # The benchmark writes grids next to the database and records their path as it was given (often relative).
    roots = [r for r in (args.root, args.db.parent, args.db.parent.parent) if r is not None]
    entries = build_entries(records, include_published=not args.no_published, roots=roots)
    page = render_dashboard(entries, metric=args.metric, title=args.title, source=str(args.db))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out} ({len(records)} run(s))")
    for dataset_id, command in missing_anchors(entries, str(args.db)).items():
        print(f"note: {dataset_id} has no real-data row (real training images scored like samples); add it with:\n"
              f"  {command}")
    if args.ranks:
        print(ranks_text(entries, metric=args.metric))

    if args.wandb:
        try:
            run_dir = log_to_wandb(entries, metric=args.metric, project=args.wandb_project, name=args.wandb_name)
        except Exception as err:  # noqa: BLE001 - report W&B failures without losing the page already written
            print(f"error: logging to W&B failed: {err}\n(set WANDB_MODE=offline to log without an account)",
                  file=sys.stderr)
            return 1
        print(f"logged leaderboard table to W&B ({run_dir})")
    return 0
