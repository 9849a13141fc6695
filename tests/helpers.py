"""Test utilities shared by the test files: small fake data sets in the real file formats, CLI runs, DDP runs."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from lightning import Callback

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


# ---- fake data in the published formats ---------------------------------------------------------------------
def write_idx_images(path: Path, images: np.ndarray) -> None:
    """uint8 (N, H, W) -> IDX3 (gzipped if the name ends in .gz)."""
    n, h, w = images.shape
    data = struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(data)


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    data = struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(data)


def write_mnist_like(folder: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """MNIST / Fashion-MNIST layout: ``folder/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx_images(folder / "raw" / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx_labels(folder / "raw" / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))


def write_amat(path: Path, rows: np.ndarray) -> None:
    text = "".join(" ".join(str(int(v)) for v in row) + "\n" for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open(path, "wt") if path.suffix == ".gz" else open(path, "w")).write(text)


def write_cifar_like(folder: Path, n_per_batch: int, seed: int = 0) -> None:
    """``cifar-10-batches-py`` layout: 5 training pickles and one test pickle, uint8 rows of 3072."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n_per_batch).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def write_image_folder(folder: Path, n_per_class: int, size: int = 20, classes=("cats", "dogs"), seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")


def make_fake_data_root(root: Path) -> Path:
    """Every file-backed data set, tiny, under one root (enough images for the default validation sizes)."""
    write_mnist_like(root / "MNIST", n_train=5100, n_test=64)
    write_mnist_like(root / "FashionMNIST", n_train=5100, n_test=64, seed=1)
    rng = np.random.default_rng(2)
    for split, n in (("train", 64), ("valid", 32), ("test", 32)):
        write_amat(root / "BinarizedMNIST" / f"binarized_mnist_{split}.amat.gz", rng.integers(0, 2, (n, 784)))
    write_cifar_like(root / "cifar-10-batches-py", n_per_batch=1030)
    write_image_folder(root / "images", n_per_class=40)
    write_image_folder(root / "celeba" / "img_align_celeba", n_per_class=40, size=8, classes=("all",))
    return root


# ---- the real data ----------------------------------------------------------------------------------------
def require_real_data(*files: str) -> Path:
    """The real data root (``$LIGHTNING_GEN_DATA``) holding ``files`` (plain or ``.gz``).

    Outside CI a machine without the data skips these tests, saying what is missing; in CI (``CI`` set) missing
    data fails them, so a misconfigured run cannot pass by skipping.
    """
    import pytest

    from lightning_gen.data.readers import existing

    root = os.environ.get("LIGHTNING_GEN_DATA")
    missing = [f for f in files if not root or existing(Path(root) / f) is None]
    if not root or missing:
        reason = (f"LIGHTNING_GEN_DATA={root} lacks {', '.join(f + '[.gz]' for f in missing)}" if root else
                  "LIGHTNING_GEN_DATA is not set: point it at the folder holding MNIST/ and BinarizedMNIST/")
        if os.environ.get("CI"):
            pytest.fail(f"real data required in CI: {reason}")
        pytest.skip(reason)
    return Path(root)


# ---- the developer benchmarks ---------------------------------------------------------------------------------
def benchmark_module(name: str):
    """The module ``benchmarks/<name>.py`` (developer benchmarks, outside the package), loaded from its file under
    its plain name, the name by which the benchmark scripts beside it import it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ---- running the CLI --------------------------------------------------------------------------------------
def config_paths() -> list[Path]:
    """The model configs (``configs/*.yaml``); presets in sub-folders compose with them and are not runs."""
    return sorted(CONFIGS.glob("*.yaml"))


def resolved_config(config: Path) -> dict:
    """``config`` as the CLI resolves it (shared defaults, model/ and data/ groups): ``fit --print_config``."""
    import contextlib
    import io

    import yaml

    from lightning_gen.app.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["fit", "--config", str(config), "--print_config"])
    return yaml.safe_load(out.getvalue())


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m lightning_gen ARGS`` in a fresh process (as a user runs it), output captured."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": f"{REPO}:{REPO / 'tests'}", **(env or {})}
    return subprocess.run([sys.executable, "-m", "lightning_gen", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


class DumpRankState(Callback):
    """Saves each rank's model state (and the noise it drew, when the model records it) at the end of ``fit``."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.dirpath / f"rank{trainer.global_rank}.pt")


def ddp_fit_states(config: Path | str, tmp_path: Path, extra: list[str] = (), steps: int = 3) -> list[dict]:
    """Fit ``config`` for ``steps`` steps with DDP on 2 CPU processes (gloo) and return each rank's state dict."""
    dump = tmp_path / "rank_states"
    args = ["fit", "--config", str(config), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
            "--trainer.strategy", "ddp", "--trainer.max_steps", str(steps), "--trainer.max_epochs", "-1",
            "--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
            "--trainer.callbacks", "helpers.DumpRankState", "--trainer.callbacks.dirpath", str(dump),
            "--trainer.default_root_dir", str(tmp_path / "run"), *extra]
    proc = run_cli(args, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})  # two processes on two cores
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(dump / f"rank{r}.pt", weights_only=True) for r in range(2)]


def assert_ddp_fit_in_sync(config: str, tmp_path: Path, data_args: tuple = ((1, 8, 8), 256, 10), steps: int = 3) -> None:
    """Fit ``configs/<config>.yaml`` with DDP on 2 CPU processes: both ranks end with identical parameters, and
    every weight tensor moved from the seeded initial model by at most a few learning rates (a different
    initialisation would differ by ~0.1)."""
    import importlib

    states = ddp_fit_states(CONFIGS / f"{config}.yaml", tmp_path, steps=steps)
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name
    # The CLI seeds (seed_everything) before building the model: rebuild that initial model.
    cfg = resolved_config(CONFIGS / f"{config}.yaml")  # the experiment composes with configs/shared and its groups
    spec = cfg["model"]
    module, _, name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    options = {k: v for k, v in spec["init_args"].items() if k != "optimizer"}
    torch.manual_seed(cfg["seed_everything"])
    init = cls(*data_args, **options).state_dict()
    lr = spec["init_args"]["optimizer"]["init_args"]["lr"]
    for key, value in init.items():
        if key.endswith("weight"):
            change = (states[0][key] - value).abs().max().item()
            assert 0 < change <= 5 * lr, (key, change)


class Heartbeat(Callback):
    """Writes ``rank<r>.step`` (the global step) every ``every_n_steps`` training steps, so a test can wait until
    a run it started in another process is really training before it signals it."""

    def __init__(self, dirpath: str, every_n_steps: int = 10) -> None:
        self.dirpath, self.every_n_steps = Path(dirpath), every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            (self.dirpath / f"rank{trainer.global_rank}.step").write_text(str(trainer.global_step))
