"""Leaderboard store, references and dashboard HTML (no browser; see test_dashboard_browser.py for that)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import lightning_gen.leaderboard as leaderboard
from lightning_gen.leaderboard import main
from lightning_gen.leaderboard.formatting import fmt_metric
from lightning_gen.leaderboard.html import STATIC_FILES, render_dashboard, static_text
from lightning_gen.leaderboard.ranking import METRICS, Entry, build_entries, choose_metric, interval, rank, spread
from lightning_gen.leaderboard.plots import (
    FAMILY_COLORS,
    LABEL_CHAR_WIDTH,
    LABEL_HEIGHT,
    OTHER_FAMILY_COLORS,
    PLOTS,
    PlotSpec,
    family_color,
    scatter_svg,
)
from lightning_gen.leaderboard.record import (
    FAMILY_PATTERN,
    METRIC_KEYS,
    OPTIONAL_KEYS,
    RECORD_SCHEMA,
    build_record,
    legacy_dataset_id,
    record_id,
    upgrade_record,
    validate_dataset_id,
    validate_family,
    validate_record,
)
from lightning_gen.leaderboard.references import PUBLISHED, published_entries
from lightning_gen.leaderboard.wandb_table import WANDB_COLUMNS, wandb_table_rows
from lightning_gen.leaderboard.store import (
    REQUIRED_KEYS,
    SCHEMA_VERSION,
    SchemaVersionError,
    Store,
    normalize_record,
    read_records,
    records_from_csv,
    records_to_csv,
)

REPO = Path(__file__).resolve().parents[1]


def make_grid(path: Path, seed: int, channels: int = 1, tiles: int = 4, size: int = 28) -> Path:
    """A non-blank tiled PNG, like a sample grid."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(tiles * size, tiles * size, channels), dtype=np.uint8)
    img[::size] = 0  # tile borders
    Image.fromarray(img[..., 0] if channels == 1 else img).save(path)
    return path


def make_record(run_name: str = "gated_pixelcnn_bmnist", **overrides) -> dict:
    record = {
        "schema": 2,
        "run_name": run_name,
        "model": "GatedPixelCNN",
        "family": "autoregressive",
        "dataset": "BinarizedMNIST",
        "dataset_id": "binarized-mnist-static",
        "image_shape": [1, 28, 28],
        "metrics": {**dict.fromkeys(METRIC_KEYS), "nll_nats": 82.41, "nll_bpd": 0.15166, "samples_per_s": 3.7,
                    "num_params": 1_204_737},
        "protocol": {"extractor": "mnist-lenet", "extractor_weights_sha256": "ab" * 32, "num_samples": 10000,
                     "reference_split": "test", "image_size": [28, 28], "nll_estimator": "exact",
                     "num_test_images": 10000, "devices": 1, "fid_biased": False,
                     "kid_kernel": "(x.y/d+1)^3, x/3.89595", "conditional": False, "label_distribution": None,
                     "sampler": None},
        "checkpoint": f"runs/{run_name}/checkpoints/last.ckpt",
        "checkpoint_sha256": "cd" * 32,
        "config": {"model": {"class_path": "lightning_gen.models.GatedPixelCNN",
                             "init_args": {"channels": 64, "layers": [7, 3]}}, "trainer": {"max_epochs": 30}},
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "wandb_url": f"https://wandb.ai/team/lightning_gen/runs/{run_name}",
        "sample_grid": None,
        "created_at": "2026-05-09T07:35:25+00:00",
        "train_time_s": 5400.0,
        "nll_per_image": None,
    }
    for key, value in overrides.items():
        if key in ("metrics", "protocol"):
            record[key] = {**record[key], **value}
        else:
            record[key] = value
    return record


def gan_record(run_name: str, fid: float, **overrides) -> dict:
    metrics = {"fid": fid, "is_mean": 6.0, "is_std": 0.1, "kid_mean": 0.03, "kid_std": 0.001, "nll_nats": None,
               "nll_bpd": None, "samples_per_s": 5000.0, **overrides.pop("metrics", {})}
    protocol = {"extractor": "inception-v3-compat", "num_samples": 10000, "nll_estimator": None,
                "image_size": [299, 299], **overrides.pop("protocol", {})}
    fields = {"model": "DCGAN", "family": "gan", "dataset": "CIFAR10", "dataset_id": "cifar10",
              "image_shape": [3, 32, 32], **overrides}
    return make_record(run_name, metrics=metrics, protocol=protocol, **fields)


# ----------------------------------------------------------------------------------------------------------
# Store


def test_round_trip_and_duplicates(tmp_path):
    rec = make_record()
    with Store(tmp_path / "lb.sqlite") as store:
        assert store.add(rec) is True
        assert store.add(copy.deepcopy(rec)) is False  # identical record: stored once
        assert store.add(make_record(metrics={"nll_nats": 82.0})) is True
        assert len(store) == 2
        assert store.records()[0] == rec
    with Store(tmp_path / "lb.sqlite") as store:  # persisted
        assert [r["metrics"]["nll_nats"] for r in store.records()] == [82.41, 82.0]


def test_absent_optional_keys_are_stored_as_null(tmp_path):
    rec = make_record()
    for key in ("wandb_url", "sample_grid", "config", "train_time_s"):
        del rec[key]
    del rec["metrics"]["fid"], rec["protocol"]["devices"]
    with Store(tmp_path / "lb.sqlite") as store:
        store.add(rec)
        (got,) = store.records()
    assert got["wandb_url"] is None and got["config"] is None
    assert got["metrics"]["fid"] is None and got["protocol"]["devices"] is None
    assert got == normalize_record(rec)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_required_key_is_named(tmp_path, key):
    rec = make_record()
    del rec[key]
    with Store(tmp_path / "lb.sqlite") as store:
        with pytest.raises(ValueError, match=repr(key)):
            store.add(rec)
        assert len(store) == 0


@pytest.mark.parametrize("key, value, named", [
    ("family", "Diffusion", "family"),
    ("image_shape", [28, 28], "image_shape"),
    ("created_at", "yesterday", "created_at"),
    ("metrics", {"fid": float("nan")}, "metrics.fid"),
    ("metrics", {"nll_bpd": "0.15"}, "metrics.nll_bpd"),
    ("schema", 3, "schema"),
    ("run_name", "", "run_name"),
    ("dataset_id", "Binarized MNIST", "dataset_id"),
    ("dataset_id", "", "dataset_id"),
])
def test_invalid_values_are_refused(tmp_path, key, value, named):
    rec = make_record(**{key: value})
    with Store(tmp_path / "lb.sqlite") as store:
        with pytest.raises(ValueError, match=named):
            store.add(rec)


@pytest.mark.parametrize("family", ["autoregressive", "diffusion", "score-based", "flow_2", "x"])
def test_any_lowercase_family_is_accepted(tmp_path, family):
    with Store(tmp_path / "lb.sqlite") as store:
        assert store.add(make_record(family=family))
        assert store.records(family=family)[0]["family"] == family


@pytest.mark.parametrize("family", ["", "Diffusion", "2gan", "_gan", "gan model", "gan/x", "gän", None, 3])
def test_family_spelling_is_checked(family):
    with pytest.raises(ValueError, match="'family'") as err:
        validate_record(make_record(family=family))
    assert FAMILY_PATTERN in str(err.value) and "lowercase" in str(err.value)


def _built(**overrides) -> dict:
    fields = {"run_name": "r", "model": "GatedPixelCNN", "family": "autoregressive", "dataset": "BinarizedMNIST",
              "dataset_id": "binarized-mnist-static", "image_shape": (1, 28, 28), "metrics": {"nll_nats": 82.41},
              "protocol": {"nll_estimator": "exact"}}
    return build_record(**{**fields, **overrides})


def test_build_record_is_what_the_store_stores(tmp_path):
    rec = _built(created_at="2026-05-09T07:35:25+00:00", checkpoint="runs/r/last.ckpt", wandb_url=None,
                 config={"trainer": {"max_epochs": 3}}, train_time_s=12.5)
    assert rec["schema"] == RECORD_SCHEMA == 2 and rec["dataset_id"] == "binarized-mnist-static"
    assert rec["image_shape"] == [1, 28, 28] and rec["created_at"] == "2026-05-09T07:35:25+00:00"
    assert set(OPTIONAL_KEYS) <= set(rec) and rec["wandb_url"] is None and rec["sample_grid"] is None
    assert rec["metrics"]["fid"] is None and rec["protocol"]["devices"] is None  # known keys filled in
    with Store(tmp_path / "lb.sqlite") as store:
        assert store.add(rec)
        assert store.records() == [rec]
        assert not store.add(_built(created_at="2026-05-09T07:35:25+00:00", checkpoint="runs/r/last.ckpt",
                                    config={"trainer": {"max_epochs": 3}}, train_time_s=12.5))  # same record
    assert record_id(rec) == record_id(json.loads(json.dumps(rec)))


def test_build_record_stamps_the_time_in_utc():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    created = datetime.fromisoformat(_built()["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert before <= created <= datetime.now(timezone.utc)


def test_build_record_refuses_unknown_and_invalid_keys():
    with pytest.raises(ValueError, match="'wandb_run'") as err:
        _built(wandb_run="x")
    assert all(key in str(err.value) for key in OPTIONAL_KEYS)
    with pytest.raises(ValueError, match="'schema'"):
        _built(schema=2)  # not an optional key: the builder sets it
    with pytest.raises(ValueError, match="'dataset_id'"):
        _built(dataset_id="BinarizedMNIST")  # the data module's id, not its class name
    fields = {k: v for k, v in _built().items() if k in ("run_name", "model", "family", "dataset", "image_shape",
                                                         "metrics", "protocol")}
    with pytest.raises(TypeError, match="dataset_id"):
        build_record(**fields)  # required: a record without it could not be ranked with the right numbers
    with pytest.raises(ValueError, match="'family'"):
        _built(family="GAN")
    with pytest.raises(ValueError, match="'metrics.nll_nats'"):
        _built(metrics={"nll_nats": float("inf")})
    with pytest.raises(ValueError, match="'train_time_s'"):
        _built(train_time_s="1h")


def test_add_many_is_all_or_nothing(tmp_path):
    bad = make_record("bad")
    del bad["dataset"]
    with Store(tmp_path / "lb.sqlite") as store:
        with pytest.raises(ValueError, match="'dataset'"):
            store.add_many([make_record("good"), bad])
        assert len(store) == 0


def test_values_are_bound_not_formatted(tmp_path):
    name = "x'); DROP TABLE records; --"
    with Store(tmp_path / "lb.sqlite") as store:
        store.add(make_record(name, dataset="MNIST' OR '1'='1"))
        assert store.records(dataset="MNIST' OR '1'='1")[0]["run_name"] == name
        assert store.records(dataset="MNIST") == []
        assert len(store) == 1


def test_filters_and_latest_only(tmp_path):
    with Store(tmp_path / "lb.sqlite") as store:
        store.add(make_record("a", created_at="2026-05-01T00:00:00+00:00", metrics={"nll_nats": 90.0}))
        store.add(make_record("a", created_at="2026-05-02T00:00:00+00:00", metrics={"nll_nats": 85.0}))
        store.add(make_record("a", protocol={"nll_estimator": "importance-weighted k=5000"}))  # another protocol
        store.add(gan_record("g", 40.0))
        assert {r["run_name"] for r in store.records(family="gan")} == {"g"}
        assert len(store.records(dataset="BinarizedMNIST")) == 3
        latest = store.records(dataset="BinarizedMNIST", latest_only=True)
        assert sorted(r["metrics"]["nll_nats"] for r in latest) == [82.41, 85.0]
        assert store.datasets() == ["BinarizedMNIST", "CIFAR10"]


def test_latest_only_compares_times_not_strings(tmp_path):
    with Store(tmp_path / "lb.sqlite") as store:
        store.add(make_record("a", created_at="2026-05-01T23:30:00+00:00", metrics={"nll_nats": 85.0}))
        store.add(make_record("a", created_at="2026-05-02T01:00:00+02:00", metrics={"nll_nats": 90.0}))  # earlier
        (latest,) = store.records(latest_only=True)
    assert latest["metrics"]["nll_nats"] == 85.0


_WRITER = """
import json, sys, time
from pathlib import Path
from lightning_gen.leaderboard.store import Store
db, records, go = sys.argv[1:4]
records = json.loads(Path(records).read_text())
while not Path(go).exists():
    time.sleep(0.001)
store = Store(db)  # both writers also race to create the database
for rec in records:
    store.add(rec)
store.close()
"""


def test_concurrent_writers_lose_nothing(tmp_path):
    db = tmp_path / "lb.sqlite"
    go = tmp_path / "go"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    procs = []
    for w in range(2):
        recs = [make_record(f"writer{w}-run{i:03d}", metrics={"nll_nats": 80.0 + i / 10}) for i in range(200)]
        (tmp_path / f"records{w}.json").write_text(json.dumps(recs))
        procs.append(subprocess.Popen([sys.executable, str(script), str(db), str(tmp_path / f"records{w}.json"),
                                       str(go)], stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "PYTHONPATH": str(REPO)}))
    time.sleep(0.5)  # let both interpreters start and wait at the barrier
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with Store(db) as store:
        names = [r["run_name"] for r in store.records()]
    assert len(names) == 400
    assert set(names) == {f"writer{w}-run{i:03d}" for w in range(2) for i in range(200)}
    # and the writes really did interleave, so the test exercised the locking
    first_writer = [n.startswith("writer0") for n in names]
    assert any(a != b for a, b in zip(first_writer, first_writer[1:]))


def test_wal_mode(tmp_path):
    Store(tmp_path / "lb.sqlite").close()
    conn = sqlite3.connect(tmp_path / "lb.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_schema_version_recorded_and_newer_refused(tmp_path):
    db = tmp_path / "lb.sqlite"
    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        store.add(make_record())
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(db)


def test_migrates_an_empty_database_file(tmp_path):
    db = tmp_path / "lb.sqlite"
    sqlite3.connect(db).close()  # an existing file at version 0
    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        store.add(make_record())
        assert len(store) == 1


# The table layout of database version 1, as lightning_gen wrote it before records had a dataset id.
_SCHEMA_1_TABLE = """
    CREATE TABLE records (
        id INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL UNIQUE, run_name TEXT NOT NULL,
        model TEXT NOT NULL, family TEXT NOT NULL, dataset TEXT NOT NULL, created_at TEXT NOT NULL,
        fid REAL, is_mean REAL, kid_mean REAL, nll_nats REAL, nll_bpd REAL, probe_acc REAL, samples_per_s REAL,
        num_params REAL, record_json TEXT NOT NULL)"""
_SCHEMA_1_METRICS = ("fid", "is_mean", "kid_mean", "nll_nats", "nll_bpd", "probe_acc", "samples_per_s", "num_params")


def schema_1_record(run_name: str, dataset: str, config: dict | None, **overrides) -> dict:
    """A record as schema 1 wrote it: the data module's class name, no dataset id."""
    rec = make_record(run_name, dataset=dataset, config=config, **overrides)
    rec["schema"] = 1
    del rec["dataset_id"]
    return rec


def write_schema_1_database(path: Path, records: list[dict]) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.execute(_SCHEMA_1_TABLE)
    for rec in records:
        text = json.dumps(rec, sort_keys=True, separators=(",", ":"), allow_nan=False)
        conn.execute("INSERT INTO records (record_id, run_name, model, family, dataset, created_at, "
                     + ", ".join(_SCHEMA_1_METRICS) + ", record_json) VALUES (" + ", ".join("?" * 15) + ")",
                     (hashlib.sha256(text.encode()).hexdigest(), rec["run_name"], rec["model"], rec["family"],
                      rec["dataset"], rec["created_at"], *(rec["metrics"][k] for k in _SCHEMA_1_METRICS), text))
    conn.commit()
    conn.close()


def _cli_data(cls: str, **init_args) -> dict:
    """A run's config.yaml as LightningCLI saves it, as far as the data module goes."""
    return {"data": {"class_path": f"lightning_gen.data.{cls}", "init_args": init_args},
            "trainer": {"max_epochs": 1}}


#: Schema-1 records (class, config, image_shape) and the dataset id they are upgraded to.
LEGACY_IDS = [
    ("BinarizedMNIST", _cli_data("BinarizedMNIST", binarization="static", batch_size=100), [1, 28, 28],
     "binarized-mnist-static"),
    ("BinarizedMNIST", _cli_data("BinarizedMNIST", binarization="dynamic", batch_size=100), [1, 28, 28],
     "binarized-mnist-dynamic"),
    ("BinarizedMNIST", {"data": {"binarization": "dynamic"}}, [1, 28, 28], "binarized-mnist-dynamic"),
    ("BinarizedMNIST", None, [1, 28, 28], "binarized-mnist-static"),  # static was the default
    ("BinarizedMNIST", {"z_dim": 50, "num_levels": 2}, [1, 28, 28], "binarized-mnist-static"),  # model hparams
    ("Digits", _cli_data("Digits", binarize=True), [1, 8, 8], "digits-binary"),
    ("Digits", {"model": {"init_args": {"num_levels": 2}}}, [1, 8, 8], "digits-binary"),
    ("Digits", {"num_levels": 2, "z_dim": 2}, [1, 8, 8], "digits-binary"),
    ("Digits", _cli_data("Digits", binarize=False, batch_size=64), [1, 8, 8], "digits-8bit"),
    ("Digits", _cli_data("Digits", test_size=300, split_seed=1), [1, 8, 8], "digits-8bit-test300-seed1"),
    ("Digits", None, [1, 8, 8], "digits-8bit"),
    ("MNIST", None, [1, 28, 28], "mnist"),
    ("FashionMNIST", _cli_data("FashionMNIST", val_size=1000), [1, 28, 28], "fashion-mnist"),
    ("CIFAR10", None, [3, 32, 32], "cifar10"),
    ("ImageFolder", _cli_data("ImageFolder", folder="celeba/img_align_celeba", size=64), [3, 64, 64],
     "imagefolder-img-align-celeba-64"),
    ("ImageFolder", None, [1, 32, 32], "imagefolder-unknown-32-grey"),
    ("RingOfGaussians", _cli_data("RingOfGaussians", num_modes=25, std=0.05), [1, 1, 2], "ring-25modes-r2-std0.05"),
    ("MyFaces", None, [3, 64, 64], "my-faces-unknown"),  # a class the upgrade cannot vouch for: its own section
]


@pytest.mark.parametrize("dataset, config, shape, expected", LEGACY_IDS)
def test_schema_1_records_get_the_dataset_id_their_config_implies(dataset, config, shape, expected):
    old = schema_1_record("r", dataset, config, image_shape=shape)
    assert legacy_dataset_id(old) == expected
    new = upgrade_record(old)
    assert new["schema"] == RECORD_SCHEMA and new["dataset_id"] == expected and old["schema"] == 1  # a copy
    assert {k: v for k, v in new.items() if k not in ("schema", "dataset_id")} == \
        {k: v for k, v in old.items() if k != "schema"}
    validate_record(new)


@pytest.mark.parametrize("cls, init_args", [
    ("BinarizedMNIST", {}), ("BinarizedMNIST", {"binarization": "dynamic", "binarization_seed": 3}),
    ("Digits", {}), ("Digits", {"binarize": True}), ("Digits", {"test_size": 500, "split_seed": 2}),
    ("MNIST", {"val_size": 100}), ("FashionMNIST", {}), ("CIFAR10", {}),
    ("ImageFolder", {"folder": "celeba/img_align_celeba"}),
    ("ImageFolder", {"folder": "faces/", "size": 32, "channels": 1, "test_size": 100}),
    ("RingOfGaussians", {}), ("RingOfGaussians", {"num_modes": 25, "radius": 1.5, "std": 0.05}),
])
def test_upgraded_ids_are_the_ids_the_data_modules_state(tmp_path, cls, init_args):
    """An old record and a new evaluation of the same run land in one section."""
    import lightning_gen.data as data

    module = getattr(data, cls)(root=str(tmp_path), **init_args)
    old = schema_1_record("r", cls, _cli_data(cls, **init_args), image_shape=list(module.image_shape))
    assert legacy_dataset_id(old) == module.dataset_id


def test_schema_1_database_is_migrated_on_open(tmp_path):
    old = [schema_1_record(f"run{i}", dataset, config, image_shape=shape, metrics={"nll_nats": 80.0 + i})
           for i, (dataset, config, shape, _) in enumerate(LEGACY_IDS)]
    expected = {f"run{i}": dataset_id for i, (*_, dataset_id) in enumerate(LEGACY_IDS)}
    db = tmp_path / "old.sqlite"
    write_schema_1_database(db, old)
    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION == 2
        got = {r["run_name"]: r for r in store.records()}
        assert {name: r["dataset_id"] for name, r in got.items()} == expected
        for rec in old:  # nothing else changed
            new = got[rec["run_name"]]
            assert new["schema"] == RECORD_SCHEMA
            assert {k: v for k, v in new.items() if k not in ("schema", "dataset_id")} == \
                {k: v for k, v in rec.items() if k != "schema"}
        assert store.dataset_ids() == sorted(set(expected.values()))
        assert [r["run_name"] for r in store.records(dataset_id="binarized-mnist-dynamic")] == ["run1", "run2"]
        # the stored hash is the upgraded record's: the old record, or its upgrade, is not stored twice
        assert not store.add(old[0]) and not store.add(got["run0"]) and len(store) == len(old)
        store.add(make_record("new", metrics={"nll_nats": 79.0}))
    with Store(db) as store:  # opening it again changes nothing
        assert len(store) == len(old) + 1 and store.records()[0] == got["run0"]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    assert dict(conn.execute("SELECT run_name, dataset_id FROM records")) == {**expected,
                                                                            "new": "binarized-mnist-static"}
    conn.close()


def _schema_1_csv(path: Path, records: list[dict]) -> None:
    """A CSV export as schema 1 wrote it: no dataset_id column."""
    import csv

    top = ("schema", "run_name", "model", "family", "dataset", "image_shape", "created_at", "train_time_s",
           "checkpoint", "checkpoint_sha256", "git_commit", "wandb_url", "sample_grid", "config")
    columns = [*top, *(f"metrics.{k}" for k in records[0]["metrics"]),
               *(f"protocol.{k}" for k in records[0]["protocol"])]

    def cell(value):
        if value is None:
            return ""
        return value if isinstance(value, str) else repr(value) if isinstance(value, float) else json.dumps(value)

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for rec in records:
            writer.writerow([cell(rec[c.partition(".")[0]][c.partition(".")[2]] if "." in c else rec[c])
                             for c in columns])


def test_schema_1_json_and_csv_imports_are_upgraded(tmp_path):
    old = [schema_1_record(f"run{i}", dataset, config, image_shape=shape)
           for i, (dataset, config, shape, _) in enumerate(LEGACY_IDS[:9])]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "old.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    _schema_1_csv(tmp_path / "old.csv", old)
    for name in ("old.json", "old.jsonl", "old.csv"):
        assert [r["dataset_id"] for r in read_records(tmp_path / name)] == [e[-1] for e in LEGACY_IDS[:9]], name
    with Store(tmp_path / "lb.sqlite") as store:
        assert store.import_file(tmp_path / "old.csv") == len(old)
        assert store.import_file(tmp_path / "old.json") == 0  # the same records, whichever file they came from
        assert store.import_file(tmp_path / "old.jsonl") == 0
        assert store.records() == [normalize_record(upgrade_record(r)) for r in old]
    # the command line's --import too: the old runs land in the sections of their data sets
    assert main(["--db", str(tmp_path / "lb2.sqlite"), "--out", str(tmp_path / "i.html"), "--import",
                 str(tmp_path / "old.csv")]) == 0
    sections = _sections((tmp_path / "i.html").read_text())
    assert {run for _, run, _ in sections["binarized-mnist-dynamic"].rows} >= {"run1", "run2"}
    assert {run for _, run, _ in sections["digits-8bit"].rows} == {"run8"}


def test_missing_database_not_created_on_request(tmp_path):
    with pytest.raises(FileNotFoundError):
        Store(tmp_path / "none.sqlite", create=False)
    assert not (tmp_path / "none.sqlite").exists()


def _varied_records() -> list[dict]:
    return [
        make_record(),
        make_record('run, with "quotes"\nand a newline, ünïcode', metrics={"nll_bpd": 1e-05, "custom": 2.5}),
        gan_record("dcgan_cifar", 41.37, protocol={"extra_field": "x"}, train_time_s=None, wandb_url=None),
        make_record("2024", model="VAE", family="latent", config={"nested": {"list": [1, 2.5, None, "s"]}}),
    ]


def test_json_export_import_equality(tmp_path):
    with Store(tmp_path / "a.sqlite") as a:
        a.add_many(_varied_records())
        assert a.export_json(tmp_path / "out.json") == 4
        with Store(tmp_path / "b.sqlite") as b:
            assert b.import_file(tmp_path / "out.json") == 4
            assert b.records() == a.records()
        assert a.import_file(tmp_path / "out.json") == 0  # importing an export again adds nothing


def test_csv_export_import_equality(tmp_path):
    with Store(tmp_path / "a.sqlite") as a:
        a.add_many(_varied_records())
        a.export_csv(tmp_path / "out.csv")
        with Store(tmp_path / "b.sqlite") as b:
            assert b.import_file(tmp_path / "out.csv") == 4
            assert b.records() == a.records()
    header = (tmp_path / "out.csv").read_text().splitlines()[0].split(",")
    assert {"run_name", "metrics.fid", "metrics.nll_bpd", "metrics.custom", "protocol.extractor",
            "protocol.num_samples", "protocol.extra_field"} <= set(header)
    assert "metrics" not in header and "protocol" not in header


def test_csv_keeps_types(tmp_path):
    (got,) = records_from_csv(_csv_text([make_record("7", metrics={"num_params": 12, "fid": 3.0})]))
    assert got["run_name"] == "7"
    assert isinstance(got["metrics"]["num_params"], int) and isinstance(got["metrics"]["fid"], float)
    assert got["protocol"]["image_size"] == [28, 28]


def _csv_text(records):
    import io

    buf = io.StringIO()
    records_to_csv(records, buf)
    buf.seek(0)
    return buf


def test_read_records_formats(tmp_path):
    rec = make_record()
    (tmp_path / "one.json").write_text(json.dumps(rec))
    (tmp_path / "many.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps(gan_record("g", 1.0)) + "\n")
    assert read_records(tmp_path / "one.json") == [rec]
    assert len(read_records(tmp_path / "many.jsonl")) == 2
    with pytest.raises(ValueError, match="expected .json"):
        read_records(tmp_path / "x.txt")


# ----------------------------------------------------------------------------------------------------------
# References


def test_references_are_well_formed():
    assert len(PUBLISHED) >= 20
    for ref in PUBLISHED:
        assert ref.metric in METRICS and ref.source and ref.protocol
        validate_family(ref.family)
    by_key = {(r.model, r.dataset, r.metric, r.source): r.value for r in PUBLISHED}
    # spot checks against REFERENCE.md
    assert by_key[("PixelRNN (Diagonal BiLSTM, 7 layers, h=16)", "BinarizedMNIST", "nll_nats",
                   "van den Oord et al. 2016, arXiv 1601.06759, Table 4")] == 79.20
    assert by_key[("PixelCNN++", "CIFAR10", "nll_bpd", "Salimans et al. 2017")] == 2.92
    assert by_key[("DCGAN", "CIFAR10", "fid", "PyTorch-StudioGAN benchmark")] == 48.29


def test_published_entries_group_one_source():
    dcgan = [e for e in published_entries("cifar10")
             if e["model"] == "DCGAN" and e["source"] == "PyTorch-StudioGAN benchmark"]
    assert len(dcgan) == 1 and dcgan[0]["metrics"] == {"is_mean": 6.11, "fid": 48.29}


def test_binarized_mnist_references_name_their_binarization():
    """Static and dynamic binarization are two data sets (REFERENCE.md): every row says which, in id and label."""
    from lightning_gen.data import CIFAR10, MNIST, BinarizedMNIST

    ids = {BinarizedMNIST(binarization=b).dataset_id: b for b in ("static", "dynamic")}
    for ref in PUBLISHED:
        validate_dataset_id(ref.dataset_id)
        if ref.dataset == "BinarizedMNIST":
            assert ref.dataset_id in ids and f"{ids[ref.dataset_id]} binarization" in ref.protocol, ref
        elif ref.dataset == "MNIST":  # 8-bit MNIST (the flows' rows)
            assert ref.dataset_id == MNIST.dataset_id, ref
        else:
            assert ref.dataset == "CIFAR10" and ref.dataset_id == CIFAR10.dataset_id, ref
    by_number = {(r.model, r.value): r.dataset_id for r in PUBLISHED if r.dataset == "BinarizedMNIST"}
    static, dynamic = "binarized-mnist-static", "binarized-mnist-dynamic"
    assert by_number[("VAE (1 layer, k=1 training)", 88.71)] == static
    assert by_number[("VAE (1 stochastic layer)", 86.76)] == dynamic
    assert by_number[("Gated PixelCNN", 81.50)] == dynamic
    assert by_number[("PixelRNN (Diagonal BiLSTM, 7 layers, h=16)", 79.20)] == static
    for model, value in (("FVSBN", 97.45), ("NADE (fixed order)", 88.86), ("MADE (1 hidden layer, 1 mask)", 88.40),
                         ("MADE (1 hidden layer, 32 masks)", 88.04), ("MADE (2 hidden layers, 32 masks)", 86.64)):
        assert by_number[(model, value)] == static
    for model, value in (("FVSBN", 96.58), ("NADE (H=500)", 85.65), ("MADE (1 hidden layer of 8000, 1 mask)", 84.87),
                         ("PixelCNN", 81.45), ("VAE", 86.77), ("VD-VAE", 80.72)):  # pytorch-generative's own runs
        assert by_number[(model, value)] == dynamic
    assert {e["dataset_id"] for e in published_entries(static)} == {static}
    assert {e["model"] for e in published_entries(dynamic)} >= {"VAE (1 stochastic layer)", "Gated PixelCNN"}


class _Page(HTMLParser):
    """Collects tags with attributes, table rows as (attrs, text) and all text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[tuple[dict, str]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._row: tuple[dict, list[str]] | None = None
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "tr":
            self._row = (attrs, [])
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append((self._row[0], " ".join(self._row[1])))
            self._row = None
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)
            return
        self.text.append(data)
        if self._row is not None:
            self._row[1].append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def test_published_rows_on_the_board_and_marked():
    page = _parse(render_dashboard(build_entries([])))
    published = [(a, t) for a, t in page.rows if "published" in a.get("class", "").split()]
    assert len(published) == len(published_entries())
    for ref in PUBLISHED:
        shown = fmt_metric(ref.metric, ref.value)
        assert any(ref.model in t and shown in t and ref.source in t and "published" in t for _, t in published), ref
    # ranked by NLL on Binarized MNIST: the Diagonal BiLSTM's 79.20 is first
    bmnist = [t for a, t in published if "79.20" in t or "80.54" in t]
    assert bmnist[0].lstrip().startswith("1 ")


# ----------------------------------------------------------------------------------------------------------
# Ranking


@pytest.mark.parametrize("metric", list(METRICS))
def test_rank_follows_metric_direction(metric):
    values = [3.0, 1.0, None, 2.0, 1.0]
    entries = [Entry(model=f"m{i}", family="gan", dataset="D", dataset_id="d", metrics={metric: v})
               for i, v in enumerate(values)]
    ranked = rank(entries, metric)
    got = [e.metrics[metric] for _, e in ranked]
    expect = [1.0, 1.0, 2.0, 3.0] if METRICS[metric].lower_is_better else [3.0, 2.0, 1.0, 1.0]
    assert got == expect + [None]
    ranks = [r for r, _ in ranked]
    assert ranks == ([1, 1, 3, 4, None] if METRICS[metric].lower_is_better else [1, 2, 3, 3, None])


def test_rows_whose_intervals_overlap_share_a_rank():
    """value ± spread intervals that overlap tie (competition ranks); a published point inside a run's interval
    ties with it; a row is compared with its tie group's first row, not with its neighbour."""
    def e(name, nll, se=None, published=False):
        metrics = {"nll_nats": nll} | ({} if se is None else {"nll_nats_se": se})
        return Entry(model=name, family="autoregressive", dataset="D", dataset_id="d", metrics=metrics,
                     published=published)

    entries = [e("e", 12.0, 0.2), e("c", 11.2, 0.5), e("a", 10.0, 0.5), e("d", 11.5, published=True),
               e("b", 10.4, 0.1), e("f", 10.6, 0.1)]
    got = [(r, x.model) for r, x in rank(entries, "nll_nats")]
    # a [9.5, 10.5]; b [10.3, 10.5] overlaps a; f [10.5, 10.7] touches a's end; c [10.7, 11.7] overlaps f but
    # not a, so it starts a group; d (a point) lies in c's interval; e [11.8, 12.2] is clear of c.
    assert got == [(1, "a"), (1, "b"), (1, "f"), (4, "c"), (4, "d"), (6, "e")]
    assert interval(entries[0], "nll_nats") == pytest.approx((11.8, 12.2))
    assert spread(entries[3], "nll_nats") is None  # a published number has no spread: a point

    sections = _sections(render_dashboard(entries))
    rows = sections["d"].rows
    assert [r for r, _, _ in rows] == [1, 1, 1, 4, 4, 6]
    page = render_dashboard(entries)
    assert page.count('class="rank tie"') == 5 and ">=1</td>" in page and ">=4</td>" in page
    assert ">6</td>" in page and ">=6</td>" not in page


def test_choose_metric():
    e = lambda **m: Entry(model="m", family="gan", dataset="D", dataset_id="d", metrics=m)  # noqa: E731
    assert choose_metric([e(fid=1.0, is_mean=2.0), e(nll_bpd=3.0)]) == "nll_bpd"  # any likelihood ranks first
    assert choose_metric([e(fid=1.0, is_mean=2.0), e(is_mean=3.0)]) == "fid"  # FID where none has one
    assert choose_metric([e(fid=1.0), e(nll_bpd=3.0)], "nll_bpd") == "nll_bpd"
    assert choose_metric([e(nll_bpd=3.0)], "fid") == "nll_bpd"  # preferred absent: fall back
    assert choose_metric([e(nll_nats=80.0), e(nll_nats=81.0), e(nll_bpd=0.15)]) == "nll_nats"
    assert choose_metric([e()]) is None
    with pytest.raises(ValueError, match="unknown metric"):
        choose_metric([e()], "accuracy")


class _Sections(HTMLParser):
    """Per board section (``data-dataset``): the ranked-by sentence and each row's (rank, run or model, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, SimpleNamespace] = {}
        self._section: SimpleNamespace | None = None
        self._row: list | None = None
        self._ranked_by = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = self.sections[attrs["data-dataset"]] = SimpleNamespace(heading="", ranked_by="", rows=[])
        elif tag == "p" and attrs.get("class") == "ranked-by":
            self._ranked_by = True
        elif tag == "tr" and "entry" in attrs.get("class", "").split():
            self._row = [None, attrs["data-run"], ""]
        elif tag == "td" and "rank" in attrs.get("class", "").split() and self._row is not None:
            self._row[0] = int(attrs["data-sort"]) if attrs["data-sort"] else None

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self._section.rows.append(tuple(self._row))
            self._row = None
        if tag == "p":
            self._ranked_by = False

    def handle_data(self, data):
        if self._ranked_by:
            self._section.ranked_by += data
        if self._row is not None:
            self._row[2] += data + " "


def _sections(page_html: str) -> dict[str, SimpleNamespace]:
    parser = _Sections()
    parser.feed(page_html)
    return parser.sections


def test_a_data_set_with_any_likelihood_is_ranked_by_it():
    # Measured on main: a 1-epoch VAE at 191 nats came first by its FID, the published 79-89-nat rows unranked.
    vae = make_record("vae_1epoch", model="VAE", family="latent",
                      metrics={"nll_nats": 191.0, "nll_bpd": 0.3515, "fid": 12.3, "samples_per_s": 9e4},
                      protocol={"nll_estimator": "importance-weighted k=5000"})
    sections = _sections(render_dashboard(build_entries([vae])))
    static = sections["binarized-mnist-static"]
    assert static.ranked_by.startswith("1 run, 12 published. Ranked by NLL (nats) (lower is better; the likelihood")
    published = [(r, text) for r, run, text in static.rows if run != "vae_1epoch"]
    (run_rank,) = [r for r, run, _ in static.rows if run == "vae_1epoch"]
    assert all(r is not None and r < run_rank for r, _ in published) and run_rank == len(published) + 1
    assert next(text for r, text in published if r == 1).startswith("1 PixelRNN (Diagonal BiLSTM")
    # only statically binarized numbers share its table
    assert not any("86.76" in text or "81.50" in text for _, _, text in static.rows)
    assert any("86.76" in text for _, _, text in sections["binarized-mnist-dynamic"].rows)


def test_fid_ranks_a_data_set_without_likelihoods():
    celeba = {"dataset": "ImageFolder", "dataset_id": "imagefolder-img-align-celeba-64", "image_shape": [3, 64, 64]}
    records = [gan_record("dcgan_celeba", 41.0, **celeba), gan_record("wgan_celeba", 30.5, **celeba),
               gan_record("dcgan_cifar", 35.0)]
    sections = _sections(render_dashboard(build_entries(records)))
    celeba_section = sections["imagefolder-img-align-celeba-64"]
    assert "Ranked by FID (lower is better; no entry reports a likelihood)" in celeba_section.ranked_by
    assert [(r, run) for r, run, _ in celeba_section.rows] == [(1, "wgan_celeba"), (2, "dcgan_celeba")]
    # CIFAR-10's published table has likelihoods: bits/dim ranks it, the GAN stays sortable by FID on a click
    cifar = sections["cifar10"]
    assert "Ranked by NLL (bits/dim)" in cifar.ranked_by
    assert [r for r, run, _ in cifar.rows if run == "dcgan_cifar"] == [None]
    page = _parse(render_dashboard(build_entries(records)))
    fid_headers = [a for t, a in page.tags if t == "th" and a.get("title") == "lower is better"
                   and "sortable" in a.get("class", "")]
    assert fid_headers  # every metric column sorts on click


def test_static_and_dynamic_binarization_are_separate_sections():
    runs = [make_record("ours_static", metrics={"nll_nats": 85.0}),
            make_record("ours_dynamic", dataset_id="binarized-mnist-dynamic", metrics={"nll_nats": 85.0})]
    entries = build_entries(runs)
    sections = _sections(render_dashboard(entries))
    assert {"binarized-mnist-static", "binarized-mnist-dynamic"} <= set(sections)
    static = {run: r for r, run, _ in sections["binarized-mnist-static"].rows}
    dynamic = {run: r for r, run, _ in sections["binarized-mnist-dynamic"].rows}
    assert "ours_dynamic" not in static and "ours_static" not in dynamic
    assert static["ours_static"] == 4  # after 79.20, 80.54, 81.30; before 86.64 and the rest
    assert dynamic["ours_dynamic"] == 6  # after 80.72, 81.45, 81.50, 84.78, 84.87; before 85.65
    # the W&B table ranks the same way and names the data set
    rows = {row[WANDB_COLUMNS.index("run_name")]: row for row in wandb_table_rows(entries)}
    assert rows["ours_static"][WANDB_COLUMNS.index("rank")] == 4
    assert rows["ours_dynamic"][WANDB_COLUMNS.index("dataset_id")] == "binarized-mnist-dynamic"
    assert rows["ours_dynamic"][WANDB_COLUMNS.index("rank")] == 6
    heading = _parse(render_dashboard(entries))
    assert "BinarizedMNIST" in heading.text  # the class name is shown under the id


def test_dashboard_ranks_runs_among_published(tmp_path):
    records = [gan_record("wgan_gp_ours", 35.5), gan_record("dcgan_ours", 60.1)]
    page = _parse(render_dashboard(build_entries(records), metric="fid"))
    cifar = [t for a, t in page.rows if a.get("class", "").startswith("entry")
             and ("_ours" in t or "CIFAR10" in t or "Inception-v3" in t)]
    fids = [float(x.split()[0]) for x in (_fid_of(t) for t in cifar) if x]
    assert fids == sorted(fids) and 35.5 in fids and 48.29 in fids and 60.1 in fids
    order = [t for t in cifar if "_ours" in t]
    assert "wgan_gp_ours" in order[0]


def _fid_of(row_text: str) -> str | None:
    for token in row_text.split():
        try:
            v = float(token)
        except ValueError:
            continue
        if v in (26.08, 28.95, 35.5, 48.29, 53.98, 60.1, 107.68):
            return token
    return None


# ----------------------------------------------------------------------------------------------------------
# Page content and escaping


def test_protocol_printed_beside_numbers():
    page = render_dashboard(build_entries([gan_record("g", 41.0), make_record()], include_published=False))
    text = "".join(_parse(page).text)
    assert "41.00inception-v3-compat · 10k samples vs test" in text
    assert "0.152exact · 10k test images" in text  # bits/dim; nats would be the same number again


def test_sample_grid_embedded_as_data_uri(tmp_path):
    grid = make_grid(tmp_path / "grid.png", seed=0)
    page = _parse(render_dashboard(build_entries([make_record(sample_grid=str(grid))], include_published=False)))
    (img,) = [a for t, a in page.tags if t == "img" and "grid" in a.get("class", "")]
    assert img["src"].startswith("data:image/png;base64,")
    assert base64.b64decode(img["src"].split(",", 1)[1]) == grid.read_bytes()


def test_relative_grid_path_resolved_from_root(tmp_path):
    (tmp_path / "samples").mkdir()
    make_grid(tmp_path / "samples" / "g.png", seed=1)
    entries = build_entries([make_record(sample_grid="samples/g.png")], include_published=False, roots=[tmp_path])
    assert entries[0].sample_grid == tmp_path / "samples" / "g.png"
    missing = build_entries([make_record(sample_grid="samples/none.png")], include_published=False, roots=[tmp_path])
    assert "grid not found" in render_dashboard(missing)


PAYLOADS = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", '"><svg onload=alert(1)>')


def hostile_records(tmp_path: Path) -> list[dict]:
    grid = make_grid(tmp_path / "h.png", seed=2)
    return [
        make_record(PAYLOADS[0], model=PAYLOADS[1], sample_grid=str(grid),
                    config={"note": "</script><script>alert(2)</script>"}, wandb_url="javascript:alert(3)"),
        gan_record(PAYLOADS[2], 40.0, dataset=PAYLOADS[1], checkpoint=PAYLOADS[0],
                   protocol={"extractor": PAYLOADS[1]}, metrics={"num_params": 1000.0}),
    ]


def test_strings_from_records_are_escaped(tmp_path):
    page_html = render_dashboard(build_entries(hostile_records(tmp_path)))
    page = _parse(page_html)
    assert [t for t, _ in page.tags].count("script") == 1  # only our own
    assert not [a for t, a in page.tags if any(k.startswith("on") for k in a)]  # no event handlers at all
    assert not [a for t, a in page.tags if t == "img" and a.get("src") == "x"]
    assert not [a for t, a in page.tags if t == "a" and not a.get("href", "").startswith("https://")]
    text = "".join(page.text)
    for payload in PAYLOADS:
        assert payload in text  # shown as text
    assert "</script><script>alert(2)</script>" in text
    assert "alert" not in "".join(page.scripts)


def test_static_assets_are_package_files_inlined():
    page = render_dashboard(build_entries([gan_record("g", 41.0), make_record()]))
    static = Path(leaderboard.__file__).parent / "static"
    for name in STATIC_FILES:
        assert (files("lightning_gen.leaderboard") / "static" / name).is_file()  # how the page finds them
        text = (static / name).read_text(encoding="utf-8")
        assert len(text) > 1000 and static_text(name) == text
        assert text in page
    assert f"<style>\n{(static / 'dashboard.css').read_text()}</style>" in page
    assert f"<script>\n{(static / 'dashboard.js').read_text()}</script>" in page
    tags = _parse(page).tags
    assert not [a for t, a in tags if t == "link"] and "<link" not in page
    assert not [a for t, a in tags if t == "script" and "src" in a]
    assert not [a for t, a in tags if "src" in a and not a["src"].startswith("data:")]
    assert "@import" not in page and "url(" not in page  # the style sheet pulls nothing in either


def test_family_colours():
    css = (Path(leaderboard.__file__).parent / "static" / "dashboard.css").read_text()
    for family, colour in FAMILY_COLORS.items():  # the badges' colours in the style sheet are the plots' colours
        assert f".fam-{family} {{ background: {colour}; }}" in css
        assert family_color(family) == colour
    others = {f: family_color(f) for f in ("autoencoding", "hybrid", "energy", "score-based")}
    assert set(others.values()) <= set(OTHER_FAMILY_COLORS)
    code = ("from lightning_gen.leaderboard.plots import family_color; "
            "print([family_color(f) for f in ('autoencoding', 'hybrid', 'energy', 'score-based')])")
    other_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                   env={**os.environ, "PYTHONHASHSEED": "123"}, cwd=REPO)
    assert other_process.stdout.strip() == str(list(others.values()))  # not Python's salted hash()


def test_a_new_family_is_shown_with_its_own_colour():
    records = [gan_record("g1", 41.0, metrics={"num_params": 1e6}),
               gan_record("d1", 30.0, model="NCSN", family="score-based", metrics={"num_params": 3e7}),
               gan_record("d2", 25.0, model="NCSN", family="score-based", metrics={"num_params": 6e7})]
    page = render_dashboard(build_entries(records, include_published=False))
    colour = family_color("score-based")
    tags = _parse(page).tags
    badges = [a for t, a in tags if t == "span" and "fam-score-based" in a.get("class", "")]
    assert len(badges) == 2 and all(a["style"] == f"background:{colour}" for a in badges)
    assert not [a for t, a in tags if t == "span" and "fam-gan" in a.get("class", "") and "style" in a]
    options = [a["value"] for t, a in tags if t == "option" and a["value"] in ("score-based", "gan")]
    assert options == ["gan", "score-based"]  # the family filter lists families alphabetically
    points = [a for t, a in tags if t == "g" and a.get("data-family") == "score-based"]
    assert points and f'fill="{colour}"' in page and f"--c:{colour}" in page


# ----------------------------------------------------------------------------------------------------------
# Legibility: KID's unit, thumbnails a digit can be read in, labels tied to their dots, samples over training,
# a details panel that wraps


def test_kid_is_shown_times_1000_with_the_unit_in_its_header():
    records = [gan_record("wgan", 31.0, metrics={"kid_mean": 0.0243, "kid_std": 0.0011, "num_params": 3e6}),
               gan_record("dcgan", 38.0, metrics={"kid_mean": 0.0291, "kid_std": 0.0012, "num_params": 4e6})]
    entries = build_entries(records, include_published=False)
    page_html = render_dashboard(entries)
    page = _parse(page_html)
    assert "KID ×10³" in page.text  # the header names the scale
    row = next(t for a, t in page.rows if a.get("data-run") == "wgan" and "entry" in a.get("class", ""))
    assert "24.30 ±\xa01.10" in row and "0.0243" not in row
    assert 'data-sort="0.0243"' in page_html  # sorting and the store keep the raw value
    details = next(t for a, t in page.rows if a.get("data-run") == "wgan" and a.get("class") == "more")
    assert "KID ×10³ 24.30 ± 1.10" in details.replace("\xa0", " ")
    assert wandb_table_rows(entries)[0][WANDB_COLUMNS.index("kid_mean")] == 0.0243
    svg = scatter_svg(PlotSpec("KID against parameter count", "num_params", "kid_mean", "parameters", True),
                      "kid_mean", entries)
    plot = _parse(svg)
    assert "KID ×10³ (lower is better)" in plot.text
    ticks = [float(t) for t in plot.text if t.replace(".", "").isdigit()]
    assert ticks and all(20 <= t <= 30 for t in ticks) and 24 in ticks  # y ticks in units of 10⁻³


class _Points(HTMLParser):
    """The points of a scatter plot: each ``g.pt`` group's circle, leader line, label attributes and label text."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[dict] = []
        self._in_label = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "g" and attrs.get("class") == "pt":
            self.points.append({"label": ""})
        elif self.points and tag in ("circle", "line", "text") and "ptitle" not in attrs.get("class", ""):
            self.points[-1][tag] = {k: (float(v) if k in ("x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r") else v)
                                    for k, v in attrs.items()}
            self._in_label = tag == "text"

    def handle_endtag(self, tag):
        self._in_label = self._in_label and tag != "text"

    def handle_data(self, data):
        if self._in_label:
            self.points[-1]["label"] += data


def test_every_plot_label_is_joined_to_its_dot():
    # eight runs crowded into one corner: most labels cannot sit beside their dots
    records = [gan_record(f"run_{i}", 70.0 + 1.3 * i, metrics={"num_params": 1e5 * (1 + 0.1 * i)}) for i in range(8)]
    records.append(gan_record("far_away", 20.0, metrics={"num_params": 5e7}))
    entries = build_entries(records, include_published=False)
    parser = _Points()
    parser.feed(scatter_svg(PLOTS[0], "fid", entries))
    assert sorted(p["label"] for p in parser.points) == sorted(r["run_name"] for r in records)
    gaps = []
    for p in parser.points:
        c, line, text = p["circle"], p["line"], p["text"]
        assert line["class"] == "leader"
        width = LABEL_CHAR_WIDTH * len(p["label"])
        x0 = text["x"] if text["text-anchor"] == "start" else text["x"] - width
        box = (x0, text["y"] - LABEL_HEIGHT + 2, x0 + width, text["y"] + 2)
        # the line ends on the label's box, at the point of the box nearest to the dot ...
        nearest = (min(max(c["cx"], box[0]), box[2]), min(max(c["cy"], box[1]), box[3]))
        assert abs(line["x2"] - nearest[0]) <= 0.06 and abs(line["y2"] - nearest[1]) <= 0.06, p
        gap = math.dist((c["cx"], c["cy"]), nearest)
        gaps.append(gap)
        # ... and starts on the dot's edge (a label touching its dot needs no line)
        start = math.dist((c["cx"], c["cy"]), (line["x1"], line["y1"]))
        assert abs(start - c["r"]) <= 0.1 if gap > c["r"] else start <= c["r"] + 0.1, p
    assert max(gaps) > 15  # the crowding did push labels away: the lines above are what ties them to their dots


def _digit_grid_png(path: Path, n: int = 64, size: int = 8) -> Path:
    """A grid drawn by the code that draws every sample grid (image_grid, padding 2)."""
    import torch

    from lightning_gen.images import image_grid, save_png

    images = torch.randint(0, 256, (n, 1, size, size), generator=torch.Generator().manual_seed(size), dtype=torch.uint8)
    return save_png(image_grid(images), path)


@pytest.mark.parametrize("size", [8, 28])
def test_thumbnail_shows_the_first_row_at_least_three_times_native(tmp_path, size):
    grid = _digit_grid_png(tmp_path / "g.png", size=size)
    native_w, native_h = Image.open(grid).size
    record = make_record(sample_grid=str(grid), image_shape=[1, size, size])
    page = _parse(render_dashboard(build_entries([record], include_published=False)))
    i = next(k for k, (t, a) in enumerate(page.tags) if t == "img" and a.get("class") == "grid")
    (_, box), (_, img) = page.tags[i - 1], page.tags[i]
    assert box["class"] == "thumb"  # the window that shows part of the grid
    view = dict(kv.split(":") for kv in box["style"].rstrip(";").split(";"))
    view_w, view_h = int(view["width"].removesuffix("px")), int(view["height"].removesuffix("px"))
    scale = int(img["width"]) / native_w
    assert scale >= 3 and scale == int(scale) and int(img["height"]) == native_h * scale  # whole pixels, sharp
    assert view_h == (size + 2 * 2) * scale  # one row of images with its padding
    shown = (view_w / scale - 2) / (size + 2)
    assert shown == int(shown) and 2 <= shown <= 8  # whole images, at least two
    assert base64.b64decode(img["src"].split(",", 1)[1]) == grid.read_bytes()  # a click shows the whole grid
    css = static_text("dashboard.css")
    assert re.search(r"img\.grid[^{]*\{[^}]*image-rendering: pixelated", css)


class _TinyModel:
    """What :class:`~lightning_gen.callbacks.SampleGrid` asks of a LightningModule: eval/train and sample."""

    training, device = True, "cpu"

    def eval(self):
        self.training = False

    def train(self, mode: bool = True):
        self.training = mode

    def sample(self, n, generator=None, labels=None):
        import torch

        return torch.randint(0, 256, (n, 1, 8, 8), generator=generator, dtype=torch.uint8)


def _train_grids(run: Path, steps) -> list[Path]:
    """The grids SampleGrid saves in a run folder during training, one per step."""
    from lightning_gen.callbacks import SampleGrid

    callback = SampleGrid(num_samples=16)
    # no loggers: the run folder is default_root_dir, as on a real Trainer (loggers.run_folder)
    trainer = SimpleNamespace(global_step=0, fast_dev_run=False, logger=None, log_dir=str(run),
                              default_root_dir=str(run), loggers=[])
    paths = []
    for step in steps:
        trainer.global_step = step
        paths.append(callback.log_grid(trainer, _TinyModel()))
    return paths


class _Strips(HTMLParser):
    """Each run's samples-over-training strip: [step, caption, image src] per picture, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.strips: dict[str, list[list]] = {}
        self._run: str | None = None
        self._caption = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self._run = attrs.get("data-run") if attrs.get("class") == "more" else None
        elif self._run is not None and tag == "figure":
            self.strips.setdefault(self._run, []).append([int(attrs["data-step"]), "", None])
        elif self._run is not None and tag == "img" and attrs.get("class") == "step-grid":
            self.strips[self._run][-1][2] = attrs["src"]
        self._caption = tag == "figcaption"

    def handle_endtag(self, tag):
        self._caption = False

    def handle_data(self, data):
        if self._caption:
            self.strips[self._run][-1][1] += data


def _strips(page_html: str) -> dict[str, list[list]]:
    parser = _Strips()
    parser.feed(page_html)
    return parser.strips


def test_samples_over_training_strip_from_the_run_folder(tmp_path):
    steps = [0, 50, 100, 150, 200, 250, 300, 350, 400]
    saved = _train_grids(tmp_path / "runs" / "pcnn" / "lightning_logs" / "version_0", steps)
    record = make_record("pcnn", checkpoint="runs/pcnn/lightning_logs/version_0/checkpoints/last.ckpt")
    bare = make_record("no_grids", checkpoint="runs/none/checkpoints/last.ckpt")
    entries = build_entries([record, bare], include_published=False, roots=[tmp_path])
    assert [s for s, _ in entries[0].training_grids] == steps and entries[1].training_grids == []
    page_html = render_dashboard(entries)
    strips = _strips(page_html)
    # the first, the last and evenly spaced ones between, in order, each labelled with its step
    assert [s for s, _, _ in strips["pcnn"]] == [0, 100, 200, 300, 400]
    assert [c for _, c, _ in strips["pcnn"]] == ["step 0", "step 100", "step 200", "step 300", "step 400"]
    for step, _, src in strips["pcnn"]:
        assert base64.b64decode(src.split(",", 1)[1]) == saved[steps.index(step)].read_bytes()
    assert "no_grids" not in strips  # a run without grids has no strip, and says nothing
    assert "".join(_parse(page_html).text).count("samples over training") == 1


def test_samples_over_training_found_under_wandb(tmp_path):
    # under W&B the checkpoint lies in <save_dir>/<project>/<run id>/checkpoints, the grids in
    # <default_root_dir>/wandb-<run id>/samples (SampleGrid.run_dir)
    _train_grids(tmp_path / "runs" / "fvsbn" / "wandb-abc123", [10, 20])
    record = make_record("w", checkpoint="runs/wandb/lightning_gen/abc123/checkpoints/last.ckpt",
                         config={"trainer": {"default_root_dir": "runs/fvsbn"}})
    (entry,) = build_entries([record], include_published=False, roots=[tmp_path])
    assert [s for s, _ in entry.training_grids] == [10, 20]


def _css_rules(css: str) -> list[tuple[str, str]]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    return [(sel.strip(), body) for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)]


def test_details_panel_is_full_width_and_wraps(tmp_path):
    long_path = "runs/" + "very_long_folder_name_" * 12 + "/checkpoints/last.ckpt"
    records = [make_record("a", checkpoint=long_path), gan_record("b", 40.0)]
    page = _parse(render_dashboard(build_entries(records, include_published=False)))
    headers = sum(1 for t, _ in page.tags if t == "th")  # one table per dataset here, two datasets
    tables = {a.get("data-run"): a for t, a in page.tags if t == "tr" and a.get("class") == "more"}
    assert set(tables) == {"a", "b"}
    spans = [int(a["colspan"]) for t, a in page.tags if t == "td" and "colspan" in a]
    assert sum(spans) + len(spans) == headers  # an empty cell under the rank, the rest of the row for the panel
    assert long_path in page.text
    rules = _css_rules(static_text("dashboard.css"))
    panel = [(s, b) for s, b in rules if "run-details" in s]
    for part in ("dl", "dd", "pre"):
        assert any(re.search(rf"run-details {part}\b", s) and "overflow-wrap: anywhere" in b for s, b in panel), part
    assert any("run-details pre" in s and "white-space: pre-wrap" in b for s, b in panel)
    assert not [s for s, b in panel if re.search(r"overflow(-x)?: *(auto|scroll)", b)]  # nothing scrolls sideways
    assert any(s == "tr.more td > *" and "max-width: calc(100vw" in b for s, b in rules)  # never wider than the page


# ----------------------------------------------------------------------------------------------------------
# Command line and W&B


def test_package_exports():
    # what `from lightning_gen.leaderboard import ...` offered before the dashboard was split, and the record API
    names = ("DEFAULT_DB", "METRICS", "PUBLISHED", "SCHEMA_VERSION", "Reference", "SchemaVersionError", "Store",
             "build_entries", "log_to_wandb", "main", "normalize_record", "published_entries", "rank",
             "read_records", "render_dashboard", "validate_record",
             "RECORD_SCHEMA", "REQUIRED_KEYS", "OPTIONAL_KEYS", "METRIC_KEYS", "PROTOCOL_KEYS", "build_record",
             "record_id")
    assert set(names) <= set(leaderboard.__all__)
    assert all(getattr(leaderboard, n) is not None for n in names)
    from lightning_gen.leaderboard import record, store

    assert store.RECORD_SCHEMA is record.RECORD_SCHEMA and store.validate_record is record.validate_record
    assert not hasattr(store, "FAMILIES")


def test_main_imports_exports_and_writes_page(tmp_path, capsys):
    grid = make_grid(tmp_path / "g.png", seed=3, channels=3, size=32)
    (tmp_path / "in.json").write_text(json.dumps([gan_record("dcgan_a", 44.0, sample_grid=str(grid)),
                                                  make_record()]))
    out = tmp_path / "site" / "index.html"
    argv = ["--db", str(tmp_path / "lb.sqlite"), "--out", str(out), "--import", str(tmp_path / "in.json"),
            "--export", str(tmp_path / "all.csv"), "--metric", "kid_mean"]
    assert main(argv) == 0
    page = out.read_text()
    assert "dcgan_a" in page and "gated_pixelcnn_bmnist" in page and "data:image/png;base64," in page
    assert "Ranked by <b>KID ×10³</b>" in page
    assert len(read_records(tmp_path / "all.csv")) == 2
    assert main(["--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "pub.html")]) == 0
    assert not (tmp_path / "none.sqlite").exists()
    assert "published" in (tmp_path / "pub.html").read_text()
    with pytest.raises(SystemExit):
        main(["--metric", "accuracy"])


def test_grids_found_relative_to_the_database(tmp_path, monkeypatch):
    # as the benchmark stores them: <db folder>/grids/<run>.png, recorded relative to where it ran
    (tmp_path / "results" / "grids").mkdir(parents=True)
    make_grid(tmp_path / "results" / "grids" / "a.png", seed=5)
    with Store(tmp_path / "results" / "lb.sqlite") as store:
        store.add(make_record("a", sample_grid="results/grids/a.png"))
    monkeypatch.chdir(tmp_path / "results")  # not where the benchmark ran
    assert main(["--db", str(tmp_path / "results" / "lb.sqlite"), "--out", "index.html"]) == 0
    assert "data:image/png;base64," in (tmp_path / "results" / "index.html").read_text()


def test_leaderboard_command_runs(tmp_path):
    out = tmp_path / "index.html"
    proc = subprocess.run([sys.executable, "-m", "lightning_gen", "leaderboard", "--db",
                           str(tmp_path / "none.sqlite"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.exists()


def test_wandb_table_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))  # no stored credentials either
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))  # where the table's media are staged
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    grid = make_grid(tmp_path / "g.png", seed=4)
    with Store(tmp_path / "lb.sqlite") as store:
        store.add(make_record(sample_grid=str(grid)))
        store.add(gan_record("dcgan_w", 40.0))
    assert main(["--db", str(tmp_path / "lb.sqlite"), "--out", str(tmp_path / "i.html"), "--wandb",
                 "--wandb-project", "lb-test"]) == 0

    (table_file,) = tmp_path.glob("wandb/offline-run-*/files/media/table/leaderboard_*.table.json")
    table = json.loads(table_file.read_text())
    cols = table["columns"]
    rows = [dict(zip(cols, row)) for row in table["data"]]
    assert {"dataset", "rank", "published", "run_name", "fid", "nll_nats", "samples"} <= set(cols)
    ours = {r["run_name"]: r for r in rows if not r["published"]}
    assert set(ours) == {"gated_pixelcnn_bmnist", "dcgan_w"}
    assert ours["dcgan_w"]["fid"] == 40.0 and ours["gated_pixelcnn_bmnist"]["nll_nats"] == 82.41
    assert len([r for r in rows if r["published"]]) == len(published_entries())
    # The sample grid went along as an image cell; W&B stages a table's media in the run's artifact.
    assert ours["gated_pixelcnn_bmnist"]["samples"] is not None and ours["dcgan_w"]["samples"] is None
    staged = [p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert grid.read_bytes() in staged


# ----------------------------------------------------------------------------------------------------------
# Seeds, real-data anchors, biased FIDs


def seed_record(seed: int, fid: float, nll: float, **config_changes) -> dict:
    """A run of the digits FVSBN config trained under ``seed``, into its own folder (as scripts/seeds.sh does)."""
    config = {"seed_everything": seed, "model": {"class_path": "lightning_gen.models.FVSBN",
                                                 "init_args": {"optimizer": {"init_args": {"lr": 0.003}}}},
              "trainer": {"max_epochs": 20, "default_root_dir": f"runs/fvsbn_digits_seed{seed}",
                          "logger": {"class_path": "WandbLogger", "init_args": {"save_dir": f"runs/s{seed}",
                                                                               "name": f"fvsbn_digits_seed{seed}"}}},
              "run_name": f"fvsbn_digits_seed{seed}", "ckpt_path": None, **config_changes}
    return make_record(f"fvsbn_digits_seed{seed}", model="FVSBN", family="baseline", dataset="Digits",
                       dataset_id="digits-8bit", image_shape=[1, 8, 8], config=config,
                       checkpoint=f"runs/fvsbn_digits_seed{seed}/checkpoints/last.ckpt",
                       metrics={"fid": fid, "nll_nats": nll, "nll_bpd": nll / (64 * math.log(2)),
                                "kid_mean": fid / 1000, "samples_per_s": 100.0 + seed})


def test_runs_that_differ_only_in_their_seed_are_one_row_with_mean_and_std():
    seeds = [seed_record(0, 10.0, 101.0), seed_record(1, 14.0, 102.5), seed_record(2, 12.5, 99.0)]
    other_lr = seed_record(3, 50.0, 120.0, model={"class_path": "lightning_gen.models.FVSBN",
                                                  "init_args": {"optimizer": {"init_args": {"lr": 0.01}}}})
    other_protocol = make_record("fvsbn_digits_seed4", **{k: v for k, v in seed_record(4, 9.0, 98.0).items()
                                                          if k not in ("run_name", "protocol")},
                                 protocol={"num_samples": 2000})
    entries = [e for e in build_entries(seeds + [other_lr, other_protocol]) if e.dataset_id == "digits-8bit"]
    [agg] = [e for e in entries if e.seeds]
    assert len(entries) == 3 and {e.run_name for e in entries if not e.seeds} == {"fvsbn_digits_seed3",
                                                                                     "fvsbn_digits_seed4"}
    assert agg.run_name == "fvsbn_digits" and [e.run_name for e in agg.seeds] == [r["run_name"] for r in seeds]
    for key in ("fid", "nll_nats", "nll_bpd", "kid_mean", "samples_per_s"):
        values = np.array([r["metrics"][key] for r in seeds])
        assert agg.value(key) == pytest.approx(values.mean(), rel=1e-12)
        assert agg.seed_std[key] == pytest.approx(values.std(ddof=1), rel=1e-12)
    # ranked by its mean, as one row
    ranked = rank(entries, "nll_nats")
    assert [(r, e.run_name) for r, e in ranked] == [(1, "fvsbn_digits_seed4"), (2, "fvsbn_digits"),
                                                    (3, "fvsbn_digits_seed3")]
    # without aggregation every run is its own row; runs of one seed are never a spread over seeds
    assert len([e for e in build_entries(seeds, aggregate=False) if e.dataset_id == "digits-8bit"]) == 3
    same_seed = [seed_record(0, 10.0, 101.0), {**seed_record(0, 11.0, 100.0), "run_name": "again"}]
    assert not any(e.seeds for e in build_entries(same_seed))


def test_seed_row_shows_mean_std_and_its_single_runs_one_click_away():
    seeds = [seed_record(s, fid, 100.0 + s) for s, fid in enumerate((10.0, 14.0, 12.5))]
    page = render_dashboard(build_entries(seeds, include_published=False))
    parsed = _parse(page)
    [row] = [t for a, t in parsed.rows if "fvsbn_digits" in t and "3 seeds" in t and "entry" in a.get("class", "")]
    fids = np.array([10.0, 14.0, 12.5])
    assert f"{fids.mean():.2f} ± {fids.std(ddof=1):.2f}" in row.replace("\u00a0", " ")
    assert "mean ± std over 3 seeds" in row
    details = re.search(r'<details class="seeds"><summary>3 seeds: the single runs</summary>'
                        r'<table class="board seeds-table">(.*?)</table></details>', page, re.S)
    assert details is not None
    for s in range(3):
        assert f"fvsbn_digits_seed{s}" in details.group(1)


def test_anchor_rows_are_labelled_real_data_and_never_ranked():
    anchor = make_record("digits-8bit-train-anchor", model="real train images", family="data", dataset="Digits",
                         dataset_id="digits-8bit", image_shape=[1, 8, 8], config=None, checkpoint=None,
                         metrics={"fid": 5.3, "nll_nats": None, "nll_bpd": None, "samples_per_s": None,
                                  "num_params": None})
    runs = [make_record(name, dataset="Digits", dataset_id="digits-8bit", image_shape=[1, 8, 8],
                        metrics={"fid": fid, "nll_nats": None, "nll_bpd": None}) for name, fid in
            (("a", 3.0), ("b", 9.0), ("c", 20.0))]
    entries = build_entries([anchor, *runs], include_published=False)
    assert [(r, e.label) for r, e in rank(entries, "fid")] == [(1, "a"), (None, "digits-8bit-train-anchor"),
                                                                (2, "b"), (3, "c")]
    parsed = _parse(render_dashboard(entries))
    [(attrs, text)] = [(a, t) for a, t in parsed.rows if "anchor" in a.get("class", "").split()]
    assert "real data" in text and text.split()[0] == "real"  # no rank number before the model
    assert "published" not in attrs["class"]  # the "show published" filter leaves it on the board


def test_biased_fids_are_marked_with_a_reason():
    biased = gan_record("few_samples", 40.0, protocol={"num_samples": 500, "fid_biased": True})
    fine = gan_record("many_samples", 30.0, protocol={"fid_biased": False})
    old = gan_record("before_the_flag", 35.0)
    for key in ("fid_biased", "kid_kernel"):  # a record written before these keys existed is still schema 2
        del old["protocol"][key]
    old = normalize_record(old)
    assert old["protocol"]["fid_biased"] is None and old["protocol"]["kid_kernel"] is None and old["schema"] == 2
    page = render_dashboard(build_entries([biased, fine, old], include_published=False))
    parsed = _parse(page)
    marked = [t for a, t in parsed.rows if "entry" in a.get("class", "") and "biased" in t.split()]
    assert len(marked) == 1 and "few_samples" in marked[0]
    [(tag, attrs)] = [(t, a) for t, a in parsed.tags if "biased" in (a.get("class") or "").split()]
    assert "singular" in attrs["title"] and "biased" in attrs["title"]


def test_sections_keep_their_place_when_a_benchmark_adds_a_data_set():
    """A data set's section sits where the fixed order puts it, whether it has runs of ours or only published rows,
    so adding a benchmark never moves the sections a reader already knows (digits first, then MNIST, then CIFAR-10)."""
    def order(records):
        html = render_dashboard(build_entries(records))
        return re.findall(r'<section class="dataset" data-dataset="([^"]+)" id="ds-[^"]+?(-conditional)?"', html)

    digits = make_record("nade_digits", dataset="Digits", dataset_id="digits-binary", image_shape=[1, 8, 8])
    before = order([digits])
    after = order([digits, gan_record("dcgan", 30.0)])  # CIFAR-10 gets a run of ours
    assert before == after
    ids = [d for d, _ in before]
    assert ids.index("digits-binary") < ids.index("binarized-mnist-static") < ids.index("cifar10")
