"""Shared fixtures. The test modules import their helpers (``helpers``, ``contracts``) by plain name: pytest's default
``prepend`` import mode puts this folder, which is not a package, on the import path (pyproject's addopts names it).
"""

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
# Derived files (decoded image folders, reference statistics) of the test session stay out of the user's cache.
os.environ.setdefault("LIGHTNING_GEN_CACHE", tempfile.mkdtemp(prefix="lightning_gen_test_cache_"))

from helpers import CONFIGS, make_fake_data_root, require_real_data, run_cli  # noqa: E402  (after the cache root)


@pytest.fixture(scope="session")
def fake_data_root(tmp_path_factory) -> Path:
    """A data root holding tiny copies of every file-backed data set, in the published formats."""
    return make_fake_data_root(tmp_path_factory.mktemp("fake_data"))


@pytest.fixture
def real_data_root() -> Path:
    """The real data: ``$LIGHTNING_GEN_DATA``, the one way tests find it (:func:`helpers.require_real_data`)."""
    return require_real_data("MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte",
                             "MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte")


@pytest.fixture(scope="session")
def trained_fvsbn(tmp_path_factory) -> Path:
    """One epoch of configs/fvsbn_digits.yaml through the CLI, as a user trains it: the run
    ``fvsbn_digits/lightning_logs/version_0`` with its config.yaml, and its ``last.ckpt``, which is returned."""
    tmp = tmp_path_factory.mktemp("fvsbn_run")
    proc = run_cli(["fit", "--config", str(CONFIGS / "fvsbn_digits.yaml"), "--trainer.max_epochs", "1",
                    "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp / "fvsbn_digits")],
                   cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (checkpoint,) = (tmp / "fvsbn_digits").glob("lightning_logs/version_0/checkpoints/last.ckpt")
    return checkpoint
