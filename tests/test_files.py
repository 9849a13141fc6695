"""Every file the suite writes (grids, reference statistics, decoded-data caches, downloads) goes through one atomic
writer: complete or absent, and readable by whoever the user's umask lets read it."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from lightning_gen.data.readers import _save_atomic
from lightning_gen.files import atomic_write
from lightning_gen.metrics.stats_cache import ReferenceStats, StatsCache, StatsKey


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_follows_the_umask(tmp_path, umask_022):
    with atomic_write(tmp_path / "sub" / "a.bin") as f:
        f.write(b"x")
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"x" and mode(tmp_path / "sub" / "a.bin") == 0o644


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "a.bin") as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_caches_are_written_with_the_umask(tmp_path, umask_022):
    _save_atomic({"x": torch.zeros(2)}, tmp_path / "decoded.pt")
    assert mode(tmp_path / "decoded.pt") == 0o644
    cache = StatsCache(tmp_path / "stats")
    key = StatsKey("digits-8bit", "test", "digits-lenet", "fc", (1, 8, 8), 300, "ab" * 32)
    path = cache.save(key, ReferenceStats(mu=np.zeros(2), sigma=np.eye(2), features=np.zeros((3, 2))))
    assert path is not None and mode(path) == 0o644
