"""The one evaluation engine: sample metrics (FID / IS / KID, precision / recall, density / coverage), the exact test
NLL with its standard error and sampling speed. The benchmark runs it through a Lightning ``Trainer`` so any strategy
spreads the work (:func:`evaluate_model`; the app's benchmark orchestrates it), and the training-time sample metrics
(:class:`~lightning_gen.callbacks.SampleMetrics`) call the same functions: :func:`draw_chunk` (seeded chunks),
:class:`ChunkFeatures` (features, gathered in sample order), :func:`reference_of_split` (cached reference
statistics) and :func:`sample_metric` / :func:`score` (the statistics).

- Samples are drawn in chunks of ``batch_size``; chunk ``c`` of draw ``r`` uses a generator seeded from
  ``(seed, c)`` for the first draw and ``(seed, c, r)`` for the others (and class labels ``index % num_classes``
  for a class-conditional model), and chunks go round-robin to the DDP ranks. The union of samples, hence every
  sample metric, is the same for any number of processes. IS uses 10 splits, KID 100 subsets of
  ``min(1000, n_fake, n_real)`` (on features divided by the extractor's ``kid_feature_scale``, where it declares
  one), precision/recall at k = 3 neighbours (Kynkaanniemi et al.'s code) and density/coverage at k = 5 (Naeem et
  al.), all on the features FID uses; the test split's
  reference statistics are cached (:mod:`lightning_gen.metrics.stats_cache`, keyed on a hash of the test images
  themselves). With no more samples (or test images) than feature dimensions the scores warn that the FID is
  biased (:func:`~lightning_gen.metrics.functional.warn_if_too_few_samples`).
- Spread: with ``repeats = R >= 2`` the samples are drawn ``R`` times independently, each draw is scored on its own,
  and every sample metric is the mean over the draws, with ``fid_std``, ``is_mean_std`` and ``kid_mean_std`` their
  standard deviations over the draws (the spread of one draw's score; R times the sampling cost). With one draw
  ``fid_std`` comes from :data:`FID_BOOTSTRAP` resamples of the draw's features
  (:func:`~lightning_gen.metrics.functional.fid_bootstrap`, a few eigendecompositions: seconds), which is within
  0.8-1.25x of the std across draws only for ``N >= 40 D`` samples (it warns otherwise, naming N and D), and IS and
  KID keep only their within-draw spreads ``is_std`` (over splits) and ``kid_std`` (over subsets), 2.9x and 1.9x
  the std across draws in issue 25. :func:`default_repeats` chooses: one draw where the bootstrap is calibrated
  (the digit classifiers' 128 dimensions at 10,000 samples), else :data:`SPREAD_DRAWS` draws (Inception's 2,048).
  :func:`spread_protocol` says in a record's protocol which it was (``fid_spread``, ``kid_is_spread``)
  and the k of precision/recall and density/coverage.
- NLL: ``-model.log_prob`` summed in float64 over every test image exactly once (rank ``r`` of ``W`` takes images
  ``r::W``, no padding; the sums are all-reduced) by :class:`~lightning_gen.metrics.nll.ImageSums`, the accumulator
  of the models' own test step too, with ``nll_nats_se``, the standard error of the mean over the test images.
  ``log_prob`` gets ``estimate`` (an :class:`~lightning_gen.models.base.Estimate` carrying ``seed``): for a
  stochastic estimate (the VAE) each image's estimate depends on the seed and the image only, not on the rank,
  batch or number of processes. The per-image values themselves come back in test-set order too
  (``nll_per_image``: each rank's values with their image indices, gathered and sorted by index), for paired
  comparisons of two runs on the same images; :func:`split_digest` names the test split they belong to.
- ``samples_per_s``: images / wall time of the ``sample`` calls only (the slowest rank's time under DDP).
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_gen.data.base import ImageDataModule
from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.metrics.functional import DC_K, PR_K, compute_features, fid_bootstrap_calibrated
from lightning_gen.metrics.nll import ImageSums
from lightning_gen.metrics.stats_cache import ReferenceStats, reference_stats
from lightning_gen.metrics.torchmetrics_wrappers import SampleFeatures
from lightning_gen.evaluation.chunks import (  # noqa: F401  (check_samples, chunk_seed: re-exported)
    BenchmarkError, ChunkFeatures, check_samples, chunk_seed, chunks_of_rank, draw_chunk, gather_rows, in_sample_order)
from lightning_gen.models.base import Estimate, GenerativeModule

GRID_SIZE = 64
IS_SPLITS = 10
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
#: Bootstrap resamples behind ``fid_std`` when the samples are drawn once (the std of a std from 10 resamples varies
#: by about +-24%, from 50 by about +-10%).
FID_BOOTSTRAP = 50
#: Independent sample draws behind the spreads where the FID bootstrap is not calibrated (:func:`default_repeats`).
SPREAD_DRAWS = 3


# ---- the evaluation, as a LightningModule so any strategy can run it -------------------------------------------
class BenchmarkModule(L.LightningModule):
    """Wraps a model for ``Trainer.test``: dataloader "samples" yields sample-chunk indices, dataloader "nll" the
    test images; each rank works on its own share and ``on_test_epoch_end`` combines them exactly.

    After ``trainer.test`` the combined figures are in :attr:`results` on global rank 0 (empty elsewhere).
    """

    def __init__(self, model: GenerativeModule, *, test_images: Tensor, test_labels: Tensor, num_levels: int,
                 extractor=None, reference=None, num_samples: int = 0, chunk_size: int = 250, seed: int = 0,
                 nll: bool = False, batch_size: int = 250, grid_size: int = GRID_SIZE, repeats: int = 1,
                 estimate: Estimate | None = None) -> None:
        super().__init__()
        if repeats < 1:
            raise BenchmarkError(f"repeats must be at least 1, got {repeats}")
        self.model = model
        self.extractor = extractor
        self.reference = reference  # () -> ReferenceStats, called on rank 0 only
        self.test_images, self.test_labels = test_images, test_labels
        self.num_levels = num_levels
        self.num_samples, self.chunk_size, self.seed = num_samples, chunk_size, seed
        self.nll, self.batch_size, self.grid_size, self.repeats = nll, batch_size, grid_size, repeats
        # The test NLL's estimator settings; the seed is the benchmark's unless the caller chose one.
        estimate = estimate or Estimate()
        self.estimate = Estimate(k=estimate.k, seed=seed if estimate.seed is None else estimate.seed,
                                 chunk=estimate.chunk)
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
            loaders.append(DataLoader(chunks_of_rank(self.num_chunks * self.repeats, rank, world), batch_size=None))
            self._kinds.append("samples")
        if self.nll:
            # Rank r takes images r::world, every image exactly once (a DistributedSampler would pad with repeats).
            idx = torch.arange(self.test_images.shape[0])[rank::world]
            batches = [(self.test_images[b], self.test_labels[b], b) for b in idx.split(self.batch_size)]
            loaders.append(DataLoader(batches, batch_size=None))
            self._kinds.append("nll")
        return loaders

    def on_test_start(self) -> None:
        # Randomness outside the seeded sample chunks and estimates (a model's own use of the global RNG).
        torch.manual_seed(self.seed + self.global_rank)
        self._sample_seconds = 0.0
        self.nll_sums = ImageSums()  # this rank's test images, r::world: no padding to leave out
        self._nll_index: list[Tensor] = []
        self._nll_values: list[Tensor] = []
        self._grid: list[tuple[Tensor, Tensor]] = []
        if self.num_samples:
            self._chunks = ChunkFeatures(self.extractor, self.model.image_shape, self.device)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._kinds[dataloader_idx] == "nll":
            x, y, index = batch
            labels = y if self.model.conditional else None
            logp = self.model.log_prob(x, labels, estimate=self.estimate)
            if logp.shape != (x.shape[0],) or not bool(torch.isfinite(logp).all()):
                raise BenchmarkError(f"{type(self.model).__name__}.log_prob returned shape {tuple(logp.shape)}"
                                     f"{' with non-finite values' if logp.numel() else ''}; expected "
                                     f"({x.shape[0]},) finite values")
            self.nll_sums.add({"nll_nats": -logp})
            self._nll_index.append(index.to(self.device))
            self._nll_values.append(-logp.detach().double())
            return
        draw, chunk = divmod(int(batch), self.num_chunks)
        index, images, seconds = draw_chunk(self.model, chunk, num_samples=self.num_samples,
                                            chunk_size=self.chunk_size, seed=self.seed, draw=draw,
                                            num_levels=self.num_levels)
        self._sample_seconds += seconds
        self._chunks.add(index + draw * self.num_samples, images)  # draws one after the other
        keep = index < self.grid_size if draw == 0 else torch.zeros_like(index, dtype=torch.bool)
        if keep.any():
            self._grid.append((index[keep], images[keep]))

    def on_test_epoch_end(self) -> None:
        strategy = self.trainer.strategy
        results: dict[str, Any] = {}
        if self.nll:
            nll = self.nll_sums.result(["nll_nats"], device=self.device,
                                       reduce_sum=functools.partial(strategy.reduce, reduce_op="sum"))
            results["nll_nats"] = float(nll["nll_nats"])
            results["nll_nats_se"] = float(nll["nll_nats_se"])
            results["num_test_images"] = int(nll["count"])
            index = gather_rows(self._nll_index, dtype=torch.long, device=self.device)
            values = gather_rows(self._nll_values, dtype=torch.float64, device=self.device)
            results["nll_per_image"] = values[in_sample_order(index, self.test_images.shape[0])].cpu()
        if self.num_samples:
            results.update(self._sample_metrics(strategy))
        if self.trainer.is_global_zero:
            self.results = results

    def _sample_metrics(self, strategy) -> dict[str, Any]:
        device = self.device
        total = self.num_samples * self.repeats
        feats, logits = self._chunks.gather(total)
        grid_index = gather_rows([i for i, _ in self._grid], dtype=torch.long, device=device)
        grid_images = gather_rows([g for _, g in self._grid], *self.model.image_shape, dtype=torch.uint8,
                                  device=device)
        seconds = float(strategy.reduce(torch.tensor(self._sample_seconds, dtype=torch.float64, device=device),
                                        reduce_op="max"))
        if not self.trainer.is_global_zero:
            return {}
        self.grid = grid_images[grid_index.argsort()].cpu()
        reference = self.reference()
        draws = []
        for r in range(self.repeats):
            # Scores on this rank alone (the union is already here): no further sync.
            metric = sample_metric(reference, self.extractor, seed=self.seed,
                                   fid_bootstrap=FID_BOOTSTRAP if self.repeats == 1 else 0)
            part = slice(r * self.num_samples, (r + 1) * self.num_samples)
            draws.append(score(metric, feats[part], None if logits is None else logits[part]))
        out = {k: float(np.mean([d[k] for d in draws])) for k in draws[0]}
        if self.repeats > 1:
            for key, spread in (("fid", "fid_std"), ("is_mean", "is_mean_std"), ("kid_mean", "kid_mean_std")):
                if key in out:
                    out[spread] = float(np.std([d[key] for d in draws], ddof=1))
        out["samples_per_s"] = total / seconds if seconds > 0 else None
        return out


def default_repeats(num_samples: int, feature_dim: int) -> int:
    """Sample draws when the caller chose none: 1 (``fid_std`` from the bootstrap, seconds) where the bootstrap's
    spread is within 0.8-1.25x of the spread across draws at ``num_samples`` samples of ``feature_dim`` dimensions
    (:func:`~lightning_gen.metrics.functional.fid_bootstrap_calibrated`), else :data:`SPREAD_DRAWS` independent draws
    (that many times the sampling and feature cost, announced where long)."""
    return 1 if fid_bootstrap_calibrated(num_samples, feature_dim) else SPREAD_DRAWS


def spread_protocol(repeats: int, num_samples: int, feature_dim: int) -> dict[str, Any]:
    """What a record's sample-metric spreads are, for its protocol: ``draws`` (sample draws scored),
    ``fid_spread`` (``"draws"``: ``fid_std`` is the std over the draws; ``"bootstrap"``: over resamples of one draw),
    ``fid_spread_calibrated`` (draws, or a bootstrap at ``N >= 40 D``), ``kid_is_spread`` (``"draws"``:
    ``kid_mean_std`` / ``is_mean_std`` over the draws; ``"within-draw"``: a single draw, only ``kid_std`` over KID
    subsets and ``is_std`` over IS splits), and ``pr_k`` / ``dc_k``, the neighbours of precision/recall and of
    density/coverage."""
    draws = repeats > 1
    return {"draws": int(repeats), "fid_spread": "draws" if draws else "bootstrap",
            "fid_spread_calibrated": draws or fid_bootstrap_calibrated(num_samples, feature_dim),
            "kid_is_spread": "draws" if draws else "within-draw", "pr_k": PR_K, "dc_k": DC_K}


def sample_metric(reference, extractor: FeatureExtractor, *, seed: int, fid_bootstrap: int = FID_BOOTSTRAP,
                  is_splits: int = IS_SPLITS, kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
                  pr_k: int = PR_K, dc_k: int = DC_K) -> SampleFeatures:
    """The sample metrics against ``reference`` (the benchmark's IS splits, KID subsets, extractor's KID feature
    scale and k of precision/recall and of density/coverage unless told otherwise; ``pr_k = dc_k = 0``: none of the
    four), for features computed on this process alone (no sync)."""
    return SampleFeatures(reference=reference, is_splits=is_splits, kid_subsets=kid_subsets,
                          kid_subset_size=kid_subset_size, seed=seed, pr_k=pr_k, dc_k=dc_k, fid_bootstrap=fid_bootstrap,
                          sync_on_compute=False, kid_feature_scale=extractor.kid_feature_scale)


def score(metric: SampleFeatures, features: Tensor, logits: Tensor | None) -> dict[str, float]:
    """``metric``'s figures for ``features`` (and ``logits``), as floats, the sample count left out."""
    metric.update(features=features, logits=logits)
    return {k: float(v) for k, v in metric.compute().items() if k != "num_samples"}


def split_digest(images: Tensor) -> str:
    """The identity of a split: a hash of its images themselves (the reference-statistics cache's key and the key of
    a record's per-image NLL)."""
    return hashlib.sha256(images.numpy().tobytes()).hexdigest()[:12]


def reference_of_split(datamodule: ImageDataModule, split: str, extractor: FeatureExtractor, stats_cache=None,
                       batch_size: int = 250) -> ReferenceStats:
    """Statistics and features of ``datamodule``'s ``split`` (set up by the caller) under ``extractor``, cached in
    ``stats_cache`` (default: the default :class:`~lightning_gen.metrics.stats_cache.StatsCache`) under a key that
    holds a hash of the split's images themselves."""
    images = datamodule.datasets[split].images
    digest = split_digest(images)
    return reference_stats(extractor, images, dataset=f"{type(datamodule).__name__}-{digest}", split=split,
                           keep_features=True, cache=stats_cache, batch_size=batch_size)


def score_images(images: Tensor, datamodule: ImageDataModule, extractor: FeatureExtractor, *, stats_cache,
                 batch_size: int = 250, seed: int = 0) -> dict[str, float]:
    """The sample metrics of the benchmark for given uint8 ``images`` (real ones: the dashboard's anchor rows)
    against ``datamodule``'s test split: the same reference, extractor, feature scale and settings a model's samples
    get, with ``fid_std`` from the same bootstrap."""
    features, logits = compute_features(extractor, images, batch_size=batch_size)
    reference = reference_of_split(datamodule, "test", extractor, stats_cache, batch_size)
    return {"num_samples": float(features.shape[0]), **score(sample_metric(reference, extractor, seed=seed),
                                                            features, logits)}


@dataclass
class Evaluation:
    """What :func:`evaluate_model` found; ``results`` is filled on global rank 0 only."""

    results: dict[str, Any]
    grid: Tensor | None
    is_global_zero: bool
    world_size: int


def evaluate_model(model: GenerativeModule, datamodule: ImageDataModule, *, extractor=None, num_samples: int = 0,
                   nll: bool = False, stats_cache=None, batch_size: int = 250, seed: int = 0, repeats: int = 1,
                   estimate: Estimate | None = None, **trainer_kwargs: Any) -> Evaluation:
    """Sample metrics and the NLL of ``model`` on ``datamodule``'s test split (set up by the caller), through a
    Lightning ``Trainer`` built with ``trainer_kwargs`` (accelerator, devices, strategy, num_nodes,
    enable_progress_bar). ``stats_cache`` (a :class:`~lightning_gen.metrics.stats_cache.StatsCache`) keeps the
    test split's reference statistics under ``extractor``; ``repeats`` independent draws of ``num_samples``
    samples give the sample metrics' spread (see the module docstring)."""
    test_x, test_y = datamodule.datasets["test"].images, datamodule.datasets["test"].labels

    def reference():
        return reference_of_split(datamodule, "test", extractor, stats_cache, batch_size)

    module = BenchmarkModule(model, test_images=test_x, test_labels=test_y, num_levels=datamodule.num_levels,
                             extractor=extractor, reference=reference, num_samples=num_samples,
                             chunk_size=batch_size, seed=seed, nll=nll, batch_size=batch_size, repeats=repeats,
                             estimate=estimate)
    trainer = L.Trainer(**{"logger": False, "enable_checkpointing": False, "enable_model_summary": False,
                           "use_distributed_sampler": False, **trainer_kwargs})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*`test_dataloader` with a `DistributedSampler`.*")
        trainer.test(module, verbose=False)
    return Evaluation(module.results, module.grid, trainer.is_global_zero, trainer.world_size)
