"""SQLite store for benchmark records: one row per evaluated run, safe for several writers at once.

A record is the JSON-able dict described in :mod:`~lightning_gen.leaderboard.record` (``schema`` 2), which owns
its schema, validation and normalisation.

The database keeps the full record as JSON next to indexed columns (dataset, dataset id, model, family, the
headline metrics) that queries filter and order on. Two version numbers are in play and are not the same thing:
the *record* schema (``record["schema"]``, what the benchmark writes) and the *database* schema
(``meta.schema_version``, the table layout, moved forward by :data:`MIGRATIONS`). Database version 2 is the first
to hold schema-2 records: its migration upgrades every stored schema-1 record (adding ``dataset_id``, see
:func:`~lightning_gen.leaderboard.record.upgrade_record`), and records added or imported with an older schema are
upgraded on the way in.

Concurrency: the database runs in WAL mode with a busy timeout, every write takes the write lock up front
(``BEGIN IMMEDIATE``, so a reader never has to upgrade to a writer mid-transaction, which SQLite answers with an
immediate ``SQLITE_BUSY`` that no timeout waits out), and a write that still meets "database is locked" is
retried with backoff. Records are identified by a hash of their canonical JSON, so importing the same export
twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from lightning_gen.leaderboard.record import (
    METRIC_KEYS,
    OPTIONAL_KEYS,
    PROTOCOL_KEYS,
    RECORD_SCHEMA,
    REQUIRED_KEYS,
    canonical_json,
    normalize_record,
    record_id,
    upgrade_record,
    validate_record,
)
from lightning_gen.leaderboard.records_csv import records_from_csv, records_to_csv

__all__ = [
    "DEFAULT_DB",
    "METRIC_KEYS",
    "MIGRATIONS",
    "OPTIONAL_KEYS",
    "PROTOCOL_KEYS",
    "RECORD_SCHEMA",
    "REQUIRED_KEYS",
    "SCHEMA_VERSION",
    "SchemaVersionError",
    "Store",
    "normalize_record",
    "read_records",
    "record_id",
    "records_from_csv",
    "records_to_csv",
    "validate_record",
]

DEFAULT_DB = Path("results/leaderboard.sqlite")

#: Version of the database layout this code writes; see :data:`MIGRATIONS`.
SCHEMA_VERSION = 2

#: Metrics that get their own indexed column (the ones the dashboard ranks and filters on).
INDEXED_METRICS = ("fid", "is_mean", "kid_mean", "nll_nats", "nll_bpd", "probe_acc", "samples_per_s",
                   "num_params")


class SchemaVersionError(RuntimeError):
    """The database was written by a newer lightning_gen whose layout this version does not know."""


# ----------------------------------------------------------------------------------------------------------
# Records (the schema itself lives in lightning_gen.leaderboard.record)


def _created(record: dict[str, Any]) -> datetime:
    """``created_at`` as an aware datetime (naive times are taken as UTC), so offsets compare correctly."""
    t = datetime.fromisoformat(record["created_at"])
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


# ----------------------------------------------------------------------------------------------------------
# Database layout and migrations


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    conn.execute("""
        CREATE TABLE records (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            record_id   TEXT NOT NULL UNIQUE,
            run_name    TEXT NOT NULL,
            model       TEXT NOT NULL,
            family      TEXT NOT NULL,
            dataset     TEXT NOT NULL,
            created_at  TEXT NOT NULL,
            fid REAL, is_mean REAL, kid_mean REAL, nll_nats REAL, nll_bpd REAL, probe_acc REAL,
            samples_per_s REAL, num_params REAL,
            record_json TEXT NOT NULL
        )""")
    for column in ("run_name", "model", "family", "dataset", *INDEXED_METRICS):
        conn.execute(f"CREATE INDEX idx_records_{column} ON records ({column})")  # identifiers, not values


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Records gain ``dataset_id`` (record schema 2), as JSON and as an indexed column; their hash changes."""
    conn.execute("ALTER TABLE records ADD COLUMN dataset_id TEXT NOT NULL DEFAULT ''")
    rows = conn.execute("SELECT id, record_json FROM records").fetchall()
    for row_id, text in rows:
        record = normalize_record(upgrade_record(json.loads(text)))
        new_text = canonical_json(record)
        conn.execute("UPDATE records SET record_id = ?, dataset_id = ?, record_json = ? WHERE id = ?",
                     (hashlib.sha256(new_text.encode()).hexdigest(), record["dataset_id"], new_text, row_id))
    conn.execute("CREATE INDEX idx_records_dataset_id ON records (dataset_id)")


#: ``MIGRATIONS[v]`` moves a database from schema version ``v`` to ``v + 1``; version 0 is an empty file.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _migrate_0_to_1, 1: _migrate_1_to_2}
assert sorted(MIGRATIONS) == list(range(SCHEMA_VERSION)), "one migration per version step"


def _read_version(conn: sqlite3.Connection) -> int:
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, *, path: str | Path = "?") -> int:
    """Bring the database to :data:`SCHEMA_VERSION` inside the caller's write transaction; return old version.

    Raises :class:`SchemaVersionError` for a database newer than this code, rather than guessing at its layout.
    """
    version = _read_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"leaderboard database {path} has schema version {version}, newer than the {SCHEMA_VERSION} this "
            f"lightning_gen understands; upgrade lightning_gen or point --db at another file")
    if version < SCHEMA_VERSION:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
    return version


# ----------------------------------------------------------------------------------------------------------
# Store

T = TypeVar("T")

_LOCKED = ("database is locked", "database is busy", "database table is locked")


def _is_locked(err: sqlite3.OperationalError) -> bool:
    return any(msg in str(err) for msg in _LOCKED)


class Store:
    """Leaderboard records in one SQLite file.

    Args:
        path: database file; created (with parent folders) unless ``create=False``.
        timeout: seconds SQLite's busy handler waits for a lock before a write is retried.
        retries: how many times a write that still finds the database locked is retried.
        create: if false, a missing file raises ``FileNotFoundError`` instead of being created.

    Each process opens its own ``Store``; a connection is not shared across processes or threads.
    """

    def __init__(self, path: str | Path = DEFAULT_DB, *, timeout: float = 30.0, retries: int = 20,
                 create: bool = True) -> None:
        self.path = Path(path)
        self.retries = retries
        if not self.path.exists():
            if not create:
                raise FileNotFoundError(f"no leaderboard database at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves, so writes can take the lock up front.
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL").fetchone())
        self._conn.execute("PRAGMA synchronous = NORMAL")  # durable in WAL mode up to a power cut
        try:
            # Check before locking, so reading an up-to-date (or too new) database never needs the write lock.
            if _read_version(self._conn) != SCHEMA_VERSION:
                with self._write() as conn:
                    migrate(conn, path=self.path)
        except BaseException:
            self._conn.close()
            raise

    # -- plumbing -------------------------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], T]) -> T:
        delay = 0.01
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if not _is_locked(err) or attempt == self.retries:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._retry(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self._conn
            self._retry(lambda: self._conn.execute("COMMIT"))
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return _read_version(self._conn)

    # -- writing --------------------------------------------------------------------------------------------

    def add(self, record: dict[str, Any]) -> bool:
        """Insert one record; return ``False`` if an identical record is already stored."""
        return self.add_many([record]) == 1

    def add_many(self, records: Iterable[dict[str, Any]]) -> int:
        """Insert records in one transaction (all or none); return how many were new.

        A record of an older schema is upgraded first (:func:`~lightning_gen.leaderboard.record.upgrade_record`).
        """
        # validate everything before writing
        rows = [self._row(normalize_record(upgrade_record(r))) for r in records]
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO records (record_id, run_name, model, family, dataset, dataset_id, "
                "created_at, " + ", ".join(INDEXED_METRICS) + ", record_json) VALUES ("
                + ", ".join("?" * (8 + len(INDEXED_METRICS))) + ")",
                rows)
            return conn.total_changes - before

    @staticmethod
    def _row(record: dict[str, Any]) -> tuple[Any, ...]:
        text = canonical_json(record)
        return (hashlib.sha256(text.encode()).hexdigest(), record["run_name"], record["model"], record["family"],
                record["dataset"], record["dataset_id"], record["created_at"],
                *(record["metrics"].get(k) for k in INDEXED_METRICS), text)

    # -- reading --------------------------------------------------------------------------------------------

    def records(self, *, dataset: str | None = None, dataset_id: str | None = None, model: str | None = None,
                family: str | None = None, latest_only: bool = False) -> list[dict[str, Any]]:
        """Stored records in insertion order, optionally filtered (``dataset`` is the class name, ``dataset_id``
        the data set).

        ``latest_only`` keeps the newest record (by ``created_at``) per run, dataset id and protocol, so that
        re-evaluating a run under the same protocol replaces its row on the board instead of adding one.
        """
        where, params = [], []
        for column, value in (("dataset", dataset), ("dataset_id", dataset_id), ("model", model),
                              ("family", family)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT record_json FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        out = [json.loads(text) for (text,) in self._conn.execute(sql, params)]
        if latest_only:
            newest: dict[tuple[str, str, str], dict[str, Any]] = {}
            for rec in out:
                key = (rec["run_name"], rec["dataset_id"], canonical_json(rec["protocol"]))
                if key not in newest or _created(rec) >= _created(newest[key]):
                    newest[key] = rec
            keep = {id(r) for r in newest.values()}
            out = [r for r in out if id(r) in keep]
        return out

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def datasets(self) -> list[str]:
        """The data module classes of the stored records, sorted."""
        return [d for (d,) in self._conn.execute("SELECT DISTINCT dataset FROM records ORDER BY dataset")]

    def dataset_ids(self) -> list[str]:
        """The dataset ids of the stored records, sorted: one board section each."""
        return [d for (d,) in self._conn.execute("SELECT DISTINCT dataset_id FROM records ORDER BY dataset_id")]

    # -- import / export ------------------------------------------------------------------------------------

    def export_json(self, path: str | Path) -> int:
        records = self.records()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(records, indent=1, allow_nan=False) + "\n")
        return len(records)

    def export_csv(self, path: str | Path) -> int:
        records = self.records()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            records_to_csv(records, f)
        return len(records)

    def import_file(self, path: str | Path) -> int:
        """Add the records of a ``.json`` (one record or a list), ``.jsonl`` or ``.csv`` file; return new count."""
        return self.add_many(read_records(path))


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a ``.json`` file (a record or a list of them), a ``.jsonl`` file, or a ``.csv`` export; records
    of an older schema come back upgraded to the current one."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return records_from_csv(f)
    if suffix == ".jsonl":
        return [upgrade_record(json.loads(line))
                for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return [upgrade_record(r) for r in (data if isinstance(data, list) else [data])]
    raise ValueError(f"unknown record file type {path.suffix!r} for {path}; expected .json, .jsonl or .csv")
