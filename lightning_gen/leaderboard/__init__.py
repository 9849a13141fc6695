"""Results store and static dashboard for the lightning_gen leaderboard.

``Store`` keeps benchmark records in SQLite; ``main`` builds the HTML page (``python -m lightning_gen
leaderboard``); ``PUBLISHED`` holds the figures from papers the board shows beside our runs.
"""

from lightning_gen.leaderboard.dashboard import METRICS, build_entries, log_to_wandb, main, rank, render_dashboard
from lightning_gen.leaderboard.references import PUBLISHED, Reference, published_entries
from lightning_gen.leaderboard.store import (
    DEFAULT_DB,
    SCHEMA_VERSION,
    SchemaVersionError,
    Store,
    normalize_record,
    read_records,
    validate_record,
)

__all__ = [
    "DEFAULT_DB",
    "METRICS",
    "PUBLISHED",
    "SCHEMA_VERSION",
    "Reference",
    "SchemaVersionError",
    "Store",
    "build_entries",
    "log_to_wandb",
    "main",
    "normalize_record",
    "published_entries",
    "rank",
    "read_records",
    "render_dashboard",
    "validate_record",
]
