"""Benchmark checkpoints: FID / IS / KID of samples, exact NLL on the test split, linear probe, speed, size.

    python -m lightning_gen benchmark runs/x/lightning_logs/version_0/checkpoints/last.ckpt [more.ckpt ...]
    python -m lightning_gen benchmark CKPT --devices 2 --strategy ddp --accelerator cpu --num-samples 10000

Every number is written with the protocol that produced it (one record per checkpoint, the leaderboard's schema 1,
into :class:`~lightning_gen.leaderboard.store.Store`; ``--out`` keeps a JSON copy):

- Sample metrics: ``num_samples`` images from ``model.sample`` against the *whole test split* of the run's data
  module, through one feature extractor (``protocol.extractor`` and the sha256 of its weights). Defaults:
  ``digits-lenet`` for ``Digits``; ``mnist-lenet`` (a LeNet trained on MNIST digits, also used for
  BinarizedMNIST and, as a stand-in only, FashionMNIST) for the 28x28 grey sets; ``inception`` (2015-12-05
  Inception-v3, the only one comparable with published FIDs) otherwise. Test-split statistics are cached
  (:mod:`lightning_gen.metrics.stats_cache`, keyed on a hash of the test images themselves). IS uses 10 splits,
  KID 100 subsets of ``min(1000, n_fake, n_real)``.
- Samples are drawn in chunks of ``batch_size``; chunk ``c`` uses a generator seeded from ``(seed, c)`` (and
  class labels ``index % num_classes`` for a class-conditional model), and chunks go round-robin to the DDP
  ranks. The union of samples, hence every sample metric, is the same for any number of processes.
- NLL: ``-model.log_prob`` summed in float64 over every test image exactly once (rank ``r`` of ``W`` takes images
  ``r::W``, no padding; the sums are all-reduced), reported in nats per image and bits per dimension.
  ``nll_estimator`` is "exact" for autoregressive models and "importance-weighted k=<k>" for the VAE.
- ``samples_per_s``: images / wall time of the ``sample`` calls only (the slowest rank's time under DDP).
  ``num_params``: every parameter of the checkpointed module (a GAN's discriminator included).
- ``probe_acc``: :func:`lightning_gen.probe.linear_probe` on ``encode(x)`` (latent models) or ``features(x)``
  (GAN discriminators), fitted on the train split and scored on the test split, where the data has labels.

It runs through a Lightning ``Trainer`` (``--devices``, ``--strategy``, ``--num-nodes``, ``--accelerator``), so
``--strategy ddp`` spreads sampling and the likelihood over processes; rank 0 writes the records.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_gen.data.base import DataFilesMissing, ImageDataModule
from lightning_gen.images import image_grid, save_png
from lightning_gen.metrics.features import file_sha256
from lightning_gen.metrics.torchmetrics_wrappers import NLLSum, SampleFeatures
from lightning_gen.models.base import GenerativeModule, NoLikelihoodError, bits_per_dim, from_levels
from lightning_gen.models.loading import CheckpointError, load_model

REPO = Path(__file__).resolve().parents[1]
RECORD_SCHEMA = 1
DEFAULT_NUM_SAMPLES = 10_000
#: Inception-v3 runs at about 6.5 images/s on a 2-core CPU: 10,000 samples would take half an hour.
INCEPTION_CPU_NUM_SAMPLES = 500
GRID_SIZE = 64
IS_SPLITS = 10
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000

#: Feature extractor per data module class when ``--extractor`` is not given (anything else: "inception").
DEFAULT_EXTRACTORS = {"Digits": "digits-lenet", "MNIST": "mnist-lenet", "BinarizedMNIST": "mnist-lenet",
                      "FashionMNIST": "mnist-lenet"}
#: Leaderboard family of each model class, for classes that do not set a ``family`` attribute themselves.
FAMILIES = {"FVSBN": "baseline", "PixelCNN": "autoregressive", "GatedPixelCNN": "autoregressive",
            "RowLSTM": "autoregressive", "DiagonalBiLSTM": "autoregressive", "VAE": "latent",
            "Autoencoder": "latent", "GAN": "gan"}


class BenchmarkError(ValueError):
    """Bad input to the benchmark: a model, data set or option it cannot evaluate, with the reason."""


# ---- small pieces ----------------------------------------------------------------------------------------------
def chunk_seed(seed: int, chunk: int) -> int:
    """Seed of sample chunk ``chunk``: independent streams per (seed, chunk), whatever the number of processes."""
    return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def check_samples(images: Any, n: int, image_shape: tuple[int, ...], num_levels: int, *,
                  source: str = "sample") -> Tensor:
    """Reject what ``model.sample(n)`` returned unless it is uint8 ``(n, C, H, W)`` on the data's grey levels."""
    expected = f"uint8 images of shape ({n}, {', '.join(map(str, image_shape))}) in 0..255"
    if not isinstance(images, Tensor):
        raise BenchmarkError(f"{source} returned {type(images).__name__}; expected a tensor of {expected}")
    if images.dtype != torch.uint8:
        hint = (" (floats: convert with (x * 255).round().clamp(0, 255).to(torch.uint8))"
                if images.is_floating_point() else " (level indices? convert with from_levels)")
        raise BenchmarkError(f"{source} returned dtype {images.dtype}; expected {expected}{hint}")
    if tuple(images.shape) != (n, *image_shape):
        raise BenchmarkError(f"{source} returned shape {tuple(images.shape)}; expected {expected}")
    if num_levels < 256:
        allowed = from_levels(torch.arange(num_levels), num_levels)
        valid = torch.zeros(256, dtype=torch.bool, device=images.device)
        valid[allowed.long().to(images.device)] = True
        if not bool(valid[images.long()].all()):
            bad = images[~valid[images.long()]].unique()[:5].tolist()
            raise BenchmarkError(
                f"{source} returned values {bad} outside the {num_levels} grey levels of the data "
                f"({allowed.tolist() if num_levels <= 8 else f'{num_levels} levels'} on the 0..255 scale)"
                + ("; binary images must be 0/255, not 0/1 (convert with from_levels)" if num_levels == 2 else ""))
    return images


def model_family(model: GenerativeModule) -> str:
    """The leaderboard family: a ``family`` class attribute if the model defines one, else :data:`FAMILIES`."""
    for cls in type(model).__mro__:
        if isinstance(cls.__dict__.get("family"), str):
            return cls.__dict__["family"]
        if cls.__name__ in FAMILIES:
            return FAMILIES[cls.__name__]
    raise BenchmarkError(f"no leaderboard family known for {type(model).__name__}: give the class a `family` attribute "
                         f"(one of autoregressive, latent, gan, baseline)")


def git_commit() -> str | None:
    """HEAD of the code doing the evaluation, ``-dirty`` when tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO, capture_output=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.returncode == 1 else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ---- the run a checkpoint belongs to ---------------------------------------------------------------------------
def run_dir(checkpoint: Path) -> Path:
    """The log folder of the run: ``<run>/checkpoints/x.ckpt`` -> ``<run>`` (where LightningCLI saves config.yaml)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def run_name(checkpoint: Path) -> str:
    """A short, file-name-safe name: ``<root>`` for ``<root>/lightning_logs/version_0/checkpoints/last.ckpt``,
    ``<root>_version_N`` for later versions, ``_<stem>`` added for a checkpoint other than ``last``; a checkpoint
    outside a ``checkpoints/`` folder is named by its stem."""
    checkpoint = checkpoint.resolve()
    if checkpoint.parent.name != "checkpoints":
        name = checkpoint.stem
    else:
        log_dir = run_dir(checkpoint)
        name = log_dir.name
        if log_dir.name.startswith("version_") and log_dir.parent.name == "lightning_logs":
            name = log_dir.parent.parent.name + ("" if log_dir.name == "version_0" else f"_{log_dir.name}")
        if checkpoint.stem != "last":
            name += f"_{checkpoint.stem}"
    return "".join(c if c.isalnum() or c in "-_." else "" if c == "=" else "_" for c in name)


def run_config(checkpoint: Path) -> dict | None:
    """The run's ``config.yaml`` (written by LightningCLI next to ``checkpoints/``), or None."""
    import yaml

    for folder in (run_dir(checkpoint), checkpoint.parent):
        path = folder / "config.yaml"
        if path.is_file():
            with open(path) as f:
                config = yaml.safe_load(f)
            return config if isinstance(config, dict) else None
    return None


def _import_class(path: str, default_module: str) -> type:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module or default_module), name)
    except (AttributeError, ModuleNotFoundError) as e:
        raise BenchmarkError(f"unknown data module {path!r}: name a class of lightning_gen.data (e.g. MNIST, Digits) "
                             "or give its full import path") from e


def build_datamodule(config: dict | None, *, data: str | None = None, data_root: str | None = None,
                     data_args: dict | None = None, checkpoint: Path | None = None) -> ImageDataModule:
    """The data module to compare against: the run config's ``data:`` section, or ``data`` (a class name) with
    the config's arguments when the class is the same; ``data_args`` and ``data_root`` override arguments."""
    section = (config or {}).get("data") or {}
    class_path = section.get("class_path") if isinstance(section, dict) else None
    init_args = dict(section.get("init_args") or {}) if isinstance(section, dict) else {}
    if data is not None:
        cls = _import_class(data, "lightning_gen.data")
        if class_path is None or _import_class(class_path, "lightning_gen.data") is not cls:
            init_args = {}
    elif class_path is not None:
        cls = _import_class(class_path, "lightning_gen.data")
    else:
        raise BenchmarkError(f"{checkpoint}: no config.yaml next to the run's checkpoints/ folder says which data it "
                             "was trained on; pass --data CLASS (e.g. --data BinarizedMNIST)")
    init_args.update(data_args or {})
    if data_root is not None:
        init_args["root"] = data_root
    try:
        dm = cls(**init_args)
    except TypeError as e:
        raise BenchmarkError(f"cannot build {cls.__name__}({init_args}): {e}") from e
    if not isinstance(dm, ImageDataModule):
        raise BenchmarkError(f"{cls.__name__} is not a lightning_gen ImageDataModule")
    return dm


def checkpoint_meta(path: Path) -> dict:
    """What the checkpoint file says about training (weights-only, memory-mapped: nothing is executed or copied)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    timer = (ckpt.get("callbacks") or {}).get("Timer") or {}
    train_time = (timer.get("time_elapsed") or {}).get("train")
    return {"hyper_parameters": ckpt.get("hyper_parameters") or {},
            "train_time_s": float(train_time) if train_time else None}


# ---- options ---------------------------------------------------------------------------------------------------
@dataclass
class BenchmarkOptions:
    """What to compute and how (see ``python -m lightning_gen benchmark --help``)."""

    num_samples: int | None = None  # None: 10,000, or 500 for Inception without a GPU; 0: no sample metrics
    extractor: str | None = None  # None: by data set (DEFAULT_EXTRACTORS)
    fid_weights: str | None = None
    batch_size: int = 250
    iw_samples: int | None = None
    seed: int = 0
    nll: bool | None = None  # None: where the model has a likelihood; True: required
    probe: bool | None = None  # None: where the model has encode/features and the data has labels
    probe_max_train: int | None = None
    stats_cache: str | None = None
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    progress: bool = True
    trainer_kwargs: dict = field(default_factory=dict)


def _gpu_in_use(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_extractor_name(options: BenchmarkOptions, datamodule: ImageDataModule) -> str:
    from lightning_gen.metrics.features import available_extractors

    name = options.extractor or DEFAULT_EXTRACTORS.get(type(datamodule).__name__, "inception")
    if name not in available_extractors():
        raise BenchmarkError(f"unknown extractor {name!r}; expected one of {', '.join(available_extractors())}")
    return name


def build_extractor(name: str, fid_weights: str | None):
    """The extractor ``name``; ``fid_weights`` is the Inception weights file (the digit classifiers ship theirs)."""
    from lightning_gen.metrics.features import get_extractor

    return get_extractor(name, weights_path=fid_weights) if name == "inception" and fid_weights else get_extractor(name)


def resolve_num_samples(options: BenchmarkOptions, extractor_name: str) -> int:
    if options.num_samples is not None:
        if options.num_samples != 0 and options.num_samples < 2:
            raise BenchmarkError(f"--num-samples must be 0 (no sample metrics) or at least 2, "
                                 f"got {options.num_samples}")
        return options.num_samples
    if extractor_name == "inception" and not _gpu_in_use(options.accelerator):
        warnings.warn(f"Inception features on the CPU run at a few images per second: using --num-samples "
                      f"{INCEPTION_CPU_NUM_SAMPLES} instead of {DEFAULT_NUM_SAMPLES} (FID from so few samples is "
                      "biased upwards; pass --num-samples to choose). The test split's reference statistics are "
                      "computed once per data set and cached: the first run takes longer.", stacklevel=2)
        return INCEPTION_CPU_NUM_SAMPLES
    return DEFAULT_NUM_SAMPLES


def resolve_stats_cache(options: BenchmarkOptions, datamodule: ImageDataModule):
    """``--stats-cache``, else ``$LIGHTNING_GEN_CACHE/fid_stats`` (never the data root, which may be shared)."""
    from lightning_gen.metrics.stats_cache import StatsCache

    return StatsCache(options.stats_cache)


def _gather_rows(t: Tensor) -> Tensor:
    """Concatenate ``(n_r, ...)`` tensors over all processes (sizes may differ, zero included)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return t
    if torch.distributed.get_world_size() == 1:
        return t
    from torchmetrics.utilities.distributed import gather_all_tensors

    return torch.cat(gather_all_tensors(t))


# ---- the evaluation, as a LightningModule so any strategy can run it -------------------------------------------
class BenchmarkModule(L.LightningModule):
    """Wraps a model for ``Trainer.test``: dataloader "samples" yields sample-chunk indices, dataloader "nll" the
    test images; each rank works on its own share and ``on_test_epoch_end`` combines them exactly.

    After ``trainer.test`` the combined figures are in :attr:`results` on global rank 0 (empty elsewhere).
    """

    def __init__(self, model: GenerativeModule, *, test_images: Tensor, test_labels: Tensor, num_levels: int,
                 extractor=None, reference=None, num_samples: int = 0, chunk_size: int = 250, seed: int = 0,
                 nll: bool = False, batch_size: int = 250, grid_size: int = GRID_SIZE) -> None:
        super().__init__()
        self.model = model
        self.extractor = extractor
        self.reference = reference  # () -> ReferenceStats, called on rank 0 only
        self.test_images, self.test_labels = test_images, test_labels
        self.num_levels = num_levels
        self.num_samples, self.chunk_size, self.seed = num_samples, chunk_size, seed
        self.nll, self.batch_size, self.grid_size = nll, batch_size, grid_size
        self.nll_sum = NLLSum()
        self.results: dict[str, Any] = {}
        self.grid: Tensor | None = None
        self._kinds: list[str] = []
        # With fewer sample chunks (or test images) than processes a rank has nothing to do: that is fine.
        self.allow_zero_length_dataloader_with_multiple_devices = True

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_samples / self.chunk_size) if self.num_samples else 0

    def test_dataloader(self):
        rank, world = self.trainer.global_rank, self.trainer.world_size
        loaders, self._kinds = [], []
        if self.num_samples:
            # Round-robin chunks: the samples themselves do not depend on the number of processes.
            loaders.append(DataLoader(list(range(self.num_chunks))[rank::world], batch_size=None))
            self._kinds.append("samples")
        if self.nll:
            # Rank r takes images r::world, every image exactly once (a DistributedSampler would pad with repeats).
            idx = torch.arange(self.test_images.shape[0])[rank::world]
            batches = [(self.test_images[b], self.test_labels[b]) for b in idx.split(self.batch_size)]
            loaders.append(DataLoader(batches, batch_size=None))
            self._kinds.append("nll")
        return loaders

    def on_test_start(self) -> None:
        # Any randomness outside the seeded sample chunks (importance samples of a VAE) is seeded per rank.
        torch.manual_seed(self.seed + self.global_rank)
        self._sample_seconds = 0.0
        self._index, self._features, self._logits, self._grid = [], [], [], []
        if self.num_samples:
            # Shapes of the extractor's output, for a rank that draws no chunk (fewer chunks than processes).
            blank = self.extractor(torch.zeros(1, *self.model.image_shape, dtype=torch.uint8, device=self.device))
            self._feature_dim = blank.features.shape[1]
            self._num_logits = None if blank.logits is None else blank.logits.shape[1]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._kinds[dataloader_idx] == "nll":
            x, y = batch
            labels = y if self.model.conditional else None
            logp = self.model.log_prob(x, labels)
            if logp.shape != (x.shape[0],) or not bool(torch.isfinite(logp).all()):
                raise BenchmarkError(f"{type(self.model).__name__}.log_prob returned shape {tuple(logp.shape)}"
                                     f"{' with non-finite values' if logp.numel() else ''}; expected "
                                     f"({x.shape[0]},) finite values")
            self.nll_sum.update(-logp)
            return
        chunk = int(batch)
        start = chunk * self.chunk_size
        n = min(self.chunk_size, self.num_samples - start)
        index = torch.arange(start, start + n, device=self.device)
        labels = index % self.model.num_classes if self.model.conditional else None
        seed = chunk_seed(self.seed, chunk)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)  # for samplers that also draw from the global generator
            self._sync()
            t0 = time.perf_counter()
            images = self.model.sample(n, generator=generator, labels=labels)
            self._sync()
            self._sample_seconds += time.perf_counter() - t0
        images = check_samples(images, n, self.model.image_shape, self.num_levels,
                               source=f"{type(self.model).__name__}.sample({n})")
        out = self.extractor(images.to(self.device))
        self._index.append(index)
        self._features.append(out.features.double())
        if out.logits is not None:
            self._logits.append(out.logits.double())
        keep = index < self.grid_size
        if keep.any():
            self._grid.append((index[keep], images[keep]))

    def on_test_epoch_end(self) -> None:
        strategy = self.trainer.strategy
        results: dict[str, Any] = {}
        if self.nll:
            nll = self.nll_sum.compute()  # float64 sums and counts, all-reduced over the ranks
            results["nll_nats"] = float(nll["nll_nats"])
            results["num_test_images"] = int(nll["num_images"])
        if self.num_samples:
            results.update(self._sample_metrics(strategy))
        if self.trainer.is_global_zero:
            self.results = results

    def _sample_metrics(self, strategy) -> dict[str, Any]:
        device = self.device

        def rows(parts: list[Tensor], *shape: int, dtype=torch.float64) -> Tensor:
            local = torch.cat(parts) if parts else torch.zeros(0, *shape, dtype=dtype, device=device)
            return _gather_rows(local.to(device))

        index = rows(self._index, dtype=torch.long)
        feats = rows(self._features, self._feature_dim)
        logits = None if self._num_logits is None else rows(self._logits, self._num_logits)
        grid_index = rows([i for i, _ in self._grid], dtype=torch.long)
        grid_images = rows([g for _, g in self._grid], *self.model.image_shape, dtype=torch.uint8)
        seconds = float(strategy.reduce(torch.tensor(self._sample_seconds, dtype=torch.float64, device=device),
                                        reduce_op="max"))
        if not self.trainer.is_global_zero:
            return {}
        order = index.argsort()  # sample order, not rank order: IS splits and KID subsets must not depend on ranks
        if not torch.equal(index[order].cpu(), torch.arange(self.num_samples)):
            raise RuntimeError(f"gathered sample indices are not 0..{self.num_samples - 1}: "
                               "a chunk was lost or repeated")
        self.grid = grid_images[grid_index.argsort()].cpu()
        # Scores on this rank alone (the union is already here): no further sync.
        metric = SampleFeatures(reference=self.reference(), is_splits=IS_SPLITS, kid_subsets=KID_SUBSETS,
                                kid_subset_size=KID_SUBSET_SIZE, seed=self.seed, sync_on_compute=False)
        metric.update(features=feats[order], logits=None if logits is None else logits[order])
        out = {k: float(v) for k, v in metric.compute().items() if k != "num_samples"}
        out["samples_per_s"] = self.num_samples / seconds if seconds > 0 else None
        return out


# ---- one checkpoint --------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """What :func:`evaluate_model` found; ``results`` is filled on global rank 0 only."""

    results: dict[str, Any]
    grid: Tensor | None
    is_global_zero: bool
    world_size: int


def _want(flag: bool | None, available: bool) -> bool:
    return available if flag is None else flag


def evaluate_model(model: GenerativeModule, datamodule: ImageDataModule, options: BenchmarkOptions, *,
                   extractor=None, num_samples: int = 0, nll: bool = False, cache=None) -> Evaluation:
    """Sample metrics and the NLL of ``model`` on ``datamodule``'s test split, through a Lightning ``Trainer``."""
    from lightning_gen.metrics.stats_cache import ReferenceStats, StatsKey

    test_x, test_y = datamodule.datasets["test"].images, datamodule.datasets["test"].labels
    dataset_key = f"{type(datamodule).__name__}-{hashlib.sha256(test_x.numpy().tobytes()).hexdigest()[:12]}"

    def reference() -> ReferenceStats:
        from lightning_gen.metrics.functional import compute_features

        key = StatsKey.for_extractor(extractor, dataset=dataset_key, split="test", image_shape=test_x.shape[1:],
                                     num_samples=test_x.shape[0])

        def compute() -> ReferenceStats:
            features, _ = compute_features(extractor, test_x, batch_size=options.batch_size)
            return ReferenceStats.from_features(features, keep_features=True)

        return cache.get_or_compute(key, compute, need_features=True)

    module = BenchmarkModule(model, test_images=test_x, test_labels=test_y, num_levels=datamodule.num_levels,
                             extractor=extractor, reference=reference, num_samples=num_samples,
                             chunk_size=options.batch_size, seed=options.seed, nll=nll, batch_size=options.batch_size)
    trainer = L.Trainer(accelerator=options.accelerator, devices=options.devices, strategy=options.strategy,
                        num_nodes=options.num_nodes, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=options.progress,
                        use_distributed_sampler=False, **options.trainer_kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*`test_dataloader` with a `DistributedSampler`.*")
        trainer.test(module, verbose=False)
    return Evaluation(module.results, module.grid, trainer.is_global_zero, trainer.world_size)


def benchmark_checkpoint(path: str | os.PathLike, options: BenchmarkOptions, *, data: str | None = None,
                         data_root: str | None = None, data_args: dict | None = None,
                         name: str | None = None,
                         grid_dir: str | os.PathLike | None = None) -> tuple[dict | None, Tensor | None]:
    """Evaluate one checkpoint: ``(record, sample grid images)`` on global rank 0, ``(None, None)`` elsewhere."""
    path = Path(path)
    model = load_model(path)  # CheckpointError for anything but a weights-only lightning_gen checkpoint
    config = run_config(path)
    datamodule = build_datamodule(config, data=data, data_root=data_root, data_args=data_args, checkpoint=path)
    if tuple(datamodule.image_shape) != model.image_shape or datamodule.num_levels != model.num_levels:
        raise BenchmarkError(
            f"{path}: {type(model).__name__} models images {model.image_shape} with {model.num_levels} levels, but "
            f"{type(datamodule).__name__} serves {tuple(datamodule.image_shape)} with {datamodule.num_levels}; "
            "benchmark it against the data it was trained on (--data)")
    # Several checkpoints share one command line: k applies to those with an importance-weighted likelihood.
    if options.iw_samples is not None and hasattr(model, "iw_samples"):
        model.iw_samples = int(options.iw_samples)
    if options.nll and not model.has_likelihood:
        raise NoLikelihoodError(f"{path}: {type(model).__name__} defines no likelihood, so --nll (NLL, bits/dim) "
                                "cannot be computed for it; drop --nll")
    nll = _want(options.nll, model.has_likelihood)
    family = model_family(model)
    has_features = callable(getattr(model, "encode", None)) or callable(getattr(model, "features", None))
    if options.probe and not (has_features and datamodule.num_classes > 0):
        raise BenchmarkError(f"--probe: {type(model).__name__} has neither encode(x) nor features(x) to probe"
                             if not has_features else f"--probe: {type(datamodule).__name__} has no class labels")
    probe = _want(options.probe, has_features and datamodule.num_classes > 0)

    extractor_name, extractor, num_samples, cache = None, None, 0, None
    if options.num_samples != 0:
        extractor_name = resolve_extractor_name(options, datamodule)
        extractor = build_extractor(extractor_name, options.fid_weights)  # else $LIGHTNING_GEN_FID_WEIGHTS
        c, h, w = model.image_shape
        if c not in extractor.channels or (not extractor.resizes and (h, w) != (extractor.input_size,) * 2):
            raise BenchmarkError(f"extractor {extractor_name!r} takes images {extractor.expected_shape}; "
                                 f"{type(datamodule).__name__} has {model.image_shape}: choose another --extractor")
        num_samples = resolve_num_samples(options, extractor_name)
        if type(datamodule).__name__ == "FashionMNIST" and extractor_name == "mnist-lenet":
            warnings.warn("FashionMNIST through mnist-lenet: a classifier of digits, not of clothes; its FID/IS only "
                          "compare runs under the same extractor", stacklevel=2)
        cache = resolve_stats_cache(options, datamodule)

    if hasattr(datamodule, "prepare_data"):
        datamodule.prepare_data()
    datamodule.setup("test")
    if num_samples and datamodule.datasets["test"].images.shape[0] < 2:
        raise BenchmarkError(f"{type(datamodule).__name__} has fewer than 2 test images: no reference statistics for "
                             "FID/KID (use --num-samples 0 for the NLL alone)")
    result = evaluate_model(model, datamodule, options, extractor=extractor, num_samples=num_samples, nll=nll,
                            cache=cache)
    if not result.is_global_zero:
        return None, None

    res = result.results
    probe_acc = run_probe(model, datamodule, options) if probe else None

    name = name or run_name(path)
    grid_path = None
    if result.grid is not None and grid_dir is not None:
        grid_path = str(save_png(image_grid(result.grid), Path(grid_dir) / f"{name}.png"))
    meta = checkpoint_meta(path)
    nll_nats = res["nll_nats"] if nll else None
    c, h, w = model.image_shape
    record = {
        "schema": RECORD_SCHEMA,
        "run_name": name,
        "model": type(model).__name__,
        "family": family,
        "dataset": type(datamodule).__name__,
        "image_shape": [c, h, w],
        "metrics": {
            "fid": res.get("fid"), "is_mean": res.get("is_mean"), "is_std": res.get("is_std"),
            "kid_mean": res.get("kid_mean"), "kid_std": res.get("kid_std"),
            "nll_nats": nll_nats, "nll_bpd": bits_per_dim(nll_nats, model.num_dims) if nll else None,
            "probe_acc": probe_acc, "samples_per_s": res.get("samples_per_s"),
            "num_params": sum(p.numel() for p in model.parameters()),
        },
        "protocol": {
            "extractor": extractor_name,
            "extractor_weights_sha256": extractor.weights_sha256 if extractor is not None else None,
            "num_samples": num_samples,
            "reference_split": "test",
            "image_size": [h, w],
            "nll_estimator": (f"importance-weighted k={model.iw_samples}" if hasattr(model, "iw_samples") else "exact")
            if nll else None,
            "num_test_images": int(datamodule.datasets["test"].images.shape[0]),
            "devices": result.world_size,
        },
        "checkpoint": str(path),
        "checkpoint_sha256": file_sha256(path),
        "config": _json_safe(config if config is not None else meta["hyper_parameters"]),
        "git_commit": git_commit(),
        "wandb_url": None,
        "sample_grid": grid_path,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "train_time_s": meta["train_time_s"],
    }
    if nll and res["num_test_images"] != record["protocol"]["num_test_images"]:
        raise RuntimeError(f"NLL covered {res['num_test_images']} images, the test split has "
                           f"{record['protocol']['num_test_images']}")
    return record, result.grid


def run_probe(model: GenerativeModule, datamodule: ImageDataModule, options: BenchmarkOptions) -> float | None:
    """Linear-probe test accuracy of the model's ``encode`` / ``features`` (None, with a warning, where the probe
    module is not installed)."""
    try:
        from lightning_gen.probe import feature_fn, linear_probe
    except ImportError:
        warnings.warn("lightning_gen.probe is not available: probe_acc not computed", stacklevel=2)
        return None
    model.eval()
    return float(linear_probe(feature_fn(model), datamodule, options.probe_max_train, device=model.device,
                              batch_size=options.batch_size, seed=options.seed)["probe_acc"])


# ---- output ----------------------------------------------------------------------------------------------------
def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(records: list[dict]) -> str:
    """A plain-text table of the records, each followed by the protocol its numbers were measured under."""
    text = [("run", "run_name", 28), ("model", "model", 14), ("dataset", "dataset", 14)]
    numbers = [("FID", "fid", ".3f", 9), ("IS", "is_mean", ".3f", 7), ("KID", "kid_mean", ".4g", 10),
               ("NLL nats", "nll_nats", ".3f", 10), ("bits/dim", "nll_bpd", ".4f", 8), ("probe", "probe_acc", ".4f", 7),
               ("img/s", "samples_per_s", ".1f", 9), ("params", "num_params", ",", 11)]
    lines = ["  ".join([f"{title:<{w}}" for title, _, w in text] + [f"{title:>{w}}" for title, _, _, w in numbers])]
    for r in records:
        cells = [f"{str(r[key])[:w]:<{w}}" for _, key, w in text]
        cells += [f"{_fmt(r['metrics'].get(key), fmt):>{w}}" for _, key, fmt, w in numbers]
        lines.append("  ".join(cells))
        p = r["protocol"]
        sample_part = "no sample metrics"
        if p["num_samples"]:
            sample_part = (f"{p['num_samples']} samples vs test ({p['num_test_images']}) via {p['extractor']} "
                           f"(weights {str(p['extractor_weights_sha256'])[:12]})")
        lines.append(f"    protocol: {sample_part}; NLL {p['nll_estimator'] or '-'}; {p['devices']} device(s)")
    return "\n".join(lines)


def log_wandb(record: dict, grid: Tensor | None, *, project: str = "lightning_gen",
              save_dir: str = "runs/wandb") -> str | None:
    """Log the record to W&B (summary metrics, a one-row table, the sample grid); returns the run URL when online.

    Uses the active run when there is one; otherwise starts one in the mode :func:`resolve_wandb_mode` picks
    (``$WANDB_MODE``, else online with credentials, else offline) and finishes it.
    """
    import wandb

    from lightning_gen.loggers import resolve_wandb_mode

    os.environ.setdefault("WANDB_SILENT", "true")
    own = wandb.run is None
    if own:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=project, name=f"benchmark-{record['run_name']}", job_type="benchmark",
                         dir=save_dir, mode=resolve_wandb_mode(),
                         config={"protocol": record["protocol"], "checkpoint": record["checkpoint"],
                                 "model": record["model"], "dataset": record["dataset"]})
    else:
        run = wandb.run
    metrics = {f"benchmark/{k}": v for k, v in record["metrics"].items() if v is not None}
    columns = ["run_name", "model", "family", "dataset", *record["metrics"], "extractor", "num_samples",
               "nll_estimator"]
    row = [record["run_name"], record["model"], record["family"], record["dataset"], *record["metrics"].values(),
           record["protocol"]["extractor"], record["protocol"]["num_samples"], record["protocol"]["nll_estimator"]]
    payload = {"benchmark/table": wandb.Table(columns=columns, data=[row])}
    if grid is not None:
        array = image_grid(grid)  # uint8: W&B would cast a float grid straight to uint8
        payload["benchmark/samples"] = wandb.Image(array[..., 0] if array.shape[-1] == 1 else array,
                                                   caption=record["run_name"])
    run.log(payload)
    run.summary.update(metrics)
    url = None if run.offline else run.url
    if own:
        run.finish()
    return url


# ---- command line ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from lightning_gen.leaderboard.store import DEFAULT_DB

    p = argparse.ArgumentParser(prog="lightning_gen benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="checkpoints written by `python -m lightning_gen fit`")
    p.add_argument("--num-samples", type=int, default=None,
                   help=f"samples for FID/IS/KID (default {DEFAULT_NUM_SAMPLES}; {INCEPTION_CPU_NUM_SAMPLES} for "
                        "Inception without a GPU; 0 skips the sample metrics)")
    p.add_argument("--extractor", default=None,
                   help="feature extractor (default: digits-lenet for Digits, mnist-lenet for MNIST, "
                        "BinarizedMNIST, FashionMNIST, inception otherwise)")
    p.add_argument("--fid-weights", default=None, help="Inception weights file (default $LIGHTNING_GEN_FID_WEIGHTS)")
    p.add_argument("--batch-size", type=int, default=250, help="sample chunk and evaluation batch size")
    p.add_argument("--iw-samples", type=int, default=None, help="importance samples k of the NLL estimate of models that have one (the VAE); "
                   "other models ignore it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nll", action=argparse.BooleanOptionalAction, default=None,
                   help="compute the test NLL (default: where the model defines a likelihood; --nll makes it an "
                        "error if it does not)")
    p.add_argument("--probe", action=argparse.BooleanOptionalAction, default=None,
                   help="linear probe on encode(x)/features(x) (default: where the model has them and the data labels)")
    p.add_argument("--probe-max-train", type=int, default=None, help="fit the probe on this many training images")
    p.add_argument("--data", default=None, help="data module class (default: the run's config.yaml)")
    p.add_argument("--data-root", default=None, help="data root (default: the run config's, else $LIGHTNING_GEN_DATA)")
    p.add_argument("--data-args", type=json.loads, default=None,
                   help='data module arguments as JSON, e.g. \'{"binarize": true}\'')
    p.add_argument("--stats-cache", default=None,
                   help="reference statistics folder (default <data root>/cache/fid_stats, if writable)")
    p.add_argument("--run-name", default=None, help="record name (one checkpoint only; default from its path)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="1")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--db", default=str(DEFAULT_DB), help="results store (SQLite); grids go to <its folder>/grids/")
    p.add_argument("--no-store", action="store_true", help="do not write to the results store")
    p.add_argument("--out", default=None, help="also write the records to this JSON file")
    p.add_argument("--wandb", action="store_true", help="log each record to W&B ($WANDB_MODE respected; offline "
                                                        "without credentials)")
    p.add_argument("--wandb-project", default="lightning_gen")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _devices(value: str) -> Any:
    return int(value) if value.isdigit() else value


def main(argv: list[str] | None = None) -> int:
    """``lightning_gen benchmark``: evaluate checkpoints, print a table, store one record per checkpoint."""
    args = build_parser().parse_args(argv)
    if args.run_name and len(args.checkpoints) > 1:
        print("lightning_gen benchmark: error: --run-name names one checkpoint; got several", file=sys.stderr)
        return 2
    options = BenchmarkOptions(
        num_samples=args.num_samples, extractor=args.extractor, fid_weights=args.fid_weights,
        batch_size=args.batch_size, iw_samples=args.iw_samples, seed=args.seed, nll=args.nll, probe=args.probe,
        probe_max_train=args.probe_max_train, stats_cache=args.stats_cache, accelerator=args.accelerator,
        devices=_devices(args.devices), strategy=args.strategy, num_nodes=args.num_nodes, progress=not args.no_progress)
    if options.batch_size <= 0:
        print(f"lightning_gen benchmark: error: --batch-size must be positive, got {options.batch_size}",
              file=sys.stderr)
        return 2
    if args.extractor is not None:
        from lightning_gen.metrics.features import available_extractors

        if args.extractor not in available_extractors():
            print(f"lightning_gen benchmark: error: unknown extractor {args.extractor!r}; expected one of "
                  f"{', '.join(available_extractors())}", file=sys.stderr)
            return 2
    if args.no_store:
        grid_dir = Path(args.out).parent / "grids" if args.out else None
    else:
        grid_dir = Path(args.db).parent / "grids"
    records = []
    for checkpoint in args.checkpoints:
        try:
            record, grid = benchmark_checkpoint(checkpoint, options, data=args.data, data_root=args.data_root,
                                                data_args=args.data_args, name=args.run_name, grid_dir=grid_dir)
        except (BenchmarkError, CheckpointError, NoLikelihoodError, DataFilesMissing, FileNotFoundError) as e:
            print(f"lightning_gen benchmark: error: {checkpoint}: {e}" if str(checkpoint) not in str(e)
                  else f"lightning_gen benchmark: error: {e}", file=sys.stderr)
            return 2
        if record is None:  # not global rank 0: rank 0 reports and stores
            continue
        if args.wandb:
            record["wandb_url"] = log_wandb(record, grid, project=args.wandb_project)
        records.append(record)
        if not args.no_store:
            from lightning_gen.leaderboard.store import Store

            with Store(args.db) as store:
                store.add(record)
    if not records:
        return 0
    print(format_table(records))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(records, indent=1, allow_nan=False) + "\n")
        print(f"records written to {out}")
    if not args.no_store:
        print(f"{len(records)} record(s) stored in {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
