"""Records as CSV: one column per top-level key, ``metrics.<k>`` and ``protocol.<k>`` flattened; an empty cell is
null, numbers are written with repr (exact for floats), lists and dicts (``config``, ``nll_per_image``) as JSON."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from typing import Any

from lightning_gen.leaderboard.record import (
    METRIC_KEYS,
    NULLABLE_STRING_KEYS,
    PROTOCOL_KEYS,
    STRING_KEYS,
    normalize_record,
    upgrade_record,
)

__all__ = ["records_from_csv", "records_to_csv"]


_TOP_COLUMNS = ("schema", "run_name", "model", "family", "dataset", "dataset_id", "image_shape", "created_at",
                "train_time_s", "checkpoint", "checkpoint_sha256", "git_commit", "wandb_url", "sample_grid", "config",
                "nll_per_image")
_FLATTENED = ("metrics", "protocol")
# Columns read back as strings even when they look like numbers (a run called "2024" stays a string).
_STRING_COLUMNS = {*STRING_KEYS, *NULLABLE_STRING_KEYS, "family", "protocol.extractor",
                   "protocol.extractor_weights_sha256", "protocol.reference_split", "protocol.nll_estimator"}
_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")


def _csv_columns(records: Sequence[dict[str, Any]]) -> list[str]:
    extra_top = sorted({k for r in records for k in r} - set(_TOP_COLUMNS) - set(_FLATTENED))
    columns = [*_TOP_COLUMNS, *extra_top]
    for section, known in (("metrics", METRIC_KEYS), ("protocol", PROTOCOL_KEYS)):
        extra = sorted({k for r in records for k in r.get(section) or {}} - set(known))
        columns += [f"{section}.{k}" for k in (*known, *extra)]
    return columns


def _to_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, sort_keys=True, allow_nan=False)


def _from_cell(column: str, cell: str) -> Any:
    if cell == "":
        return None
    if column in _STRING_COLUMNS:
        return cell
    if _INT.fullmatch(cell):
        return int(cell)
    if _FLOAT.fullmatch(cell):
        return float(cell)
    try:
        return json.loads(cell)  # lists, dicts, true / false
    except ValueError:
        return cell


def records_to_csv(records: Sequence[dict[str, Any]], f: Any) -> None:
    """Write records to the text file ``f`` as CSV (see the column rules above)."""
    records = [normalize_record(r) for r in records]
    columns = _csv_columns(records)
    writer = csv.writer(f)
    writer.writerow(columns)
    for rec in records:
        row = []
        for column in columns:
            section, _, key = column.partition(".")
            value = rec.get(section, {}).get(key) if key and section in _FLATTENED else rec.get(column)
            row.append(_to_cell(value))
        writer.writerow(row)


def records_from_csv(f: Any) -> list[dict[str, Any]]:
    """Read records written by :func:`records_to_csv` from the text file ``f`` (a schema-1 export, without the
    ``dataset_id`` column, comes back upgraded)."""
    records = []
    for row in csv.DictReader(f):
        rec: dict[str, Any] = {"metrics": {}, "protocol": {}}
        for column, cell in row.items():
            section, _, key = column.partition(".")
            value = _from_cell(column, cell)
            if key and section in _FLATTENED:
                if value is not None or key in (METRIC_KEYS if section == "metrics" else PROTOCOL_KEYS):
                    rec[section][key] = value
            elif value is not None or column in _TOP_COLUMNS:
                rec[column] = value
        records.append(normalize_record(upgrade_record(rec)))
    return records
