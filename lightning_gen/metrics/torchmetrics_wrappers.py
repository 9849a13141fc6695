"""A torchmetrics ``Metric`` over the pure functions, for evaluation inside Lightning, single device or DDP (the NLL's
exact sums are :class:`~lightning_gen.metrics.nll.ImageSums`).

:class:`SampleFeatures` keeps every sample's features (and logits) with ``dist_reduce_fx="cat"``: under DDP each rank
extracts features of its own samples and ``compute()`` sees all of them, so FID/IS/KID are those of the whole sample
set (not an average of per-rank scores, which would be biased: FID of n samples is not the mean of FIDs of n/2).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_gen.metrics.features import FeatureExtractor, get_extractor
from lightning_gen.metrics.functional import (
    DC_K,
    PR_K,
    feature_stats,
    fid_bootstrap,
    fid_from_stats,
    inception_score,
    kid,
    prdc,
    warn_if_bootstrap_uncalibrated,
    warn_if_too_few_samples,
)
from lightning_gen.metrics.stats_cache import ReferenceStats


def _cat(state: list[Tensor] | Tensor) -> Tensor | None:
    """A "cat" state (a list before sync, a tensor after it) as one tensor; None where nothing was added."""
    if isinstance(state, list) and not state:
        return None
    x = dim_zero_cat(state)
    return x if x.numel() else None


class SampleFeatures(Metric):
    """Features of generated samples, gathered over ranks; ``compute()`` gives FID, IS and KID.

    Args:
        extractor: a :class:`FeatureExtractor` or its registered name; None if only precomputed features are
            given to :meth:`update`.
        reference: statistics of real data (:func:`~lightning_gen.metrics.stats_cache.reference_stats`): FID needs
            ``mu``/``sigma``, KID needs ``features``. Without it only the Inception Score is computed.
        is_splits: chunks for the Inception Score.
        kid_subsets, kid_subset_size: KID subsets; the subset size is capped at the smaller sample count.
        seed: seed of the IS shuffle, the KID subsets and the FID bootstrap.
        pr_k, dc_k: neighbours of precision/recall and of density/coverage (3 and 5, as in their papers; either 0,
            or no more samples than the larger: none of the four computed).
        fid_bootstrap: resamples of :func:`~lightning_gen.metrics.functional.fid_bootstrap` (0: none).
        kid_feature_scale: KID divides the features by this (:func:`~lightning_gen.metrics.functional.kid`);
            default: the extractor's ``kid_feature_scale`` (None for Inception and without an extractor).

    ``compute()`` warns when there are no more samples than feature dimensions (the FID is then biased:
    :func:`~lightning_gen.metrics.functional.warn_if_too_few_samples`).

    ``compute()`` returns float64 tensors under ``num_samples``, ``fid`` (and ``fid_std``, the bootstrap's standard
    deviation, with ``fid_bootstrap >= 2``; it warns where that overstates the spread across draws:
    :func:`~lightning_gen.metrics.functional.warn_if_bootstrap_uncalibrated`), ``is_mean``/``is_std`` (when the
    extractor has logits), ``kid_mean``/``kid_std`` (both within-draw: IS splits, KID subsets) and
    ``precision``/``recall``/``density``/``coverage`` (when the reference has features). Precision/recall/density/
    coverage are computed on the device the features were given on.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, extractor: FeatureExtractor | str | None = None, *, reference: ReferenceStats | None = None,
                 is_splits: int = 10, kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0,
                 pr_k: int = PR_K, dc_k: int = DC_K, fid_bootstrap: int = 0, kid_feature_scale: float | None | str = "extractor",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(extractor, str):
            extractor = get_extractor(extractor)
        # Not a registered submodule: its weights (90 MB for Inception) must not go into every checkpoint of the
        # LightningModule that holds this metric; update() moves it to the images' device instead.
        object.__setattr__(self, "extractor", extractor)
        self.reference = reference
        self.is_splits, self.seed = is_splits, seed
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.pr_k, self.dc_k, self.fid_bootstrap = pr_k, dc_k, fid_bootstrap
        if kid_feature_scale == "extractor":
            kid_feature_scale = None if extractor is None else extractor.kid_feature_scale
        self.kid_feature_scale = kid_feature_scale
        self.add_state("features", default=[], dist_reduce_fx="cat")
        self.add_state("logits", default=[], dist_reduce_fx="cat")

    def update(self, images: Tensor | None = None, *, features: Tensor | None = None,
               logits: Tensor | None = None) -> None:
        """Add uint8 images ``(B, C, H, W)`` (their features are extracted), or precomputed ``features``
        ``(B, D)`` and optionally ``logits`` ``(B, K)``."""
        if (images is None) == (features is None):
            raise ValueError("pass either images or features")
        if images is not None:
            if self.extractor is None:
                raise ValueError("this SampleFeatures has no extractor; pass features=... instead of images")
            self.extractor.check_images(images)
            self.extractor.to(images.device)
            with torch.inference_mode():
                out = self.extractor(images)
            features, logits = out.features.clone(), (None if out.logits is None else out.logits.clone())
        if features.dim() != 2 or (logits is not None and logits.shape[0] != features.shape[0]):
            raise ValueError(f"features must be (B, D) with logits (B, K); got {tuple(features.shape)} and "
                             f"{None if logits is None else tuple(logits.shape)}")
        self.features.append(features.detach())
        if logits is not None:
            self.logits.append(logits.detach())

    def compute(self) -> dict[str, Tensor]:
        features = _cat(self.features)  # all ranks' features, in rank order
        if features is None:
            raise ValueError("SampleFeatures.compute() called before any update()")
        device = features.device
        features = features.double().cpu()
        n, dim = features.shape
        out = {"num_samples": float(n)}
        if self.reference is not None:
            warn_if_too_few_samples(n, dim, "the generated set")
            if self.reference.features is not None:
                warn_if_too_few_samples(self.reference.features.shape[0], dim, "the reference set")
            out["fid"] = fid_from_stats(*feature_stats(features), self.reference.mu, self.reference.sigma)
            if self.fid_bootstrap >= 2:
                warn_if_bootstrap_uncalibrated(n, dim)
                fids = fid_bootstrap(features, self.reference.mu, self.reference.sigma, self.fid_bootstrap, self.seed)
                out["fid_std"] = float(fids.std(ddof=1))
            if self.reference.features is not None:
                size = min(self.kid_subset_size, n, self.reference.features.shape[0])
                out.update(kid(features, self.reference.features, self.kid_subsets, size, self.seed,
                               feature_scale=self.kid_feature_scale))
                k = max(self.pr_k, self.dc_k)
                if self.pr_k and self.dc_k and min(n, self.reference.features.shape[0]) > k:  # else no k neighbours
                    out.update(prdc(self.reference.features, features, self.pr_k, self.dc_k, device=device))
        logits = _cat(self.logits)
        if logits is not None:
            if logits.shape[0] != n:
                raise ValueError(f"logits were given for {logits.shape[0]} of {n} samples")
            out.update(inception_score(logits, min(self.is_splits, n), seed=self.seed))
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}
