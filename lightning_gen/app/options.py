"""What a benchmark computes and how: its options, and how the unset ones resolve (extractor, sample count), with
the facts every record states (the model's family, the evaluating code's commit, whether the FID is biased)."""

from __future__ import annotations

import json
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_gen.data.base import ImageDataModule
from lightning_gen.evaluation import BenchmarkError
from lightning_gen.leaderboard.record import validate_family
from lightning_gen.metrics.features import available_extractors, get_extractor
from lightning_gen.metrics.functional import too_few_samples
from lightning_gen.models.base import GenerativeModule

REPO = Path(__file__).resolve().parents[2]
DEFAULT_NUM_SAMPLES = 10_000
#: Inception-v3 runs at about 6.5 images/s on a 2-core CPU: 10,000 samples would take half an hour. 2,500 is the
#: smallest round count above its 2,048 feature dimensions (with fewer, the covariance is singular and the FID is
#: biased far more than sample-count bias alone): about 6.5 minutes of features, announced up front.
INCEPTION_CPU_NUM_SAMPLES = 2_500


def model_family(model: GenerativeModule) -> str:
    """The leaderboard family the model's class declares (its ``family`` class attribute)."""
    try:
        family = type(model).family
    except AttributeError:
        raise BenchmarkError(f"{type(model).__name__} declares no leaderboard family: give the class a `family` "
                             "class attribute (e.g. family = \"autoregressive\")") from None
    try:
        validate_family(family)
    except ValueError as e:
        raise BenchmarkError(f"{type(model).__name__}.family: {e}") from e
    return family


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


def json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ---- options ---------------------------------------------------------------------------------------------------
@dataclass
class BenchmarkOptions:
    """What to compute and how (see ``lightning-gen benchmark --help``)."""

    num_samples: int | None = None  # None: 10,000, or 500 for Inception without a GPU; 0: no sample metrics
    extractor: str | None = None  # None: the data module's default_extractor
    fid_weights: str | None = None
    batch_size: int = 250
    iw_samples: int | None = None
    seed: int = 0
    repeats: int | None = None  # sample draws; >= 2: FID/IS/KID spread over draws; None: evaluation.default_repeats
    nll: bool | None = None  # None: where the model has a likelihood; True: required
    probe: bool | None = None  # None: where the model has encode/features and the data has labels
    probe_max_train: int | None = None
    stats_cache: str | None = None
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    progress: bool = True


def gpu_in_use(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_extractor_name(options: BenchmarkOptions, datamodule: ImageDataModule) -> str:
    name = options.extractor or datamodule.default_extractor
    if name not in available_extractors():
        raise BenchmarkError(f"unknown extractor {name!r}; expected one of {', '.join(available_extractors())}")
    return name


def build_extractor(name: str, fid_weights: str | None):
    """The extractor ``name``; ``fid_weights`` is the Inception weights file (the digit classifiers ship theirs)."""
    return get_extractor(name, weights_path=fid_weights) if name == "inception" and fid_weights else get_extractor(name)


def resolve_num_samples(options: BenchmarkOptions, extractor_name: str) -> int:
    if options.num_samples is not None:
        if options.num_samples != 0 and options.num_samples < 2:
            raise BenchmarkError(f"--num-samples must be 0 (no sample metrics) or at least 2, "
                                 f"got {options.num_samples}")
        return options.num_samples
    if extractor_name == "inception" and not gpu_in_use(options.accelerator):
        warnings.warn(f"Inception features on the CPU run at a few images per second: using --num-samples "
                      f"{INCEPTION_CPU_NUM_SAMPLES} instead of {DEFAULT_NUM_SAMPLES} (just above Inception's 2,048 "
                      "feature dimensions; FID is biased upwards by small sample counts, so it is not comparable with "
                      "published 10k/50k-sample FIDs; pass --num-samples to choose). The test split's reference "
                      "statistics are computed once per data set and cached: the first run takes longer.",
                      stacklevel=2)
        return INCEPTION_CPU_NUM_SAMPLES
    return DEFAULT_NUM_SAMPLES


def fid_biased(num_samples: int, num_reference: int, extractor) -> bool:
    """Whether the generated or the reference set has no more images than the extractor has feature dimensions
    (:func:`~lightning_gen.metrics.functional.too_few_samples`), warning loudly if so: the record's
    ``protocol.fid_biased``, which the dashboard marks."""
    if not num_samples:
        return False
    biased = False
    for n, what in ((num_samples, "--num-samples"), (num_reference, "the test split")):
        if too_few_samples(n, extractor.feature_dim):
            biased = True
            warnings.warn(f"{what}: {n:,} images for {extractor.name}'s {extractor.feature_dim:,} feature dimensions: "
                          "the covariance is singular and the FID strongly biased; the record is flagged "
                          f"fid_biased (use more than {extractor.feature_dim:,})", RuntimeWarning, stacklevel=2)
    return biased
