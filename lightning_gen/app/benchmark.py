"""Benchmark checkpoints: FID / IS / KID of samples, exact NLL on the test split, linear probe, speed, size.

    lightning-gen benchmark runs/x/lightning_logs/version_0/checkpoints/last.ckpt [more.ckpt ...]
    lightning-gen benchmark CKPT --devices 2 --strategy ddp --accelerator cpu --num-samples 10000

Every number is written with the protocol that produced it (one record per checkpoint, built by
:func:`lightning_gen.leaderboard.record.build_record`, into :class:`~lightning_gen.leaderboard.store.Store`;
``--out`` keeps a JSON copy):

- Sample metrics: ``num_samples`` images from ``model.sample`` against the *whole test split* of the run's data
  module, through one feature extractor (``protocol.extractor`` and the sha256 of its weights). Default: the data
  module's ``default_extractor``: ``digits-lenet`` for ``Digits``; ``mnist-lenet`` (a LeNet trained on MNIST
  digits, also used for BinarizedMNIST and, as a stand-in only, FashionMNIST) for the 28x28 grey sets;
  ``inception`` (2015-12-05 Inception-v3, the only one comparable with published FIDs) otherwise. FID, IS, KID,
  precision/recall (k = 3, ``protocol.pr_k``) and density/coverage (k = 5, ``protocol.dc_k``). Spread: ``--repeats
  R`` draws the samples R times (R times the sampling cost) and reports the means with ``fid_std``, ``is_mean_std``,
  ``kid_mean_std`` over the draws; with one draw ``fid_std`` is a 50-resample bootstrap of its features (seconds),
  honest only for at least 40 samples per feature dimension (a warning names N and D otherwise), and IS and KID
  have only their within-draw ``is_std`` / ``kid_std``. Unset, ``--repeats`` is 1 where the bootstrap is calibrated
  (the digit classifiers at 10,000 samples), else 3 (Inception). ``protocol.fid_spread`` ("draws" or "bootstrap"),
  ``fid_spread_calibrated``, ``kid_is_spread`` ("draws" or "within-draw") and ``draws`` say which. How
  samples are drawn and scored: :mod:`lightning_gen.evaluation`.
- NLL in nats per image and bits per dimension over every test image exactly once, with its standard error over
  the test images (``nll_nats_se``, ``nll_bpd_se``). ``nll_estimator`` is "exact" for autoregressive models and
  "importance-weighted k=<k>" for the VAE, whose estimate of each image depends on ``--seed`` and the image only.
  The per-image values are kept too (``nll_per_image``, keyed by the test split's hash), so that two runs on the
  same test images are compared paired (:mod:`lightning_gen.leaderboard.paired`).
- ``protocol.conditional`` / ``protocol.label_distribution``: a class-conditional model's NLL is log p(x|y) and its
  samples follow the stated label distribution; the board ranks such rows apart from unconditional ones.
- ``num_params``: every parameter of the checkpointed module (a GAN's discriminator included).
- ``probe_acc``: :func:`lightning_gen.metrics.probe.linear_probe` on ``encode(x)`` (latent models) or
  ``features(x)`` (GAN discriminators), fitted on the train split and scored on the test split, where the data
  has labels.
- ``family``: the model class's ``family`` attribute.
- ``protocol.fid_biased``: the samples or the test images are no more than the extractor's feature dimensions, so the
  covariance is singular and the FID biased (warned before the evaluation starts; the dashboard marks it);
  ``protocol.kid_kernel``: KID's kernel and the scale the features were divided by (the digit classifiers' fixed
  ``kid_feature_scale``; Inception's features are used raw, as published KIDs are).
- ``--anchor --data CLASS``: the same sample metrics of the data set's real training images (``--num-samples`` of
  them, all where there are fewer) against its test split, stored as family ``data``, model ``real train images``,
  run ``<dataset_id>-train-anchor``: the dashboard's unranked "real data" row, what a perfect model would score
  (:func:`lightning_gen.app.anchor.anchor_record`).

The data module is the one the run's ``config.yaml`` names (``--data``, ``--data-root`` and ``--data-args``
override it). It runs through a Lightning ``Trainer`` (``--devices``, ``--strategy``, ``--num-nodes``,
``--accelerator``), so ``--strategy ddp`` spreads sampling and the likelihood over processes; rank 0 writes the
records.

On the CPU, a step expected to take over a minute (the importance-weighted NLL with a large k, sampling from a slow
sampler, Inception features) is announced before it starts, with its estimated time, measured on a small chunk of
the step itself, and the option that shortens it (:mod:`lightning_gen.app.estimates`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor

from lightning_gen.app.anchor import anchor_record
from lightning_gen.app.benchmark_table import format_table
from lightning_gen.app.cli import PROG, data_files_missing_message, debug_requested
from lightning_gen.app.estimates import ESTIMATE_AFTER_S, ESTIMATE_ENV, step_estimates
from lightning_gen.app.options import (DEFAULT_NUM_SAMPLES, INCEPTION_CPU_NUM_SAMPLES, BenchmarkOptions,
                                       build_extractor, fid_biased, git_commit, gpu_in_use, json_safe, model_family,
                                       resolve_extractor_name, resolve_num_samples)
from lightning_gen.app.probe import probe_splits
from lightning_gen.app.run import CheckpointError, DataConfigError, Run
from lightning_gen.app.wandb_log import log_wandb, wandb_note
from lightning_gen.data import FashionMNIST
from lightning_gen.data.base import DataFilesMissing, ImageDataModule
from lightning_gen.evaluation import BenchmarkError, default_repeats, evaluate_model, split_digest, spread_protocol
from lightning_gen.images import image_grid, save_png
from lightning_gen.leaderboard import paired
from lightning_gen.leaderboard.record import build_record
from lightning_gen.leaderboard.store import DEFAULT_DB, Store
from lightning_gen.metrics.features import available_extractors
from lightning_gen.metrics.functional import kid_kernel
from lightning_gen.metrics.probe import linear_probe
from lightning_gen.metrics.stats_cache import StatsCache
from lightning_gen.models.base import Estimate, GenerativeModule, NoLikelihoodError, bits_per_dim


def _want(flag: bool | None, available: bool) -> bool:
    return available if flag is None else flag


def announce_estimates(model: GenerativeModule, datamodule: ImageDataModule, options: BenchmarkOptions, *,
                       nll: bool, num_samples: int, extractor) -> list[str]:
    """Print :func:`step_estimates` (on the CPU, from global rank 0) before the evaluation starts; returns them."""
    from lightning.pytorch.utilities import rank_zero_only

    if gpu_in_use(options.accelerator) or rank_zero_only.rank != 0:
        return []
    devices = options.devices if isinstance(options.devices, int) and options.devices > 0 else 1
    after_s = float(os.environ.get(ESTIMATE_ENV, ESTIMATE_AFTER_S))
    was_training = model.training
    model.eval()
    try:
        lines = step_estimates(model, datamodule.datasets["test"].images, nll=nll, num_samples=num_samples,
                               extractor=extractor, batch_size=options.batch_size,
                               estimate=Estimate(k=options.iw_samples, seed=options.seed),
                               processes=devices * options.num_nodes, after_s=after_s,
                               feature_dim=extractor.feature_dim if extractor is not None else 0)
    finally:
        model.train(was_training)
    for line in lines:
        print(f"estimate: {line}", file=sys.stderr, flush=True)
    return lines


# ---- one checkpoint --------------------------------------------------------------------------------------------
def benchmark_checkpoint(run: Run | str | os.PathLike, options: BenchmarkOptions, *, data: str | None = None,
                         data_root: str | None = None, data_args: dict | None = None, name: str | None = None,
                         grid_dir: str | os.PathLike | None = None) -> tuple[dict | None, Tensor | None]:
    """Evaluate one run (a :class:`Run`, a checkpoint or a run folder): ``(record, sample grid images)`` on global
    rank 0, ``(None, None)`` elsewhere."""
    run = run if isinstance(run, Run) else Run.open(run)
    model = run.model()  # CheckpointError for anything but a weights-only lightning_gen checkpoint
    family = model_family(model)
    datamodule = run.datamodule(data=data, root=data_root, **(data_args or {}))
    where = run.checkpoint
    if tuple(datamodule.image_shape) != model.image_shape or datamodule.num_levels != model.num_levels:
        raise BenchmarkError(
            f"{where}: {type(model).__name__} models images {model.image_shape} with {model.num_levels} levels, but "
            f"{type(datamodule).__name__} serves {tuple(datamodule.image_shape)} with {datamodule.num_levels}; "
            "benchmark it against the data it was trained on (--data)")
    # Several checkpoints share one command line: k applies to those with a stochastic likelihood estimate.
    estimate = Estimate(k=options.iw_samples, seed=options.seed)
    if options.nll and not model.has_likelihood:
        raise NoLikelihoodError(f"{where}: {type(model).__name__} defines no likelihood, so --nll (NLL, bits/dim) "
                                "cannot be computed for it; drop --nll")
    nll = _want(options.nll, model.has_likelihood)
    has_features = model.has_representation
    if options.probe and not (has_features and datamodule.num_classes > 0):
        raise BenchmarkError(f"--probe: {type(model).__name__} declares no representation to probe"
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
        if isinstance(datamodule, FashionMNIST) and extractor_name == "mnist-lenet":
            warnings.warn("FashionMNIST through mnist-lenet: a classifier of digits, not of clothes; its FID/IS only "
                          "compare runs under the same extractor", stacklevel=2)
        cache = StatsCache(options.stats_cache)  # None: $LIGHTNING_GEN_CACHE/fid_stats, never the shared data root

    datamodule.prepare_data()
    datamodule.setup("test")
    num_test_images = int(datamodule.datasets["test"].images.shape[0])
    if num_samples and num_test_images < 2:
        raise BenchmarkError(f"{type(datamodule).__name__} has fewer than 2 test images: no reference statistics for "
                             "FID/KID (use --num-samples 0 for the NLL alone)")
    biased = fid_biased(num_samples, num_test_images, extractor) if num_samples else None  # warns before the wait
    repeats = options.repeats if options.repeats is not None else (
        default_repeats(num_samples, extractor.feature_dim) if num_samples else 1)
    announce_estimates(model, datamodule, options, nll=nll, num_samples=num_samples * repeats,
                       extractor=extractor)
    result = evaluate_model(model, datamodule, extractor=extractor, num_samples=num_samples, nll=nll,
                            stats_cache=cache, batch_size=options.batch_size, seed=options.seed, estimate=estimate,
                            repeats=repeats, accelerator=options.accelerator, devices=options.devices,
                            strategy=options.strategy, num_nodes=options.num_nodes,
                            enable_progress_bar=options.progress)
    if not result.is_global_zero:
        return None, None
    res = result.results
    if nll and res["num_test_images"] != num_test_images:
        raise RuntimeError(f"NLL covered {res['num_test_images']} images, the test split has {num_test_images}")
    probe_scores = run_probe(model, datamodule, options) if probe else {}

    name = name or run.name
    grid_path = None
    if result.grid is not None and grid_dir is not None:
        grid_path = str(save_png(image_grid(result.grid), Path(grid_dir) / f"{name}.png"))
    nll_nats = res["nll_nats"] if nll else None
    nll_se = res["nll_nats_se"] if nll and math.isfinite(res["nll_nats_se"]) else None  # NaN for one test image
    c, h, w = model.image_shape
    record = build_record(
        run_name=name, model=model.architecture, family=family, dataset=type(datamodule).__name__,
        dataset_id=datamodule.dataset_id, image_shape=[c, h, w],
        metrics={
            **{key: res.get(key) for key in ("fid", "fid_std", "is_mean", "is_std", "is_mean_std", "kid_mean",
                                              "kid_std", "kid_mean_std", "precision", "recall", "density",
                                              "coverage")},
            "nll_nats": nll_nats, "nll_bpd": bits_per_dim(nll_nats, model.num_dims) if nll else None,
            "nll_nats_se": nll_se, "nll_bpd_se": None if nll_se is None else bits_per_dim(nll_se, model.num_dims),
            "probe_acc": probe_scores.get("probe_acc"), "probe_acc_se": probe_scores.get("probe_acc_se"),
            "samples_per_s": res.get("samples_per_s"),
            "num_params": sum(p.numel() for p in model.parameters()),
        },
        protocol={
            "extractor": extractor_name,
            "extractor_weights_sha256": extractor.weights_sha256 if extractor is not None else None,
            "num_samples": num_samples,
            "reference_split": "test",
            "image_size": [h, w],
            "nll_estimator": model.likelihood_protocol(estimate) if nll else None,
            "num_test_images": num_test_images,
            "devices": result.world_size, "sampler": model.sampling_protocol(),
            "fid_biased": biased,
            "kid_kernel": kid_kernel(extractor.kid_feature_scale) if num_samples else None,
            **conditioning(model, nll=nll, num_samples=num_samples),
            **(spread_protocol(repeats, num_samples, extractor.feature_dim) if num_samples else {}),
        },
        nll_per_image=paired.encode(res["nll_per_image"].numpy(), split=split_digest(datamodule.datasets["test"].images))
        if nll else None,
        checkpoint=str(run.checkpoint),
        checkpoint_sha256=run.checkpoint_sha256,
        config=json_safe(run.config if run.config is not None else run.meta["hyper_parameters"]),
        git_commit=git_commit(),
        sample_grid=grid_path,
        train_time_s=run.meta["train_time_s"],
    )
    return record, result.grid


def conditioning(model: GenerativeModule, *, nll: bool, num_samples: int) -> dict[str, Any]:
    """The protocol fields that say whether the numbers are class-conditional: a conditional model's NLL is
    log p(x|y) given the test labels, and its samples are drawn with labels ``index % num_classes``."""
    if not model.conditional:
        return {"conditional": False, "label_distribution": None}
    return {"conditional": True,
            "label_distribution": f"balanced (sample index % {model.num_classes}); NLL is log p(x|y), test labels"
            if num_samples else "NLL is log p(x|y), test labels" if nll else None}


def run_probe(model: GenerativeModule, datamodule: ImageDataModule, options: BenchmarkOptions) -> dict[str, float]:
    """Linear-probe test accuracy of the model's ``encode`` / ``features`` and its standard error."""
    model.eval()
    result = linear_probe(model.representation, probe_splits(datamodule), options.probe_max_train,
                          device=model.device, batch_size=options.batch_size, seed=options.seed)
    return {key: float(result[key]) for key in ("probe_acc", "probe_acc_se")}


# ---- command line ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", nargs="*", help="checkpoints written by `lightning-gen fit`, or their run "
                                                  "folders (best, else last, else newest checkpoint)")
    p.add_argument("--anchor", action="store_true",
                   help="also (or only) score --num-samples real training images of --data against its test split, "
                        "as a 'real data' row of the data set's dashboard section (record family 'data')")
    p.add_argument("--num-samples", type=int, default=None,
                   help=f"samples for FID/IS/KID (default {DEFAULT_NUM_SAMPLES}; {INCEPTION_CPU_NUM_SAMPLES} for "
                        "Inception without a GPU; 0 skips the sample metrics)")
    p.add_argument("--extractor", default=None,
                   help="feature extractor (default: the data module's default_extractor: digits-lenet for Digits, "
                        "mnist-lenet for MNIST, BinarizedMNIST, FashionMNIST, inception otherwise)")
    p.add_argument("--fid-weights", default=None, help="Inception weights file (default $LIGHTNING_GEN_FID_WEIGHTS)")
    p.add_argument("--batch-size", type=int, default=250, help="sample chunk and evaluation batch size")
    p.add_argument("--iw-samples", type=int, default=None,
                   help="importance samples k of the NLL estimate of models that have one (the VAE; default: the "
                        "model's iw_samples, 5000 in the configs); the time grows with k. Other models ignore it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=None,
                   help="independent draws of --num-samples samples: the sample metrics are their means and "
                        "fid_std/is_mean_std/kid_mean_std their spread (costs R times the sampling); with 1, fid_std "
                        "is a bootstrap over the drawn samples' features, honest for >= 40 samples per feature "
                        "dimension (warned otherwise). Default: 1 where that holds (digit classifiers at 10,000 "
                        "samples), else 3")
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
                   help="reference statistics folder (default $LIGHTNING_GEN_CACHE/fid_stats)")
    p.add_argument("--run-name", default=None, help="record name (one checkpoint only; default from its path)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="1")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--db", default=str(DEFAULT_DB), help="results store (SQLite); grids go to <its folder>/grids/")
    p.add_argument("--no-store", action="store_true", help="do not write to the results store")
    p.add_argument("--out", default=None, help="also write the records to this JSON file")
    p.add_argument("--wandb", action="store_true", help="add each record to the W&B run that trained the checkpoint "
                   "(resumed from <run folder>/wandb_run.json; a new run named after it otherwise); $WANDB_MODE "
                   "respected, offline without credentials")
    p.add_argument("--wandb-project", default="lightning_gen", help="project of the new W&B run of a checkpoint "
                   "trained without W&B")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _devices(value: str) -> Any:
    return int(value) if value.isdigit() else value


def main(argv: list[str] | None = None) -> int:
    """``lightning_gen benchmark``: evaluate checkpoints, print a table, store one record per checkpoint."""
    args = build_parser().parse_args(argv)
    if args.run_name and len(args.checkpoints) > 1:
        print(f"{PROG} benchmark: error: --run-name names one checkpoint; got several", file=sys.stderr)
        return 2
    if not args.checkpoints and not args.anchor:
        print(f"{PROG} benchmark: error: name a checkpoint or run folder to evaluate, or pass --anchor --data CLASS "
              "to score real images", file=sys.stderr)
        return 2
    if args.anchor and args.data is None:
        print(f"{PROG} benchmark: error: --anchor needs --data CLASS (e.g. --data Digits): the data set whose real "
              "training images are scored", file=sys.stderr)
        return 2
    options = BenchmarkOptions(
        num_samples=args.num_samples, extractor=args.extractor, fid_weights=args.fid_weights,
        batch_size=args.batch_size, iw_samples=args.iw_samples, seed=args.seed, repeats=args.repeats, nll=args.nll,
        probe=args.probe,
        probe_max_train=args.probe_max_train, stats_cache=args.stats_cache, accelerator=args.accelerator,
        devices=_devices(args.devices), strategy=args.strategy, num_nodes=args.num_nodes, progress=not args.no_progress)
    if options.batch_size <= 0:
        print(f"{PROG} benchmark: error: --batch-size must be positive, got {options.batch_size}",
              file=sys.stderr)
        return 2
    if args.extractor is not None:
        if args.extractor not in available_extractors():
            print(f"{PROG} benchmark: error: unknown extractor {args.extractor!r}; expected one of "
                  f"{', '.join(available_extractors())}", file=sys.stderr)
            return 2
    if args.no_store:
        grid_dir = Path(args.out).parent / "grids" if args.out else None
    else:
        grid_dir = Path(args.db).parent / "grids"
    records = []
    if args.anchor:
        from lightning_gen.app.run import _build_datamodule

        data_args = {**(args.data_args or {}), **({"root": args.data_root} if args.data_root is not None else {})}
        try:
            datamodule = _build_datamodule(None, args.data, data_args)
            record = anchor_record(datamodule, options, grid_dir=grid_dir,
                                   config={"data": {"class_path": args.data, "init_args": data_args}})
        except (BenchmarkError, DataConfigError, DataFilesMissing, FileNotFoundError) as e:
            if debug_requested():
                raise
            message = data_files_missing_message(e, "benchmark") if isinstance(e, DataFilesMissing) else str(e)
            print(f"{PROG} benchmark: error: --anchor: {message}", file=sys.stderr)
            return 2
        print(f"{record['run_name']}: {record['protocol']['num_samples']:,} real training images")
        records.append(record)
        if not args.no_store:
            with Store(args.db) as store:
                store.add(record)
    for checkpoint in args.checkpoints:
        try:
            record, grid = benchmark_checkpoint(checkpoint, options, data=args.data, data_root=args.data_root,
                                                data_args=args.data_args, name=args.run_name, grid_dir=grid_dir)
        except (BenchmarkError, CheckpointError, DataConfigError, NoLikelihoodError, DataFilesMissing,
                FileNotFoundError) as e:
            if debug_requested():
                raise
            message = data_files_missing_message(e, "benchmark") if isinstance(e, DataFilesMissing) else str(e)
            print(f"{PROG} benchmark: error: {checkpoint}: {message}" if str(checkpoint) not in message
                  else f"{PROG} benchmark: error: {message}", file=sys.stderr)
            return 2
        if record is None:  # not global rank 0: rank 0 reports and stores
            continue
        print(f"{record['run_name']}: checkpoint {record['checkpoint']}")  # which one a run folder gave (best.ckpt)
        if args.wandb:
            record["wandb_url"] = log_wandb(record, grid, project=args.wandb_project)
            print(wandb_note(record["wandb_url"]))
        records.append(record)
        if not args.no_store:
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
