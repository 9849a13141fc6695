"""The leaderboard record: the one JSON-able dict a benchmark run produces and the store keeps (``schema`` 1).

::

    {"schema": 1, "run_name": "gated_pixelcnn_bmnist", "model": "GatedPixelCNN", "family": "autoregressive",
     "dataset": "BinarizedMNIST", "image_shape": [1, 28, 28],
     "metrics": {"fid": None, "nll_nats": 81.9, "nll_bpd": 0.151, ...},
     "protocol": {"extractor": "inception-v3-compat", "num_samples": 10000, "nll_estimator": "exact", ...},
     "checkpoint": "...", "checkpoint_sha256": "...", "config": {...}, "git_commit": "...", "wandb_url": None,
     "sample_grid": "results/samples/gated_pixelcnn_bmnist.png", "created_at": "2026-05-09T07:35:25+00:00",
     "train_time_s": 5400.0}

This module owns the schema: :data:`RECORD_SCHEMA`, the key lists, :func:`validate_record`,
:func:`normalize_record` and :func:`build_record` (what the benchmark calls to make one). A model's ``family`` is
whatever the model class declares; the leaderboard keeps no list of families, it only checks the spelling
(:data:`FAMILY_PATTERN`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "FAMILY_PATTERN",
    "METRIC_KEYS",
    "NULLABLE_STRING_KEYS",
    "OPTIONAL_KEYS",
    "PROTOCOL_KEYS",
    "RECORD_SCHEMA",
    "REQUIRED_KEYS",
    "STRING_KEYS",
    "build_record",
    "canonical_json",
    "normalize_record",
    "record_id",
    "validate_family",
    "validate_record",
]

#: Version of the record dict; a record with another ``schema`` is refused.
RECORD_SCHEMA = 1

#: Keys every record must carry (``ValueError`` naming the key otherwise).
REQUIRED_KEYS = ("schema", "run_name", "model", "family", "dataset", "image_shape", "metrics", "protocol",
                 "created_at")
#: Keys a record may leave out; they are stored as ``None``.
OPTIONAL_KEYS = ("checkpoint", "checkpoint_sha256", "config", "git_commit", "wandb_url", "sample_grid",
                 "train_time_s")
#: The metrics a record knows; absent ones are stored as ``None`` (a record may add others).
METRIC_KEYS = ("fid", "is_mean", "is_std", "kid_mean", "kid_std", "nll_nats", "nll_bpd", "probe_acc",
               "samples_per_s", "num_params")
#: The protocol fields a record knows; absent ones are stored as ``None`` (a record may add others).
PROTOCOL_KEYS = ("extractor", "extractor_weights_sha256", "num_samples", "reference_split", "image_size",
                 "nll_estimator", "num_test_images", "devices")

#: Keys whose value is a non-empty string.
STRING_KEYS = ("run_name", "model", "dataset", "created_at")
#: Keys whose value is a string or ``None``.
NULLABLE_STRING_KEYS = ("checkpoint", "checkpoint_sha256", "git_commit", "wandb_url", "sample_grid")

#: How a family is spelt: a lowercase identifier (``"autoregressive"``, ``"gan"``, ``"score-based"``).
FAMILY_PATTERN = r"[a-z][a-z0-9_-]*"
_FAMILY = re.compile(FAMILY_PATTERN)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_family(family: Any) -> None:
    """Raise ``ValueError`` unless ``family`` is a lowercase identifier-like string (:data:`FAMILY_PATTERN`)."""
    if not isinstance(family, str) or not _FAMILY.fullmatch(family):
        raise ValueError(f"record key 'family' must be a non-empty lowercase identifier matching {FAMILY_PATTERN} "
                         f"(a letter first, then letters, digits, '_' or '-'), got {family!r}")


def validate_record(record: Any) -> None:
    """Raise ``ValueError`` naming the first key that is missing or has the wrong type."""
    if not isinstance(record, dict):
        raise ValueError(f"a leaderboard record must be a dict, got {type(record).__name__}")
    for key in REQUIRED_KEYS:
        if key not in record:
            raise ValueError(f"leaderboard record is missing required key {key!r} "
                             f"(run_name={record.get('run_name')!r})")
    if record["schema"] != RECORD_SCHEMA:
        raise ValueError(f"record 'schema' is {record['schema']!r}; this store reads schema {RECORD_SCHEMA}")
    for key in STRING_KEYS:
        if not isinstance(record[key], str) or not record[key]:
            raise ValueError(f"record key {key!r} must be a non-empty string, got {record[key]!r}")
    for key in NULLABLE_STRING_KEYS:
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ValueError(f"record key {key!r} must be a string or null, got {record[key]!r}")
    validate_family(record["family"])
    shape = record["image_shape"]
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ValueError(f"record key 'image_shape' must be [C, H, W] positive ints, got {shape!r}")
    try:
        datetime.fromisoformat(record["created_at"])
    except ValueError:
        raise ValueError(f"record key 'created_at' is not ISO-8601: {record['created_at']!r}") from None
    for section in ("metrics", "protocol"):
        if not isinstance(record[section], dict):
            raise ValueError(f"record key {section!r} must be a dict, got {type(record[section]).__name__}")
    for name, value in record["metrics"].items():
        if value is None:
            continue
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"record key 'metrics.{name}' must be a finite number or null, got {value!r}")
    if record.get("config") is not None and not isinstance(record["config"], dict):
        raise ValueError(f"record key 'config' must be a dict or null, got {type(record['config']).__name__}")
    train_time = record.get("train_time_s")
    if train_time is not None and (not _is_number(train_time) or not math.isfinite(train_time)):
        raise ValueError(f"record key 'train_time_s' must be a finite number or null, got {train_time!r}")
    try:
        json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"record {record['run_name']!r} is not JSON-serialisable: {err}") from None


def normalize_record(record: dict[str, Any]) -> dict[str, Any]:
    """Validate and return a copy with every known key present (absent ones become ``None``).

    Normalising first makes a record and its CSV round trip compare equal: CSV cannot tell an absent key from a
    null one.
    """
    validate_record(record)
    out = json.loads(json.dumps(record))  # deep copy; tuples become lists as they would after any round trip
    for key in OPTIONAL_KEYS:
        out.setdefault(key, None)
    for key in METRIC_KEYS:
        out["metrics"].setdefault(key, None)
    for key in PROTOCOL_KEYS:
        out["protocol"].setdefault(key, None)
    return out


def canonical_json(record: dict[str, Any]) -> str:
    """The record (or any JSON-able value) as canonical JSON: sorted keys, no spaces, no NaN."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)


def record_id(record: dict[str, Any]) -> str:
    """Content hash of the normalised record: equal records get equal ids, in any process."""
    return hashlib.sha256(canonical_json(normalize_record(record)).encode()).hexdigest()


def build_record(*, run_name: str, model: str, family: str, dataset: str, image_shape: Any,
                 metrics: dict[str, Any], protocol: dict[str, Any], created_at: str | None = None,
                 **optional: Any) -> dict[str, Any]:
    """A validated record, in the normalised form the store keeps (see :func:`normalize_record`).

    ``schema`` is :data:`RECORD_SCHEMA`; ``created_at`` defaults to now, in UTC, to the second. ``optional``
    takes the :data:`OPTIONAL_KEYS`; one left out (or ``None``) is stored as ``None``, as are the
    :data:`METRIC_KEYS` and :data:`PROTOCOL_KEYS` missing from ``metrics`` and ``protocol``. ``image_shape`` may
    be any sequence ``(C, H, W)``; it comes back as a list.

    Raises ``ValueError`` for a key outside :data:`OPTIONAL_KEYS`, naming it and the allowed ones, and for
    anything :func:`validate_record` refuses.
    """
    unknown = sorted(set(optional) - set(OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"unknown record key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"the optional keys are {', '.join(OPTIONAL_KEYS)}")
    if created_at is None:
        created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = {
        "schema": RECORD_SCHEMA,
        "run_name": run_name,
        "model": model,
        "family": family,
        "dataset": dataset,
        "image_shape": list(image_shape) if isinstance(image_shape, tuple) else image_shape,
        "metrics": metrics,
        "protocol": protocol,
        **{key: optional.get(key) for key in OPTIONAL_KEYS},
        "created_at": created_at,
    }
    return normalize_record(record)
