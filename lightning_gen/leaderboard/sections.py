"""The board's sections: one per data set and conditioning, in one fixed order.

A row's section is its ``dataset_id`` and whether it is class-conditional (:func:`section_key`): numbers of different
data sets, or of p(x) and p(x|y), are never ranked together. The order of the sections is fixed
(:data:`DATASET_ORDER`), so they never move when a benchmark or a record is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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
