"""Per-image test NLL kept with a record, and the paired comparison of two runs scored on the same test images.

Every run of a data set is scored on the same test images, and most of the per-image variation (an easy digit is
easy for every model) cancels in a difference. So two of our runs are compared on the per-image differences
``d_i = nll_a(x_i) - nll_b(x_i)``: the mean difference and its standard error ``std(d, ddof=1) / sqrt(n)``, which
is far smaller than either run's own standard error when the runs are correlated (two seeds of one model: 0.999).
The :data:`PAIRED_RULE`: two runs tie when the 95% interval of the mean difference, ``mean ± 1.96 SE``, contains 0.

A record keeps its per-image values under ``nll_per_image`` (:func:`encode`): float32 in test-set order,
zlib-compressed and base64-encoded (about 5 bytes an image), with the hash of the test split's images
(:func:`lightning_gen.evaluation.split_digest`, the identity the reference-statistics cache uses) and the count.
Runs are paired only when both hashes and counts agree; a published number (or an older record) has no per-image
values and is compared as before (:func:`lightning_gen.leaderboard.ranking.rank`).
"""

from __future__ import annotations

import base64
import math
import zlib
from typing import Any

import numpy as np

__all__ = ["PAIRED_RULE", "Z95", "decode", "encode", "paired_difference", "validate_per_image"]

#: Two-sided 95% quantile of the normal distribution.
Z95 = 1.96
#: The tie rule for two of our runs on one test split, as the page states it.
PAIRED_RULE = ("paired: two runs on the same test images tie when the 95% interval of their mean per-image NLL "
               "difference (mean ± 1.96 × its standard error) contains 0")
_ENCODING = "float32-zlib-base64"


def encode(values: Any, *, split: str) -> dict[str, Any]:
    """Per-image NLL (nats, test-set order) as the record's ``nll_per_image``: ``{split, count, encoding, data}``."""
    array = np.ascontiguousarray(np.asarray(values, dtype="<f4").reshape(-1))
    data = base64.b64encode(zlib.compress(array.tobytes(), 9)).decode("ascii")
    return {"split": split, "count": int(array.size), "encoding": _ENCODING, "data": data}


def validate_per_image(value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is ``None`` or what :func:`encode` returns."""
    if value is None:
        return
    if (not isinstance(value, dict) or not isinstance(value.get("split"), str) or value.get("encoding") != _ENCODING
            or not isinstance(value.get("count"), int) or not isinstance(value.get("data"), str)):
        raise ValueError("record key 'nll_per_image' must be null or {split: str, count: int, "
                         f"encoding: {_ENCODING!r}, data: str}} (leaderboard.paired.encode)")


def decode(value: dict[str, Any] | None) -> np.ndarray | None:
    """The float64 per-image values of a record's ``nll_per_image`` (None for None)."""
    if value is None:
        return None
    array = np.frombuffer(zlib.decompress(base64.b64decode(value["data"])), dtype="<f4").astype(np.float64)
    if array.size != value["count"]:
        raise ValueError(f"nll_per_image holds {array.size} values, its count says {value['count']}")
    return array


def paired_difference(a: dict[str, Any] | None, b: dict[str, Any] | None,
                      scale: float = 1.0) -> tuple[float, float] | None:
    """``(mean, standard error)`` of ``scale * (a_i - b_i)`` over the test images, for two records'
    ``nll_per_image`` (``scale`` converts nats, e.g. to bits/dim); None unless both exist on the same split and
    count (no pairing across test sets)."""
    if a is None or b is None or a["split"] != b["split"] or a["count"] != b["count"] or a["count"] < 2:
        return None
    d = scale * (decode(a) - decode(b))
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
