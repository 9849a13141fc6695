"""Real-data anchor rows: a data set's real training images scored like a model's samples."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lightning_gen.app.options import (BenchmarkOptions, build_extractor, fid_biased, git_commit,
                                       resolve_extractor_name, resolve_num_samples)
from lightning_gen.data.base import ImageDataModule
from lightning_gen.evaluation import BenchmarkError, score_images, spread_protocol
from lightning_gen.images import image_grid, save_png
from lightning_gen.leaderboard.ranking import ANCHOR_FAMILY
from lightning_gen.leaderboard.record import build_record
from lightning_gen.metrics.functional import kid_kernel
from lightning_gen.metrics.stats_cache import StatsCache

#: What an anchor record calls itself (family ANCHOR_FAMILY, "data"): real training images scored as if they were
#: samples.
ANCHOR_MODEL = "real train images"


def anchor_record(datamodule: ImageDataModule, options: BenchmarkOptions, *, config: dict | None = None,
                  grid_dir: str | os.PathLike | None = None) -> dict:
    """The real-data anchor of a data set: the benchmark's sample metrics (same extractor, reference statistics,
    feature scale and settings) of ``num_samples`` training images (a ``--seed`` permutation; all of them where the
    split holds fewer) against the test split. Family ``data``, model ``real train images``, run name
    ``<dataset_id>-train-anchor``; no likelihood, probe or speed. The dashboard lists it unranked in the data
    set's section, as the score a perfect sampler would get at that sample count."""
    if options.num_samples == 0:
        raise BenchmarkError("--anchor scores real images with the sample metrics; --num-samples 0 leaves none")
    extractor_name = resolve_extractor_name(options, datamodule)
    extractor = build_extractor(extractor_name, options.fid_weights)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    train_x = datamodule.datasets["train"].images
    num_test_images = int(datamodule.datasets["test"].images.shape[0])
    c, h, w = train_x.shape[1:]
    if c not in extractor.channels or (not extractor.resizes and (h, w) != (extractor.input_size,) * 2):
        raise BenchmarkError(f"extractor {extractor_name!r} takes images {extractor.expected_shape}; "
                             f"{type(datamodule).__name__} has {(c, h, w)}: choose another --extractor")
    n = min(resolve_num_samples(options, extractor_name), int(train_x.shape[0]))
    if n < 2 or num_test_images < 2:
        raise BenchmarkError(f"{type(datamodule).__name__}: {n} training and {num_test_images} test images; an anchor "
                             "needs at least 2 of each")
    biased = fid_biased(n, num_test_images, extractor)
    images = train_x[torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(options.seed))[:n]]
    scores = score_images(images, datamodule, extractor, stats_cache=StatsCache(options.stats_cache),
                          batch_size=options.batch_size, seed=options.seed)
    name = f"{datamodule.dataset_id}-train-anchor"
    grid_path = None
    if grid_dir is not None:
        grid_path = str(save_png(image_grid(images[:64]), Path(grid_dir) / f"{name}.png"))
    return build_record(
        run_name=name, model=ANCHOR_MODEL, family=ANCHOR_FAMILY, dataset=type(datamodule).__name__,
        dataset_id=datamodule.dataset_id, image_shape=[int(c), int(h), int(w)],
        metrics={key: scores.get(key) for key in ("fid", "fid_std", "is_mean", "is_std", "kid_mean", "kid_std",
                                                  "precision", "recall", "density", "coverage")},
        protocol={
            "extractor": extractor_name, "extractor_weights_sha256": extractor.weights_sha256, "num_samples": n,
            "reference_split": "test", "image_size": [int(h), int(w)], "nll_estimator": None,
            "num_test_images": num_test_images, "devices": 1, "fid_biased": biased,
            "kid_kernel": kid_kernel(extractor.kid_feature_scale), "anchor_split": "train",
            **spread_protocol(1, n, extractor.feature_dim),
        },
        config=config, git_commit=git_commit(), sample_grid=grid_path,
    )
