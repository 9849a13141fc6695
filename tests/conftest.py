import os
import tempfile
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("WANDB_MODE", "offline")
# Derived files (decoded image folders, reference statistics) of the test session stay out of the user's cache.
os.environ.setdefault("LIGHTNING_GEN_CACHE", tempfile.mkdtemp(prefix="lightning_gen_test_cache_"))

from helpers import make_fake_data_root, require_real_data  # noqa: E402


@pytest.fixture(scope="session")
def fake_data_root(tmp_path_factory) -> Path:
    """A data root holding tiny copies of every file-backed data set, in the published formats."""
    return make_fake_data_root(tmp_path_factory.mktemp("fake_data"))


@pytest.fixture
def real_data_root() -> Path:
    """The real data (CI points ``LIGHTNING_GEN_DATA`` at ../shared/data)."""
    return require_real_data("MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte",
                             "MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte")
