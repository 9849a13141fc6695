"""The board's sections: one per data set and conditioning, in one fixed order.

A row's section is its ``dataset_id`` and whether it is class-conditional (:func:`section_key`): numbers of different
data sets, or of p(x) and p(x|y), are never ranked together. The order of the sections is fixed
(:data:`DATASET_ORDER`), so they never move when a benchmark or a record is added. A data set with runs of ours
but no real-data row gets the command that adds one (:func:`missing_anchors`).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_gen.leaderboard.ranking import Entry

#: The board's data sets, smallest first; a data set id starting with one of these takes its place (the longest such
#: prefix decides), and any other follows, alphabetically.
DATASET_ORDER = ("digits-binary", "digits-8bit", "binarized-mnist-static", "binarized-mnist-dynamic", "mnist",
                 "fashion-mnist", "cifar10", "celeba")


def section_key(entry: Entry) -> tuple[str, bool]:
    """The board section of a row: its data set and whether it is class-conditional."""
    return entry.dataset_id, entry.conditional


def _place(key: tuple[str, bool]) -> tuple[int, str, bool]:
    known = [i for i, prefix in enumerate(DATASET_ORDER) if key[0].startswith(prefix)]
    return (max(known, key=lambda i: len(DATASET_ORDER[i])) if known else len(DATASET_ORDER), *key)


def sections(entries: Sequence[Entry]) -> list[tuple[str, bool]]:
    """The sections (:func:`section_key`) of ``entries`` in their fixed order: data sets as :data:`DATASET_ORDER`
    says, each one's unconditional rows before its class-conditional ones."""
    return sorted({section_key(e) for e in entries}, key=_place)


def anchor_arguments(record: dict[str, Any] | None) -> list[str] | None:
    """``lightning-gen benchmark`` arguments that add the real-data row of ``record``'s data set: ``--anchor`` with the
    data module and options the run trained on (its batch size left out; the record's data module class with its
    defaults where its config names none) and its sample count; None for a record that names neither."""
    data = ((record or {}).get("config") or {}).get("data")
    if not isinstance(data, dict) or not isinstance(data.get("class_path"), str):
        data = {"class_path": (record or {}).get("dataset")}
        if not isinstance(data["class_path"], str):
            return None
    init_args = dict(data.get("init_args") or {})
    root = init_args.pop("root", None)
    options = {k: v for k, v in init_args.items() if k != "batch_size"}
    args = ["--anchor", "--data", data["class_path"], *(["--data-root", str(root)] if root else []),
            *(["--data-args", json.dumps(options, sort_keys=True)] if options else [])]
    n = ((record or {}).get("protocol") or {}).get("num_samples")
    return args + (["--num-samples", str(n)] if n else [])


def missing_anchors(entries: Sequence[Entry], db: str | None = None) -> dict[str, str]:
    """``dataset_id -> command`` for each data set with runs of ours but no real-data row: the command that adds it
    (``--db db`` where given)."""
    anchored = {e.dataset_id for e in entries if e.anchor}
    out: dict[str, str] = {}
    for e in entries:
        args = None if e.published or e.anchor or e.dataset_id in anchored else anchor_arguments(
            e.seeds[0].record if e.seeds else e.record)
        if args and e.dataset_id not in out:
            out[e.dataset_id] = shlex.join(["lightning-gen", "benchmark", *args, *(["--db", db] if db else [])])
    return out
