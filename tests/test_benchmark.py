"""The benchmark: records with their protocol, exact NLL and rank-independent sample metrics, clear errors."""

from __future__ import annotations

import csv
import hashlib
import html
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.cli import instantiate_module

from contracts import model_classes
from helpers import CONFIGS, REPO, run_cli
from lightning_gen.app.benchmark import main
from lightning_gen.app.options import model_family
from lightning_gen.app.wandb_log import offline_location
from lightning_gen.app.run import load_model
from lightning_gen.data import Digits
from lightning_gen.evaluation import BenchmarkError, check_samples, evaluate_model, spread_protocol
from lightning_gen.leaderboard.store import METRIC_KEYS, PROTOCOL_KEYS, Store
from lightning_gen.loggers import checkpoint_run_folder
from lightning_gen.metrics import compute_features, fid_from_features, get_extractor
from lightning_gen.models.base import Estimate, GenerativeModule
from lightning_gen.models.fvsbn import FVSBN
from lightning_gen.models.vae import VAE


def write_checkpoint(path: Path, class_path: str, **init_args) -> Path:
    """A checkpoint in the layout ``lightning_gen fit`` writes (state dict + ``_class_path`` hyperparameters),
    for an untrained model: enough for the error paths and the bookkeeping, in milliseconds."""
    torch.manual_seed(0)
    model = instantiate_module(GenerativeModule, {"_class_path": class_path, **init_args})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": {"_class_path": class_path, **init_args}}, path)
    return path


@pytest.fixture
def fvsbn_ckpt(tmp_path) -> Path:
    return write_checkpoint(tmp_path / "fvsbn.ckpt", "lightning_gen.models.fvsbn.FVSBN",
                            image_shape=[1, 8, 8], num_levels=256, num_classes=10)


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def direct_test_nll_per_image(checkpoint: Path, **digits_args) -> torch.Tensor:
    """``-model.log_prob`` of each Digits test image (float64), computed here without the benchmark; an estimate
    (the VAE's) with the benchmark's default seed."""
    model = load_model(checkpoint)
    x, _ = Digits(**digits_args).splits()["test"]
    kwargs = {"estimate": Estimate(seed=0)}
    with torch.no_grad():
        return -model.log_prob(x, **kwargs).double()


def direct_test_nll(checkpoint: Path, **digits_args) -> float:
    """Mean of ``-model.log_prob`` over the Digits test split, computed here without the benchmark."""
    return float(direct_test_nll_per_image(checkpoint, **digits_args).mean())


# ---- samples are validated ---------------------------------------------------------------------------------
def test_check_samples_accepts_the_contract():
    images = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    assert check_samples(images, 3, (1, 8, 8), 256) is images
    binary = torch.randint(0, 2, (3, 1, 8, 8), dtype=torch.uint8) * 255
    assert check_samples(binary, 3, (1, 8, 8), 2) is binary


@pytest.mark.parametrize("images, levels, match", [
    (torch.rand(3, 1, 8, 8), 256, r"dtype torch.float32.*\(x \* 255\)"),
    (torch.zeros(3, 1, 8, 8, dtype=torch.long), 256, "dtype torch.int64"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), 256, r"shape \(3, 8, 8\).*\(3, 1, 8, 8\)"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), 256, r"shape \(2, 1, 8, 8\)"),
    (torch.zeros(3, 3, 8, 8, dtype=torch.uint8), 256, "shape"),
    (torch.ones(3, 1, 8, 8, dtype=torch.uint8), 2, "0/255, not 0/1"),
    (torch.full((3, 1, 8, 8), 100, dtype=torch.uint8), 3, r"values \[100\] outside the 3 grey levels"),
    (torch.zeros(3, 1, 8, 8).numpy(), 256, "returned ndarray"),
])
def test_check_samples_rejects_wrong_dtype_shape_range(images, levels, match):
    with pytest.raises(BenchmarkError, match=match):
        check_samples(images, 3, (1, 8, 8), levels)


def test_model_returning_float_images_is_a_clear_error(fvsbn_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(FVSBN, "sample", lambda self, n, *, generator=None, labels=None: torch.rand(n, 1, 8, 8))
    code, _, err = run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--num-samples", 8, "--no-nll", "--no-store",
                            "--stats-cache", tmp_path / "cache", "--no-progress")
    assert code == 2
    assert "FVSBN.sample(8) returned dtype torch.float32" in err


# ---- bad files and options -----------------------------------------------------------------------------------
def test_not_a_checkpoint(tmp_path, capsys):
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint")
    code, _, err = run_main(capsys, path, "--data", "Digits", "--no-store")
    assert code == 2 and "is not a checkpoint: not a file written by torch.save" in err and str(path) in err


def test_missing_checkpoint(tmp_path, capsys):
    code, _, err = run_main(capsys, tmp_path / "nope.ckpt", "--data", "Digits", "--no-store")
    assert code == 2 and "does not exist" in err


def test_nll_asked_of_a_gan_is_an_error(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "gan.ckpt", "lightning_gen.models.gan.GAN", image_shape=[1, 8, 8],
                            num_levels=256, num_classes=10, generator="mlp", discriminator="mlp", g_width=16,
                            d_width=16)
    code, _, err = run_main(capsys, ckpt, "--data", "Digits", "--nll", "--no-store")
    assert code == 2 and "GAN defines no likelihood" in err and "--nll" in err


def test_unknown_extractor(fvsbn_ckpt, capsys):
    code, _, err = run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--extractor", "vgg-face", "--no-store")
    assert code == 2 and "unknown extractor 'vgg-face'" in err and "digits-lenet" in err


def test_missing_inception_weights_is_a_clear_error(fvsbn_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LIGHTNING_GEN_FID_WEIGHTS", raising=False)
    code, _, err = run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--extractor", "inception", "--fid-weights",
                            tmp_path / "missing.pth", "--no-store")
    assert code == 2 and "missing.pth" in err and "--fid-weights" in err


def test_extractor_of_another_image_size_is_refused(fvsbn_ckpt, capsys):
    code, _, err = run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--extractor", "mnist-lenet", "--no-store")
    assert code == 2 and "mnist-lenet" in err and "(N, 1, 28, 28)" in err


def test_data_of_another_shape_is_refused(fvsbn_ckpt, tmp_path, capsys):
    code, _, err = run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--data-args", '{"binarize": true}', "--no-store")
    assert code == 2 and "256 levels" in err and "with 2" in err


def test_checkpoint_without_run_config_needs_data(fvsbn_ckpt, capsys):
    code, _, err = run_main(capsys, fvsbn_ckpt, "--no-store")
    assert code == 2 and "--data" in err


# ---- what the classes declare ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", model_classes(), ids=lambda c: c.__name__)
def test_every_model_declares_a_family_the_record_accepts(cls):
    model = cls.__new__(cls)  # the family is a class attribute: no need to build the nets
    assert model_family(model) == cls.family


def test_a_model_without_a_family_is_refused_by_name():
    with pytest.raises(BenchmarkError, match="Nameless declares no leaderboard family"):
        model_family(type("Nameless", (GenerativeModule,), {})((1, 8, 8), 2))
    with pytest.raises(BenchmarkError, match="Misspelt.family"):
        model_family(type("Misspelt", (FVSBN,), {"family": "Auto Regressive"})((1, 8, 8), 2))


# ---- the record ------------------------------------------------------------------------------------------------
SPREAD_KEYS = tuple(spread_protocol(1, 1, 1))  # fid_spread, pr_k, ...: protocol fields the benchmark adds


def test_record_and_exact_nll_in_process(fvsbn_ckpt, tmp_path, capsys):
    db, out = tmp_path / "results" / "board.sqlite", tmp_path / "records.json"
    code, stdout, err = run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--num-samples", 40, "--batch-size", 16,
                                 "--db", db, "--out", out, "--stats-cache", tmp_path / "cache", "--no-progress")
    assert code == 0, err
    [record] = json.loads(out.read_text())
    with Store(db) as store:
        assert store.records() == [record]
    assert set(record["metrics"]) == set(METRIC_KEYS)
    assert set(record["protocol"]) == set(PROTOCOL_KEYS) | set(SPREAD_KEYS)
    assert record["protocol"] == {
        "extractor": "digits-lenet", "extractor_weights_sha256": record["protocol"]["extractor_weights_sha256"],
        "num_samples": 40, "reference_split": "test", "image_size": [8, 8], "nll_estimator": "exact",
        "num_test_images": 300, "devices": 1, "sampler": None,  # one network pass: nothing to say
        # 40 samples for 128 feature dimensions: a singular covariance, flagged; KID on the scaled features
        "fid_biased": True, "kid_kernel": f"(x.y/d+1)^3, x/{get_extractor('digits-lenet').kid_feature_scale:.6g}",
        "conditional": False, "label_distribution": None,
        # too few samples per feature dimension for an honest bootstrap: 3 draws by default; the papers' k
        "draws": 3, "fid_spread": "draws", "fid_spread_calibrated": True, "kid_is_spread": "draws", "pr_k": 3,
        "dc_k": 5}
    assert len(record["protocol"]["extractor_weights_sha256"]) == 64
    assert record["model"] == "FVSBN" and record["family"] == "baseline" and record["dataset"] == "Digits"
    assert record["metrics"]["num_params"] == sum(p.numel() for p in load_model(fvsbn_ckpt).parameters())
    expected = direct_test_nll(fvsbn_ckpt)
    assert record["metrics"]["nll_nats"] == pytest.approx(expected, rel=1e-6)
    assert record["metrics"]["nll_bpd"] == pytest.approx(expected / (64 * math.log(2)), rel=1e-6)
    assert record["metrics"]["fid"] > 0 and record["metrics"]["is_mean"] >= 1
    per_image = direct_test_nll_per_image(fvsbn_ckpt).numpy()
    se = per_image.std(ddof=1) / math.sqrt(300)
    assert record["metrics"]["nll_nats_se"] == pytest.approx(se, rel=1e-6)
    assert record["metrics"]["nll_bpd_se"] == pytest.approx(se / (64 * math.log(2)), rel=1e-6)
    # the per-image NLL is kept, in test-set order, keyed by the test split's hash (for paired comparisons)
    from lightning_gen.leaderboard.paired import decode
    assert np.allclose(decode(record["nll_per_image"]), per_image, rtol=1e-6)
    assert record["nll_per_image"]["count"] == 300 and len(record["nll_per_image"]["split"]) == 12
    assert record["metrics"]["fid_std"] > 0 and record["metrics"]["is_mean_std"] > 0  # spreads over the 3 draws
    assert record["metrics"]["kid_mean_std"] > 0
    assert all(0 <= record["metrics"][k] <= 1 for k in ("precision", "recall", "coverage"))
    assert record["metrics"]["density"] >= 0
    assert record["metrics"]["samples_per_s"] > 0 and record["metrics"]["probe_acc"] is None
    assert Path(record["sample_grid"]) == db.parent / "grids" / "fvsbn.png" and Path(record["sample_grid"]).is_file()
    assert "FVSBN" in stdout and "digits-lenet" in stdout and "± over 3 draws" in stdout


def test_fid_biased_flags_sample_counts_up_to_the_feature_dimension_and_warns_first(fvsbn_ckpt, tmp_path, capsys):
    def protocol(n):
        out = tmp_path / f"n{n}.json"
        code, _, err = run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--num-samples", n, "--no-nll", "--no-store",
                                "--out", out, "--stats-cache", tmp_path / "cache", "--no-progress")
        assert code == 0, err
        return json.loads(out.read_text())[0]["protocol"]

    with pytest.warns(RuntimeWarning, match="128 feature dimensions"):
        assert protocol(128)["fid_biased"] is True  # n == D: still singular
    assert protocol(129)["fid_biased"] is False


def test_inception_on_the_cpu_defaults_to_more_samples_than_its_feature_dimensions():
    from lightning_gen.app.options import BenchmarkOptions, resolve_num_samples

    with pytest.warns(UserWarning, match="2,048 feature dimensions"):
        n = resolve_num_samples(BenchmarkOptions(accelerator="cpu"), "inception")
    assert n > 2048


# ---- real-data anchor ------------------------------------------------------------------------------------------
def test_anchor_scores_the_training_images_under_the_samples_protocol(tmp_path, capsys):
    out, db = tmp_path / "anchor.json", tmp_path / "results" / "board.sqlite"
    code, stdout, err = run_main(capsys, "--anchor", "--data", "Digits", "--db", db, "--out", out,
                                 "--stats-cache", tmp_path / "cache")
    assert code == 0, err
    [record] = json.loads(out.read_text())
    assert (record["family"], record["model"], record["run_name"]) == ("data", "real train images",
                                                                       "digits-8bit-train-anchor")
    assert record["dataset_id"] == "digits-8bit" and record["protocol"]["extractor"] == "digits-lenet"
    # every training image (1,297 < the default 10,000), against the whole test split, with no likelihood
    dm = Digits()
    splits = dm.splits()
    assert record["protocol"]["num_samples"] == splits["train"][0].shape[0] == 1297
    assert record["protocol"]["num_test_images"] == 300 and record["protocol"]["fid_biased"] is False
    assert record["metrics"]["nll_nats"] is None and record["metrics"]["nll_bpd"] is None
    extractor = get_extractor("digits-lenet")
    train, _ = compute_features(extractor, splits["train"][0])
    test, _ = compute_features(extractor, splits["test"][0])
    assert record["metrics"]["fid"] == pytest.approx(fid_from_features(train, test), rel=1e-9)
    assert 0 <= record["metrics"]["precision"] <= 1 and record["metrics"]["kid_mean"] is not None
    with Store(db) as store:
        assert store.records() == [record]
    assert Path(record["sample_grid"]).is_file()


def test_a_data_set_without_a_real_data_row_gets_the_command_that_adds_it(fvsbn_ckpt, tmp_path, capsys):
    """After benchmarking a run on a data set the store has no real-data row for, the dashboard (page and console)
    prints the exact command that adds it; running that command makes the note go away."""
    from lightning_gen.leaderboard.dashboard import main as leaderboard_main

    db, page = tmp_path / "board.sqlite", tmp_path / "board.html"
    assert run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--db", db, "--num-samples", "200", "--no-probe")[0] == 0
    assert leaderboard_main(["--db", str(db), "--out", str(page)]) == 0
    note = capsys.readouterr().out
    assert "note: digits-8bit has no real-data row" in note
    command = note.split("add it with:\n")[1].splitlines()[0].strip()
    assert "No real-data row yet" in page.read_text() and html.escape(command) in page.read_text()
    args = shlex.split(command)
    assert args[:2] == ["lightning-gen", "benchmark"] and "--num-samples" in args and "200" in args
    assert run_main(capsys, *args[2:], "--stats-cache", tmp_path / "cache")[0] == 0
    assert leaderboard_main(["--db", str(db), "--out", str(page)]) == 0
    assert "no real-data row" not in capsys.readouterr().out and "No real-data row yet" not in page.read_text()


def test_anchor_needs_a_data_set(capsys):
    code, _, err = run_main(capsys, "--anchor")
    assert code == 2 and "--anchor needs --data" in err
    code, _, err = run_main(capsys)
    assert code == 2 and "--anchor --data" in err


# ---- seeds -----------------------------------------------------------------------------------------------------
def test_seeds_script_command_lines_parse(tmp_path):
    """``scripts/seeds.sh`` prints (DRY_RUN) one fit per seed and one benchmark per run; each fit line parses in the
    real CLI (``--print_config`` stops before training) with its seed and folder, each benchmark line in its parser."""
    import shlex

    from lightning_gen.app.benchmark import build_parser

    env = {**os.environ, "DRY_RUN": "1", "LIGHTNING_GEN": f"{sys.executable} -m lightning_gen",
           "BENCHMARK_ARGS": "--num-samples 500"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "seeds.sh"), "configs/fvsbn_digits.yaml", "2",
                           "--trainer.max_epochs", "1"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    lines = [shlex.split(line) for line in done.stdout.splitlines()]
    fits = [line for line in lines if "fit" in line]
    benchmarks = [line for line in lines if "benchmark" in line]
    assert len(fits) == 2 and len(benchmarks) == 2
    for seed, line in enumerate(fits):
        printed = subprocess.run([*line, "--print_config"], cwd=REPO, capture_output=True, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert printed.returncode == 0, printed.stderr[-2000:]
        config = yaml.safe_load(printed.stdout)
        assert config["seed_everything"] == seed and config["trainer"]["max_epochs"] == 1
        assert config["trainer"]["default_root_dir"] == f"runs/fvsbn_digits_seed{seed}"
    for seed, line in enumerate(benchmarks):
        args = build_parser().parse_args(line[line.index("benchmark") + 1:])
        assert args.run_name == f"fvsbn_digits_seed{seed}" and args.num_samples == 500
        assert args.checkpoints == [f"runs/fvsbn_digits_seed{seed}"]
    bad = subprocess.run(["bash", str(REPO / "scripts" / "seeds.sh"), "configs/fvsbn_digits.yaml", "none"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.slow
def test_seeds_script_trains_and_benchmarks_seeds_into_one_dashboard_row(tmp_path):
    """``scripts/seeds.sh`` for real: two seeds of the digits FVSBN are trained, benchmarked into one store, and
    the dashboard shows one row of 2 seeds, mean ± std over them, with each seed's own numbers behind it."""
    from lightning_gen.leaderboard.ranking import aggregate_seeds, build_entries

    db = tmp_path / "results.sqlite"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "LIGHTNING_GEN": f"{sys.executable} -m lightning_gen",
           "BENCHMARK_ARGS": f"--num-samples 200 --no-progress --db {db}"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "seeds.sh"), str(REPO / "configs" / "fvsbn_digits.yaml"),
                           "2", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    records = Store(db).records()
    assert sorted(r["run_name"] for r in records) == ["fvsbn_digits_seed0", "fvsbn_digits_seed1"]
    assert records[0]["metrics"]["nll_nats"] != records[1]["metrics"]["nll_nats"]  # the seeds differ
    [row] = aggregate_seeds(build_entries(records, include_published=False))
    nll = [r["metrics"]["nll_nats"] for r in records]
    assert len(row.seeds) == 2 and row.value("nll_nats") == pytest.approx(sum(nll) / 2)
    assert row.seed_std["nll_nats"] == pytest.approx(abs(nll[0] - nll[1]) / math.sqrt(2))


def test_same_seed_same_samples_other_seed_other_samples(fvsbn_ckpt, tmp_path, capsys):
    def fid(seed):
        out = tmp_path / f"seed{seed}.json"
        code, _, err = run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--num-samples", 20, "--no-nll", "--no-store",
                                "--out", out, "--seed", seed, "--stats-cache", tmp_path / "cache", "--no-progress")
        assert code == 0, err
        return json.loads(out.read_text())[0]["metrics"]["fid"]

    assert fid(0) == fid(0) != fid(1)


def test_repeats_reproduce_with_the_seed_and_report_the_spread_over_draws(fvsbn_ckpt, tmp_path, capsys):
    """--repeats 2: draw 0 is the single draw's samples, the metrics are the means of the two draws and fid_std is
    their standard deviation; the same seed gives the same numbers."""
    printed = []

    def metrics(*extra):
        out = tmp_path / "records.json"
        code, stdout, err = run_main(capsys, fvsbn_ckpt, "--data", "Digits", "--num-samples", 30, "--no-nll",
                                     "--no-store", "--out", out, "--stats-cache", tmp_path / "cache", "--no-progress",
                                     *extra)
        assert code == 0, err
        printed.append(stdout)
        return json.loads(out.read_text())[0]["metrics"]

    one, two, again = metrics("--repeats", 1), metrics("--repeats", 2), metrics("--repeats", 2)
    assert one["fid_std"] > 0 and one["is_mean_std"] is None  # one draw: the bootstrap (warned at 30 samples)
    assert "one draw: FID ± a bootstrap (too few samples per dimension: overstated)" in printed[0]
    assert "± over 2 draws" in printed[1]
    two.pop("samples_per_s"), again.pop("samples_per_s")  # wall time
    assert again == two
    # std (ddof 1) of two values a, b is |a - b| / sqrt(2); their mean m = (a + b) / 2, so it is sqrt(2) |m - a|.
    assert two["fid_std"] == pytest.approx(math.sqrt(2) * abs(two["fid"] - one["fid"]), rel=1e-9)
    assert two["is_mean_std"] == pytest.approx(math.sqrt(2) * abs(two["is_mean"] - one["is_mean"]), rel=1e-9)
    assert two["kid_mean_std"] > 0 and two["fid"] != one["fid"]


def test_run_folder_benchmarks_against_the_data_its_config_names(tmp_path, capsys):
    """A run folder is enough: its checkpoint is found under checkpoints/ and its config.yaml names the data
    module and its arguments (built as LightningCLI builds it); --data-args overrides some and keeps the rest."""
    run = tmp_path / "binary_run"
    ckpt = write_checkpoint(run / "checkpoints" / "last.ckpt", "lightning_gen.models.fvsbn.FVSBN",
                            image_shape=[1, 8, 8], num_levels=2, num_classes=10)
    config = {"data": {"class_path": "lightning_gen.data.Digits", "init_args": {"binarize": True, "test_size": 101}}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))

    def record(*extra):
        out = tmp_path / "records.json"
        code, _, err = run_main(capsys, run, "--num-samples", 0, "--no-store", "--out", out, "--no-progress", *extra)
        assert code == 0, err
        return json.loads(out.read_text())[0]

    first = record()
    assert first["run_name"] == "binary_run" and first["dataset"] == "Digits" and first["config"] == config
    assert first["checkpoint"] == str(ckpt) and first["protocol"]["num_test_images"] == 101
    assert first["metrics"]["nll_nats"] == pytest.approx(direct_test_nll(ckpt, binarize=True, test_size=101), rel=1e-6)
    assert record("--data-args", '{"test_size": 51}')["protocol"]["num_test_images"] == 51  # still binary


@pytest.mark.parametrize("class_path, extra, family, estimator", [
    ("lightning_gen.models.vae.VAE", {}, "latent", "importance-weighted k=4"),
    ("lightning_gen.models.vae.Autoencoder", {}, "latent", None),
    ("lightning_gen.models.gan.GAN", {"generator": "mlp", "discriminator": "mlp", "g_width": 16, "d_width": 16}, "gan",
     None),
])
def test_latent_and_gan_records(class_path, extra, family, estimator, tmp_path, capsys):
    """VAE: importance-weighted NLL with the --iw-samples override (which models without importance sampling
    ignore, so one command can benchmark a mixed set); no NLL without a likelihood; a linear probe on encode(x) or
    the discriminator's features(x)."""
    ckpt = write_checkpoint(tmp_path / "model.ckpt", class_path, image_shape=[1, 8, 8], num_levels=2,
                            num_classes=10, **extra)
    out = tmp_path / "records.json"
    code, _, err = run_main(capsys, ckpt, "--data", "Digits", "--data-args", '{"binarize": true}', "--iw-samples", 4,
                            "--num-samples", 20, "--no-store", "--out", out, "--stats-cache", tmp_path / "cache",
                            "--no-progress")
    assert code == 0, err
    [record] = json.loads(out.read_text())
    assert record["family"] == family and record["protocol"]["nll_estimator"] == estimator
    assert (record["metrics"]["nll_nats"] is None) == (estimator is None)
    acc = record["metrics"]["probe_acc"]
    assert 0 <= acc <= 1
    n_test = len(Digits(binarize=True).splits()["test"][0])
    assert record["metrics"]["probe_acc_se"] == pytest.approx((acc * (1 - acc) / n_test) ** 0.5)


# ---- the training-time likelihood is the benchmark's ---------------------------------------------------------
@pytest.mark.parametrize("cls, options", [
    (FVSBN, {}), (VAE, {"likelihood": "logistic", "z_dim": 4, "channels": 8, "iw_samples": 8})], ids=["FVSBN", "VAE"])
def test_test_step_nll_under_bf16_autocast_is_the_float32_benchmark_number(cls, options, tmp_path):
    """Under ``bf16-mixed`` the test step still scores in float32: its test/nll_nats is the mean of the per-image
    float32 log-likelihoods (the VAE's with the benchmark's seed), where scoring under the autocast would be off."""
    torch.manual_seed(0)
    model = cls((1, 8, 8), 256, 10, **options)
    data = Digits(batch_size=64, test_size=151)
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    logged = float(trainer.test(model, data, verbose=False)[0]["test/nll_nats"])
    x, _ = Digits(test_size=151).splits()["test"]
    kwargs = {"estimate": Estimate(seed=0)}
    with torch.no_grad():
        exact = float(-model.log_prob(x, **kwargs).double().mean())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = float(-model.log_prob(x, **kwargs).double().mean())
    assert logged == pytest.approx(exact, rel=1e-6)
    assert abs(mixed - exact) > 1e-4 * abs(exact)  # the autocast would have moved the number


# ---- trained checkpoint, end to end, and DDP -------------------------------------------------------------------
def run_script(args: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "lightning_gen", "benchmark", *map(str, args)], cwd=cwd,
                          env=full_env, text=True, capture_output=True, timeout=600)


@pytest.mark.slow
def test_end_to_end_on_trained_checkpoint(trained_fvsbn, tmp_path):
    db, out = tmp_path / "results" / "leaderboard.sqlite", tmp_path / "records.json"
    proc = run_script([trained_fvsbn, "--extractor", "digits-lenet", "--num-samples", 200, "--db", db, "--out", out,
                       "--stats-cache", tmp_path / "cache", "--wandb"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [record] = json.loads(out.read_text())
    with Store(db) as store:
        assert store.records() == [record]
    assert record["run_name"] == "fvsbn_digits" and record["dataset"] == "Digits"  # data from the run's config.yaml
    assert record["config"]["model"]["class_path"].endswith("FVSBN")
    assert record["protocol"]["num_test_images"] == 300 and record["protocol"]["num_samples"] == 200
    assert record["metrics"]["nll_nats"] == pytest.approx(direct_test_nll(trained_fvsbn), rel=1e-6)
    assert record["checkpoint_sha256"] == hashlib.sha256(trained_fvsbn.read_bytes()).hexdigest()
    assert Path(record["sample_grid"]).is_file() and record["created_at"]
    # W&B offline without credentials: a local run is written into the run folder, and the record says where and
    # how to upload it.
    (offline,) = checkpoint_run_folder(trained_fvsbn).glob("wandb/offline-run-*")
    assert record["wandb_url"] == offline_location(offline, checkpoint_run_folder(trained_fvsbn))
    assert "Testing DataLoader" in proc.stdout  # the progress bar while sampling and evaluating


#: The runs the DDP checks benchmark: the config, its extra arguments (a small k for the VAE) and the fixture that
#: trains it.
DDP_RUNS = {"fvsbn": ("fvsbn_digits.yaml", [], "trained_fvsbn"),
            "vae": ("vae_digits.yaml", ["--model.init_args.iw_samples", "32"], "trained_vae")}


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory) -> Path:
    """One epoch of configs/vae_digits.yaml (k = 32), as a user trains it; returns its ``last.ckpt``."""
    tmp = tmp_path_factory.mktemp("vae_run")
    proc = run_cli(["fit", "--config", str(CONFIGS / "vae_digits.yaml"), *DDP_RUNS["vae"][1], "--trainer.max_epochs",
                    "1", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir",
                    str(tmp / "vae_digits")], cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (checkpoint,) = (tmp / "vae_digits").glob("lightning_logs/version_0/checkpoints/last.ckpt")
    return checkpoint


@pytest.fixture(scope="module", params=sorted(DDP_RUNS))
def one_and_two_processes(request, tmp_path_factory) -> tuple[str, Path, dict, dict]:
    """The same benchmark on 1 and on 2 CPU processes (DDP, gloo): an odd test split (301 images) and a sample
    count that splits unevenly over chunks and ranks (300 samples in chunks of 64: 3 chunks on rank 0, 2 on 1).
    Returns the run's name, its checkpoint and the two records."""
    checkpoint = request.getfixturevalue(DDP_RUNS[request.param][2])
    tmp = tmp_path_factory.mktemp(f"ddp_bench_{request.param}")
    records = []
    for devices in (1, 2):
        out = tmp / f"devices{devices}.json"
        proc = run_script([checkpoint, "--data-args", '{"test_size": 301}', "--num-samples", 300,
                           "--batch-size", 64, "--accelerator", "cpu", "--devices", devices, "--strategy",
                           "ddp" if devices > 1 else "auto", "--out", out, "--db", tmp / f"db{devices}" / "lb.sqlite",
                           "--stats-cache", tmp / "cache", "--no-progress"], cwd=tmp)
        assert proc.returncode == 0, proc.stderr[-3000:]
        [record] = json.loads(out.read_text())
        records.append(record)
    return request.param, checkpoint, records[0], records[1]


@pytest.mark.parametrize("cls, options", [(FVSBN, {}), (VAE, {"z_dim": 4, "channels": 8, "iw_samples": 8})],
                         ids=["FVSBN", "VAE"])
def test_test_step_and_benchmark_give_the_same_nll_to_the_last_digit(cls, options, tmp_path):
    """One accumulator (ImageSums) behind both: on the same batches the model's test/nll_nats and the benchmark's
    nll_nats are the same float, not two numbers that agree to a few decimals."""
    torch.manual_seed(0)
    model = cls((1, 8, 8), 2, 10, **options)
    data = Digits(batch_size=50, binarize=True, test_size=120)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    logged = trainer.test(model, data, verbose=False)[0]["test/nll_nats"]
    benchmark = evaluate_model(model.eval(), data, nll=True, batch_size=50, seed=0, accelerator="cpu", devices=1,
                               enable_progress_bar=False).results
    assert benchmark["num_test_images"] == 120
    assert benchmark["nll_nats"] == logged


@pytest.mark.slow
def test_ddp_nll_counts_every_test_image_once(one_and_two_processes):
    """Every image once, and (the VAE) each image's importance-weighted estimate independent of the rank and
    batch it lands in: 1 and 2 processes agree, and equal -log_prob of the whole split in one batch."""
    _, checkpoint, one, two = one_and_two_processes
    assert one["protocol"]["devices"] == 1 and two["protocol"]["devices"] == 2
    assert one["protocol"]["num_test_images"] == two["protocol"]["num_test_images"] == 301
    total_one = one["metrics"]["nll_nats"] * 301
    total_two = two["metrics"]["nll_nats"] * 301
    assert total_two == pytest.approx(total_one, rel=1e-6)
    assert two["metrics"]["nll_nats_se"] == pytest.approx(one["metrics"]["nll_nats_se"], rel=1e-6)
    assert one["metrics"]["nll_nats"] == pytest.approx(direct_test_nll(checkpoint, test_size=301), rel=1e-6)
    # the per-image values come back in test-set order whatever the ranks: gathered by image index
    from lightning_gen.leaderboard.paired import decode
    per_image = direct_test_nll_per_image(checkpoint, test_size=301).numpy()
    assert one["nll_per_image"]["split"] == two["nll_per_image"]["split"]
    assert np.allclose(decode(one["nll_per_image"]), per_image, rtol=1e-6)
    assert np.allclose(decode(two["nll_per_image"]), per_image, rtol=1e-6)


@pytest.mark.slow
def test_ddp_sample_metrics_equal_single_process(one_and_two_processes):
    _, _, one, two = one_and_two_processes
    for key in ("fid", "fid_std", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall", "density",
                "coverage"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-6), key
    # The same samples, not merely the same scores: the grids of the first 64 samples are identical.
    assert Path(one["sample_grid"]).read_bytes() == Path(two["sample_grid"]).read_bytes()


@pytest.mark.slow
def test_ddp_bf16_test_step_nll_is_the_benchmarks(one_and_two_processes, tmp_path):
    """``lightning_gen test`` on 2 CPU processes under bf16-mixed, on the odd split: the logged test/nll_nats is the
    benchmark's number (float32 scoring, the sampler's padded repeat left out, sums over ranks, not a mean of
    per-rank means)."""
    name, checkpoint, one, _ = one_and_two_processes
    config, extra, _ = DDP_RUNS[name]
    proc = run_cli(["test", "--config", str(CONFIGS / config), *extra, "--ckpt_path", str(checkpoint),
                    "--data.init_args.test_size", "301", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                    "--trainer.strategy", "ddp", "--trainer.precision", "bf16-mixed", "--trainer.logger",
                    "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path / "logs"),
                    "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)],
                   cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (metrics_csv,) = (tmp_path / "logs").glob("**/metrics.csv")
    with open(metrics_csv) as f:
        logged = [float(row["test/nll_nats"]) for row in csv.DictReader(f) if row.get("test/nll_nats")]
    assert logged == [pytest.approx(one["metrics"]["nll_nats"], rel=1e-5)]
