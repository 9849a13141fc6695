"""Results store and static dashboard for the lightning_gen leaderboard.

``record`` owns the record dict the benchmark writes (:func:`build_record`, :data:`RECORD_SCHEMA`); ``Store``
keeps records in SQLite; ``main`` builds the HTML page (``python -m lightning_gen leaderboard``) from the board rows
of ``ranking``, the page of ``html`` and the plots of ``plots``; ``PUBLISHED`` holds the figures from papers the
board shows beside our runs.
"""

from lightning_gen.leaderboard.dashboard import main
from lightning_gen.leaderboard.html import render_dashboard
from lightning_gen.leaderboard.ranking import METRICS, build_entries, rank
from lightning_gen.leaderboard.record import (
    DATASET_ID_PATTERN,
    FAMILY_PATTERN,
    METRIC_KEYS,
    OPTIONAL_KEYS,
    PROTOCOL_KEYS,
    RECORD_SCHEMA,
    REQUIRED_KEYS,
    build_record,
    normalize_record,
    record_id,
    upgrade_record,
    validate_family,
    validate_record,
)
from lightning_gen.leaderboard.references import PUBLISHED, Reference, published_entries
from lightning_gen.leaderboard.store import DEFAULT_DB, SCHEMA_VERSION, SchemaVersionError, Store, read_records
from lightning_gen.leaderboard.wandb_table import log_to_wandb

__all__ = [
    "DATASET_ID_PATTERN",
    "DEFAULT_DB",
    "FAMILY_PATTERN",
    "METRICS",
    "METRIC_KEYS",
    "OPTIONAL_KEYS",
    "PROTOCOL_KEYS",
    "PUBLISHED",
    "RECORD_SCHEMA",
    "REQUIRED_KEYS",
    "SCHEMA_VERSION",
    "Reference",
    "SchemaVersionError",
    "Store",
    "build_entries",
    "build_record",
    "log_to_wandb",
    "main",
    "normalize_record",
    "published_entries",
    "rank",
    "read_records",
    "record_id",
    "render_dashboard",
    "upgrade_record",
    "validate_family",
    "validate_record",
]
