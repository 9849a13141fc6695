"""The leaderboard record: the one JSON-able dict a benchmark run produces and the store keeps (``schema`` 2).

::

    {"schema": 2, "run_name": "gated_pixelcnn_bmnist", "model": "GatedPixelCNN", "family": "autoregressive",
     "dataset": "BinarizedMNIST", "dataset_id": "binarized-mnist-static", "image_shape": [1, 28, 28],
     "metrics": {"fid": None, "nll_nats": 81.9, "nll_bpd": 0.151, ...},
     "protocol": {"extractor": "inception-v3-compat", "num_samples": 10000, "nll_estimator": "exact", ...},
     "checkpoint": "...", "checkpoint_sha256": "...", "config": {...}, "git_commit": "...", "wandb_url": None,
     "sample_grid": "results/samples/gated_pixelcnn_bmnist.png", "created_at": "2026-05-09T07:35:25+00:00",
     "train_time_s": 5400.0}

This module owns the schema: :data:`RECORD_SCHEMA`, the key lists, :func:`validate_record`,
:func:`normalize_record` and :func:`build_record` (what the benchmark calls to make one). A model's ``family`` is
whatever the model class declares; the leaderboard keeps no list of families, it only checks the spelling
(:data:`FAMILY_PATTERN`).

``dataset`` is the data module's class name; ``dataset_id`` is the data module's ``dataset_id``, which names the
data the numbers were measured on: static and dynamic binarized MNIST are one class and two ids, and numbers are
only ranked against numbers of the same id. Schema 2 added ``dataset_id``; :func:`upgrade_record` turns a schema-1
record into a schema-2 one, deriving the id with :func:`legacy_dataset_id`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from typing import Any

from lightning_gen.leaderboard.paired import validate_per_image

__all__ = [
    "FAMILY_PATTERN",
    "METRIC_KEYS",
    "NULLABLE_STRING_KEYS",
    "OPTIONAL_KEYS",
    "PROTOCOL_KEYS",
    "RECORD_SCHEMA",
    "REQUIRED_KEYS",
    "STRING_KEYS",
    "DATASET_ID_PATTERN",
    "build_record",
    "canonical_json",
    "legacy_dataset_id",
    "normalize_record",
    "record_id",
    "upgrade_record",
    "validate_dataset_id",
    "validate_family",
    "validate_record",
]

#: Version of the record dict; a record with another ``schema`` is refused (:func:`upgrade_record` brings older
#: ones up to it).
RECORD_SCHEMA = 2

#: Keys every record must carry (``ValueError`` naming the key otherwise).
REQUIRED_KEYS = ("schema", "run_name", "model", "family", "dataset", "dataset_id", "image_shape", "metrics",
                 "protocol", "created_at")
#: Keys a record may leave out; they are stored as ``None``. ``nll_per_image``: the per-image test NLL, compressed
#: and keyed by the test split's hash (:mod:`~lightning_gen.leaderboard.paired`), for paired comparisons.
OPTIONAL_KEYS = ("checkpoint", "checkpoint_sha256", "config", "git_commit", "wandb_url", "sample_grid",
                 "train_time_s", "nll_per_image")
#: The metrics a record knows; absent ones are stored as ``None`` (a record may add others). ``*_se`` is the standard
#: error of the NLL over the test images (``probe_acc_se``: the binomial one of the probe's test accuracy);
#: ``fid_std``, ``is_mean_std``, ``kid_mean_std`` the spread of ``fid``, ``is_mean``, ``kid_mean`` over independent
#: sample draws (``fid_std``: a bootstrap with one draw); ``is_std`` and
#: ``kid_std`` are within one draw (IS splits, KID subsets). ``precision``/``recall`` (Kynkaanniemi et al. 2019),
#: ``density``/``coverage`` (Naeem et al. 2020), k = 5, on the FID features.
METRIC_KEYS = ("fid", "fid_std", "is_mean", "is_std", "is_mean_std", "kid_mean", "kid_std", "kid_mean_std",
               "precision", "recall", "density", "coverage", "nll_nats", "nll_nats_se", "nll_bpd", "nll_bpd_se",
               "probe_acc", "probe_acc_se", "samples_per_s", "num_params")
#: The protocol fields a record knows; absent ones are stored as ``None`` (a record may add others; ``None`` also
#: where a record predates a field). ``fid_biased``: the generated or the reference set had no more images than the
#: extractor has feature dimensions, so the FID comes from a singular covariance and is biased upwards (the
#: dashboard marks it). ``kid_kernel``: the kernel KID used and the scale the features were divided by
#: (``"(x.y/d+1)^3"`` on raw Inception features; ``"(x.y/d+1)^3, x/2.5"`` on a digit classifier's).
#: ``conditional``: the model is class-conditional, so its NLL is log p(x|y) (the test labels given) and its samples
#: follow ``label_distribution``; such numbers are never ranked against unconditional ones. ``sampler``: how the
#: samples were drawn where that sets their cost (``GenerativeModule.sampling_protocol``: "DDIM, 50 steps").
PROTOCOL_KEYS = ("extractor", "extractor_weights_sha256", "num_samples", "reference_split", "image_size",
                 "nll_estimator", "num_test_images", "devices", "fid_biased", "kid_kernel", "conditional",
                 "label_distribution", "sampler")

#: Keys whose value is a non-empty string.
STRING_KEYS = ("run_name", "model", "dataset", "dataset_id", "created_at")
#: Keys whose value is a string or ``None``.
NULLABLE_STRING_KEYS = ("checkpoint", "checkpoint_sha256", "git_commit", "wandb_url", "sample_grid")

#: How a family is spelt: a lowercase identifier (``"autoregressive"``, ``"gan"``, ``"score-based"``).
FAMILY_PATTERN = r"[a-z][a-z0-9_-]*"
_FAMILY = re.compile(FAMILY_PATTERN)
#: How a dataset id is spelt: lowercase letters, digits, ``.``, ``_`` and ``-`` (``"binarized-mnist-static"``,
#: ``"ring-8modes-r2-std0.02"``), so it is safe in a file name, a URL fragment or an HTML id.
DATASET_ID_PATTERN = r"[a-z0-9][a-z0-9._-]*"
_DATASET_ID = re.compile(DATASET_ID_PATTERN)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_family(family: Any) -> None:
    """Raise ``ValueError`` unless ``family`` is a lowercase identifier-like string (:data:`FAMILY_PATTERN`)."""
    if not isinstance(family, str) or not _FAMILY.fullmatch(family):
        raise ValueError(f"record key 'family' must be a non-empty lowercase identifier matching {FAMILY_PATTERN} "
                         f"(a letter first, then letters, digits, '_' or '-'), got {family!r}")


def validate_dataset_id(dataset_id: Any) -> None:
    """Raise ``ValueError`` unless ``dataset_id`` is spelt as :data:`DATASET_ID_PATTERN` says."""
    if not isinstance(dataset_id, str) or not _DATASET_ID.fullmatch(dataset_id):
        raise ValueError(f"record key 'dataset_id' must be a non-empty lowercase id matching {DATASET_ID_PATTERN} "
                         f"(the data module's dataset_id, e.g. 'binarized-mnist-static'), got {dataset_id!r}")


def validate_record(record: Any) -> None:
    """Raise ``ValueError`` naming the first key that is missing or has the wrong type."""
    if not isinstance(record, dict):
        raise ValueError(f"a leaderboard record must be a dict, got {type(record).__name__}")
    if record.get("schema") in _UPGRADES:
        raise ValueError(f"record 'schema' is {record['schema']!r}, an older one: upgrade_record() brings it to "
                         f"schema {RECORD_SCHEMA} (importing a file does that)")
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
    validate_dataset_id(record["dataset_id"])
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
    validate_per_image(record.get("nll_per_image"))
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


def build_record(*, run_name: str, model: str, family: str, dataset: str, dataset_id: str, image_shape: Any,
                 metrics: dict[str, Any], protocol: dict[str, Any], created_at: str | None = None,
                 **optional: Any) -> dict[str, Any]:
    """A validated record, in the normalised form the store keeps (see :func:`normalize_record`).

    ``dataset`` is the data module's class name, ``dataset_id`` its ``dataset_id`` (which data, exactly).

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
        "dataset_id": dataset_id,
        "image_shape": list(image_shape) if isinstance(image_shape, tuple) else image_shape,
        "metrics": metrics,
        "protocol": protocol,
        **{key: optional.get(key) for key in OPTIONAL_KEYS},
        "created_at": created_at,
    }
    return normalize_record(record)


# ----------------------------------------------------------------------------------------------------------
# Older schemas


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _data_args(config: dict[str, Any]) -> dict[str, Any]:
    """The data module's init arguments in a run's config: LightningCLI's ``data: {class_path, init_args}``, or a
    plain ``data:`` mapping of them."""
    data = _dict(config.get("data"))
    return _dict(data["init_args"]) if "init_args" in data else data


def _slug(text: str) -> str:
    """Lowercase letters and digits, every other run of characters one ``-`` (as ImageFolder names its folder)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _kebab(name: str) -> str:
    """``BinarizedMNIST`` -> ``binarized-mnist``, as the data modules' fallback id spells a class name."""
    return _slug(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name))


def _number(value: Any, default: float) -> float:
    return value if _is_number(value) else default


def _held_out(args: dict[str, Any], default_test_size: int) -> str:
    test_size, seed = args.get("test_size", default_test_size), args.get("split_seed", 0)
    return "" if (test_size, seed) == (default_test_size, 0) else f"-test{test_size}-seed{seed}"


def legacy_dataset_id(record: dict[str, Any]) -> str:
    """The ``dataset_id`` a schema-1 record (which named only the data module's class) gets on upgrade.

    Derived from what the record carries: the class name, ``image_shape``, and the data module's init arguments
    in its ``config`` (the run's ``config.yaml``), each absent argument taken at the default it had when schema 1
    was written. It is the id the data module would state for those arguments:

    - ``BinarizedMNIST``: ``binarized-mnist-dynamic`` if the config says ``binarization: dynamic``, else
      ``binarized-mnist-static`` (the default);
    - ``Digits``: ``digits-binary`` if the config says ``binarize: true`` or the model's ``num_levels`` is 2, else
      ``digits-8bit``; a non-default ``test_size`` / ``split_seed`` is appended as the data module does;
    - ``MNIST``, ``FashionMNIST``, ``CIFAR10``: ``mnist``, ``fashion-mnist``, ``cifar10``;
    - ``ImageFolder``: ``imagefolder-<folder name>-<size>`` (``-grey`` for one channel), from the config's
      ``folder`` and ``size`` and the record's ``image_shape``; ``imagefolder-unknown-<size>`` without a folder;
    - ``RingOfGaussians``: ``ring-<num_modes>modes-r<radius>-std<std>`` from the config (defaults 8, 2, 0.02);
    - any other class: ``<class in kebab case>-unknown``, so that its old numbers are never ranked against new
      ones whose data this function cannot vouch for.

    A benchmark could evaluate on other data than the config's (``--data-args``); the record does not say, so
    the config is taken at its word.
    """
    derived = _legacy_dataset_id(record)
    # Whatever a config held, the id is spelt as DATASET_ID_PATTERN says.
    return derived if _DATASET_ID.fullmatch(derived) else _slug(derived) or "unknown"


def _legacy_dataset_id(record: dict[str, Any]) -> str:
    name = record.get("dataset") if isinstance(record.get("dataset"), str) else ""
    config = _dict(record.get("config"))
    args = _data_args(config)
    shape = record.get("image_shape")
    shape = shape if isinstance(shape, (list, tuple)) and len(shape) == 3 else None
    if name == "BinarizedMNIST":
        return f"binarized-mnist-{'dynamic' if args.get('binarization') == 'dynamic' else 'static'}"
    if name == "Digits":
        levels = [config.get("num_levels"), _dict(_dict(config.get("model")).get("init_args")).get("num_levels")]
        binary = args.get("binarize") is True or 2 in levels
        return f"digits-{'binary' if binary else '8bit'}" + _held_out(args, 300)
    if name in _FIXED_IDS:
        return _FIXED_IDS[name]
    if name == "ImageFolder":
        folder = args.get("folder")
        folder = (_slug(folder.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]) or "root"
                  if isinstance(folder, str) and folder else "unknown")
        size = args.get("size", shape[2] if shape else 64)
        channels = args.get("channels", shape[0] if shape else 3)
        return f"imagefolder-{folder}-{size}{'-grey' if channels == 1 else ''}" + _held_out(args, 5000)
    if name == "RingOfGaussians":
        modes = _number(args.get("num_modes"), 8)
        radius, std = _number(args.get("radius"), 2.0), _number(args.get("std"), 0.02)
        return f"ring-{modes:g}modes-r{radius:g}-std{std:g}"
    return f"{_kebab(name) or 'data'}-unknown"


_FIXED_IDS = {"MNIST": "mnist", "FashionMNIST": "fashion-mnist", "CIFAR10": "cifar10"}


def _upgrade_1_to_2(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "schema": 2, "dataset_id": record.get("dataset_id") or legacy_dataset_id(record)}


#: ``_UPGRADES[v]`` turns a record of schema ``v`` into one of schema ``v + 1``.
_UPGRADES = {1: _upgrade_1_to_2}
assert sorted(_UPGRADES) == list(range(1, RECORD_SCHEMA)), "one upgrade per schema step"


def upgrade_record(record: Any) -> Any:
    """A record of an older schema brought up to :data:`RECORD_SCHEMA` (a new dict); anything else as it is, for
    :func:`validate_record` to judge. Schema 1 gains ``dataset_id`` (:func:`legacy_dataset_id`)."""
    while isinstance(record, dict) and record.get("schema") in _UPGRADES:
        record = _UPGRADES[record["schema"]](record)
    return record
