"""Reference statistics of real data, cached on disk under a key that names everything they depend on.

A cached entry is one ``.npz`` file holding the mean ``mu`` ``(D,)`` and covariance ``sigma`` ``(D, D)`` (float64) of
the features of real images, optionally the features themselves (for KID), the key it was computed for, and a
sha256 of the arrays. The file name is readable and ends in a hash of the full key:
``mnist-test-mnist-lenet-fc-1x28x28-n10000-w1a2b3c4d-<hash>.npz``. The key holds the dataset, split, extractor,
feature layer, image shape, sample count and the sha256 of the extractor's weights, so new weights or another
sample count never reuse old statistics.

Writes are atomic (a temporary file beside the target, then ``os.replace``), so concurrent processes (DDP ranks)
never read half a file. A file that cannot be read, or whose embedded key, shapes or checksum do not match, is
recomputed with a warning. A cache directory that cannot be written (a read-only data root) is skipped with a
warning; the statistics are still returned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from lightning_gen.files import cache_root
from lightning_gen.files import atomic_write
from lightning_gen.metrics.functional import compute_features, feature_stats

FORMAT_VERSION = 1


@dataclass(frozen=True)
class StatsKey:
    """Everything a reference statistic depends on."""

    dataset: str
    split: str
    extractor: str
    feature_layer: str
    image_shape: tuple[int, int, int]  # (C, H, W) of the data images, before the extractor resizes them
    num_samples: int
    weights_sha256: str

    @classmethod
    def for_extractor(cls, extractor, *, dataset: str, split: str, image_shape, num_samples: int) -> "StatsKey":
        return cls(dataset, split, extractor.name, extractor.feature_layer, tuple(int(s) for s in image_shape),
                   int(num_samples), extractor.weights_sha256)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True)

    def filename(self) -> str:
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
        shape = "x".join(map(str, self.image_shape))
        parts = [self.dataset, self.split, self.extractor, self.feature_layer, shape, f"n{self.num_samples}",
                 f"w{self.weights_sha256[:8]}", digest]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in "-".join(parts))
        return f"{safe}.npz"


@dataclass
class ReferenceStats:
    """Feature statistics of real data: float64 ``mu`` ``(D,)``, ``sigma`` ``(D, D)``, optionally the ``features``
    ``(N, D)`` themselves (KID needs them)."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None = None

    @classmethod
    def from_features(cls, features, *, keep_features: bool = False) -> "ReferenceStats":
        if isinstance(features, Tensor):
            features = features.detach().cpu().double().numpy()
        f = np.asarray(features, dtype=np.float64)
        mu, sigma = feature_stats(f)
        return cls(mu, sigma, f if keep_features else None)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"mu": self.mu, "sigma": self.sigma}
        if self.features is not None:
            out["features"] = self.features
        return out


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name], dtype=np.float64)
        digest.update(f"{name}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


class StatsCache:
    """A folder of cached :class:`ReferenceStats` (default ``$LIGHTNING_GEN_CACHE/fid_stats``, never the data root)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.dir = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "fid_stats"

    def path(self, key: StatsKey) -> Path:
        return self.dir / key.filename()

    def load(self, key: StatsKey, *, need_features: bool = False) -> ReferenceStats | None:
        """The cached statistics for ``key``; None on a miss, or (with a warning) on a corrupt or stale file."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                stored = {name: f[name] for name in f.files}
            problem = self._check(stored, key)
        except Exception as err:  # a damaged file fails in many ways (BadZipFile, zlib.error, ValueError, ...)
            problem = f"cannot be read ({type(err).__name__}: {err})"
        if problem is None and need_features and "features" not in stored:
            return None  # a valid entry without features: recompute with them, quietly
        if problem is not None:
            warnings.warn(f"reference statistics {path} {problem}; recomputing them", RuntimeWarning, stacklevel=3)
            return None
        return ReferenceStats(stored["mu"], stored["sigma"], stored.get("features"))

    @staticmethod
    def _check(stored: dict[str, np.ndarray], key: StatsKey) -> str | None:
        if "key" not in stored or str(stored["key"]) != key.to_json():
            return "were computed for another key"
        mu, sigma = stored.get("mu"), stored.get("sigma")
        if mu is None or sigma is None or mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            return "have inconsistent shapes"
        features = stored.get("features")
        if features is not None and features.shape != (key.num_samples, mu.shape[0]):
            return f"hold features of shape {features.shape}, expected ({key.num_samples}, {mu.shape[0]})"
        arrays = {k: v for k, v in stored.items() if k in ("mu", "sigma", "features")}
        if str(stored.get("checksum", "")) != _checksum(arrays):
            return "fail their checksum (corrupt file)"
        return None

    def save(self, key: StatsKey, stats: ReferenceStats) -> Path | None:
        """Write atomically; returns the path, or None (with a warning) where the folder cannot be written."""
        path = self.path(key)
        arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in stats.arrays().items()}
        try:
            with atomic_write(path) as f:
                np.savez(f, key=np.array(key.to_json()), checksum=np.array(_checksum(arrays)), **arrays)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:  # a read-only or full disk: the cache is an optimisation
            warnings.warn(f"cannot write reference statistics to {self.dir} ({err}); continuing without the cache",
                          RuntimeWarning, stacklevel=2)
            return None
        return path

    def get_or_compute(self, key: StatsKey, compute: Callable[[], ReferenceStats], *,
                       need_features: bool = False) -> ReferenceStats:
        """Load the statistics for ``key``, or compute and store them."""
        stats = self.load(key, need_features=need_features)
        if stats is None:
            stats = compute()
            if need_features and stats.features is None:
                raise ValueError("compute() returned statistics without features, but need_features=True")
            self.save(key, stats)
        return stats


def reference_stats(extractor, images: Tensor, *, dataset: str, split: str, num_samples: int | None = None,
                    keep_features: bool = False, cache: StatsCache | None = None,
                    batch_size: int = 256) -> ReferenceStats:
    """Feature statistics of the first ``num_samples`` (default all) of ``images`` (uint8 ``(N, C, H, W)``),
    through ``cache`` (default :class:`StatsCache` at the default folder)."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError("images must be a tensor (N, C, H, W) of the whole split; the key records N and (C, H, W)")
    n = images.shape[0] if num_samples is None else int(num_samples)
    if not 2 <= n <= images.shape[0]:
        raise ValueError(f"num_samples must be in 2..{images.shape[0]}, got {n}")
    key = StatsKey.for_extractor(extractor, dataset=dataset, split=split, image_shape=images.shape[1:], num_samples=n)

    def compute() -> ReferenceStats:
        features, _ = compute_features(extractor, images[:n], batch_size=batch_size)
        return ReferenceStats.from_features(features, keep_features=keep_features)

    return (cache or StatsCache()).get_or_compute(key, compute, need_features=keep_features)
