"""Sample-quality and likelihood metrics: pure functions, a feature-extractor registry, cached reference
statistics and torchmetrics wrappers for DDP."""

from lightning_gen.metrics.features import (
    INCEPTION_WEIGHTS_ENV,
    Extracted,
    ExtractorWeightsMissing,
    FeatureExtractor,
    available_extractors,
    get_extractor,
    register_extractor,
)
from lightning_gen.metrics.functional import (
    BOOTSTRAP_SAMPLES_PER_DIM,
    DC_K,
    PR_K,
    compute_features,
    feature_stats,
    fid_bootstrap,
    fid_bootstrap_calibrated,
    fid_from_features,
    fid_from_stats,
    inception_score,
    kid,
    kid_kernel,
    prdc,
    too_few_samples,
    warn_if_bootstrap_uncalibrated,
    warn_if_too_few_samples,
)
from lightning_gen.metrics.stats_cache import ReferenceStats, StatsCache, StatsKey, reference_stats
from lightning_gen.metrics.nll import ImageSums, unpadded_length
from lightning_gen.metrics.torchmetrics_wrappers import SampleFeatures

__all__ = [
    "BOOTSTRAP_SAMPLES_PER_DIM",
    "DC_K",
    "PR_K",
    "INCEPTION_WEIGHTS_ENV",
    "Extracted",
    "ExtractorWeightsMissing",
    "FeatureExtractor",
    "ImageSums",
    "ReferenceStats",
    "SampleFeatures",
    "StatsCache",
    "StatsKey",
    "available_extractors",
    "compute_features",
    "feature_stats",
    "fid_bootstrap",
    "fid_bootstrap_calibrated",
    "fid_from_features",
    "fid_from_stats",
    "get_extractor",
    "inception_score",
    "kid",
    "kid_kernel",
    "prdc",
    "reference_stats",
    "register_extractor",
    "too_few_samples",
    "unpadded_length",
    "warn_if_bootstrap_uncalibrated",
    "warn_if_too_few_samples",
]
