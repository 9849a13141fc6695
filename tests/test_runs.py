"""One run, one folder, one W&B run: the run folder whatever the loggers, checkpoints by quality, sample metrics
during training, the benchmark resuming the training's W&B run, the dashboard's W&B cell and the sweep."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import random
import re
import struct
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from helpers import CONFIGS, REPO, resolved_config, run_cli
from lightning_gen.app.wandb_log import OFFLINE_PREFIX, log_wandb
from lightning_gen.app.cli import UserError, main
from lightning_gen.app.trainer_cli import apply_run_name, place_run
from lightning_gen.app.run import Run
from lightning_gen.callbacks import SampleMetrics
from lightning_gen.data import Digits
from lightning_gen.evaluation import evaluate_model
from lightning_gen.leaderboard.html import _wandb_cell
from lightning_gen.loggers import (WANDB_RUN_FILE, WandbLogger, read_wandb_run_file, run_folder,
                                   write_wandb_run_file)
from lightning_gen.metrics.features import get_extractor
from lightning_gen.metrics.stats_cache import StatsCache
from lightning_gen.models import FVSBN

QUIET = dict(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)


# ---- reading an offline W&B run ------------------------------------------------------------------------------
def wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` file (LevelDB log format: 32 KiB blocks of chunks with a 7-byte
    header; the file starts with W&B's own 7-byte header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += block - pos % block
            continue
        pending += data[pos:pos + length]
        pos += length
        if kind in (1, 4):  # FULL, LAST
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_runs(folder: Path) -> list[dict]:
    """Each offline piece under ``folder/wandb``: its run id and the summary keys it wrote (JSON values)."""
    pieces = []
    for file in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        run_id, summary, config = None, {}, {}
        for record in wandb_records(file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run_id = record.run.run_id
                config |= {item.key: json.loads(item.value_json) for item in record.run.config.update}
            elif kind == "config":
                config |= {item.key: json.loads(item.value_json) for item in record.config.update}
            elif kind == "summary":
                summary |= {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update}
        pieces.append({"id": run_id, "summary": summary, "config": config, "dir": file.parent})
    return pieces


# ---- the run folder ------------------------------------------------------------------------------------------
def test_run_name_replaces_the_last_part_of_the_root_and_refuses_paths():
    config = {"default_root_dir": "runs/vae_digits"}
    apply_run_name(config, "beta4")
    assert config["default_root_dir"] == str(Path("runs/beta4"))
    config = {"default_root_dir": None}
    apply_run_name(config, "mine")
    assert config["default_root_dir"] == str(Path("runs/mine"))
    with pytest.raises(UserError, match="folder name"):
        apply_run_name({}, "a/b")


def test_wandb_logger_gets_the_same_version_folder_as_the_csv_logger(tmp_path):
    """W&B first: the next free version_N folder holds the checkpoints, config.yaml (trainer.log_dir) and the W&B
    files; a CSV logger first: W&B writes into the CSV run folder. Nothing starts a W&B run here."""
    root = tmp_path / "runs" / "vae_digits"
    (root / "lightning_logs" / "version_0").mkdir(parents=True)
    wandb_logger = WandbLogger(project="p", offline=True)
    checkpoint = ModelCheckpoint(monitor="val/fid", filename="best", save_last=True)
    trainer = L.Trainer(default_root_dir=root, logger=[wandb_logger], callbacks=[checkpoint], **QUIET)
    folder = place_run(trainer)
    assert folder == root / "lightning_logs" / "version_1"
    assert Path(checkpoint.dirpath) == folder / "checkpoints"
    assert Path(wandb_logger.save_dir) == folder == Path(trainer.log_dir) == run_folder(trainer)
    assert wandb_logger._wandb_init["name"] == "vae_digits_version_1"  # the leaderboard's name, not the W&B id

    csv, wandb_second = CSVLogger(root), WandbLogger(project="p", offline=True)
    trainer = L.Trainer(default_root_dir=root, logger=[csv, wandb_second], callbacks=[ModelCheckpoint()], **QUIET)
    folder = place_run(trainer)
    assert folder == Path(csv.log_dir) == Path(wandb_second.save_dir) == run_folder(trainer)


def test_run_folder_opens_best_before_last_and_is_named_by_its_folder(tmp_path):
    folder = tmp_path / "runs" / "gan" / "lightning_logs" / "version_2"
    (folder / "checkpoints").mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt", "epoch=3-step=9.ckpt"):  # the newest file is not the one chosen
        (folder / "checkpoints" / name).write_bytes(b"opened, not read")
    run = Run.open(folder)
    assert run.checkpoint.name == "best.ckpt" and run.name == "gan_version_2"
    assert Run.open(folder / "checkpoints" / "last.ckpt").name == "gan_version_2"
    assert Run.open(folder / "checkpoints" / "epoch=3-step=9.ckpt").name == "gan_version_2_epoch3-step9"


# ---- sample metrics during training --------------------------------------------------------------------------
def _digits() -> Digits:
    dm = Digits(batch_size=64)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_sample_metrics_give_the_benchmark_numbers_for_the_same_split_samples_and_seed(tmp_path):
    """val/fid, val/kid, val/is on the test split are the benchmark's FID, KID and IS of the same samples, to the
    last digit: the callback draws the benchmark's seeded chunks and scores them with the same functions and
    reference statistics (one evaluation engine)."""
    torch.manual_seed(0)
    dm = _digits()
    model = FVSBN(image_shape=dm.image_shape, num_levels=dm.num_levels)
    callback = SampleMetrics(num_samples=300, split="test", chunk_size=100, seed=3)
    L.Trainer(logger=False, callbacks=[callback], **QUIET).validate(model, datamodule=dm, verbose=False)
    bench = evaluate_model(model, dm, extractor=get_extractor("digits-lenet"), num_samples=300,
                           stats_cache=StatsCache(tmp_path), batch_size=100, seed=3, accelerator="cpu", devices=1,
                           enable_progress_bar=False).results
    assert (callback.last["fid"], callback.last["kid"], callback.last["is"]) == (bench["fid"], bench["kid_mean"],
                                                                                  bench["is_mean"])


def test_best_checkpoint_is_the_one_with_the_lowest_val_fid(tmp_path):
    torch.manual_seed(0)
    dm = Digits(batch_size=64)
    model = FVSBN(image_shape=(1, 8, 8), num_levels=256)
    logger = CSVLogger(tmp_path / "runs" / "fvsbn")
    trainer = L.Trainer(max_epochs=3, limit_train_batches=3, logger=logger, **QUIET, callbacks=[
        SampleMetrics(num_samples=200, chunk_size=100),
        ModelCheckpoint(monitor="val/fid", mode="min", filename="best", save_top_k=1, save_last=True)])
    trainer.fit(model, datamodule=dm)
    rows = [r for r in (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()[1:]]
    header = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()[0].split(",")
    fids = [float(r.split(",")[header.index("val/fid")]) for r in rows if r.split(",")[header.index("val/fid")]]
    assert len(fids) == 3 and len(set(fids)) == 3  # measured each epoch, on a changing model
    run = Run.open(logger.log_dir)
    assert run.checkpoint.name == "best.ckpt"
    best = torch.load(run.checkpoint, weights_only=False, map_location="cpu")  # written just above
    assert best["epoch"] == fids.index(min(fids))


def test_last_checkpoint_is_the_latest_state_even_when_the_best_is_older(tmp_path):
    """Every config's checkpoints: best.ckpt by its monitor, last.ckpt the latest state to resume from. With
    Lightning 2.6 a monitored ModelCheckpoint's save_last wrote last.ckpt only when the best improved, so after an
    early best it held the best epoch and a resume dropped the epochs after it (found in a 148-epoch FVSBN run
    whose last.ckpt held epoch 42). Here the monitor's mode is reversed so the best is the first epoch."""
    config = resolved_config(CONFIGS / "fvsbn_digits.yaml")
    [monitored] = [c for c in config["trainer"]["callbacks"] if c["init_args"].get("monitor")]
    monitored["init_args"]["mode"] = "max"  # val NLL falls: the first epoch is the "best"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = run_cli(["fit", "--config", str(path), "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "2",
                    "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "run")],
                   cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    best, last = (torch.load(folder / name, map_location="cpu", weights_only=False)
                  for name in ("best.ckpt", "last.ckpt"))
    assert (best["epoch"], last["epoch"]) == (0, 2) and last["global_step"] == 6


@pytest.mark.parametrize("config", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_no_config_relies_on_save_last_beside_a_monitor(config):
    """A monitored ModelCheckpoint's save_last keeps a copy of the best (Lightning 2.6), not the latest state."""
    trainer = yaml.safe_load(config.read_text()).get("trainer") or {}
    for callback in [*(trainer.get("callbacks") or []), *(trainer.get("callbacks+") or [])]:  # callbacks+: appended
        args = callback.get("init_args") or {}
        if callback["class_path"].endswith("ModelCheckpoint"):
            assert not (args.get("monitor") and args.get("save_last")), f"{config}: use a second ModelCheckpoint " \
                "{filename: last} for the latest state"
            assert args.get("save_top_k", 1) != 0 or not args.get("save_last"), config


def test_sample_metrics_refuse_sizes_that_cannot_give_a_fid():
    with pytest.raises(ValueError, match="at least 2"):
        SampleMetrics(num_samples=1)
    with pytest.raises(ValueError, match="every_n_epochs"):
        SampleMetrics(every_n_epochs=0)


# ---- one W&B run ---------------------------------------------------------------------------------------------
@pytest.fixture
def wandb_in_process():
    """W&B used inside the test process: shut its service down afterwards, which also writes out the run files
    (``finish`` may return before they are complete) and drops ``WANDB_SERVICE``, which subprocesses started later
    would otherwise inherit and write their runs through."""
    import wandb

    yield wandb
    wandb.teardown()


def _record(folder: Path) -> dict:
    return {"run_name": "vae_digits", "model": "VAE", "family": "latent", "dataset": "Digits",
            "metrics": {"fid": 12.5, "nll_bpd": 2.25, "is_mean": None},
            "protocol": {"extractor": "digits-lenet", "num_samples": 300, "nll_estimator": "exact"},
            "checkpoint": str(folder / "checkpoints" / "best.ckpt")}


def test_benchmark_resumes_the_offline_training_run_and_says_how_to_upload_it(tmp_path, monkeypatch,
                                                                               wandb_in_process):
    wandb = wandb_in_process
    monkeypatch.setenv("WANDB_MODE", "offline")
    folder = tmp_path / "runs" / "vae_digits" / "lightning_logs" / "version_0"
    folder.mkdir(parents=True)
    training = wandb.init(project="lightning_gen", dir=str(folder), mode="offline", name="vae_digits")
    training.log({"val/fid": 30.0})
    write_wandb_run_file(folder, training, "offline")
    training.finish()

    grid = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    location = log_wandb(_record(folder), grid)
    wandb.teardown()
    first, second = offline_runs(folder)
    assert first["id"] == second["id"] == read_wandb_run_file(folder)["id"]
    assert second["summary"]["benchmark/fid"] == 12.5 and second["summary"]["benchmark/nll_bpd"] == 2.25
    assert second["summary"]["benchmark/samples"]["_type"] == "image-file"
    assert second["summary"]["benchmark/table"]["_type"] == "table-file"
    assert location.startswith(OFFLINE_PREFIX) and str(second["dir"].resolve()) in location
    assert location.endswith(f"wandb sync {folder.resolve()}/wandb/offline-run-*")


def test_benchmark_of_a_run_trained_without_wandb_starts_one_named_after_it(tmp_path, monkeypatch,
                                                                            wandb_in_process):
    monkeypatch.setenv("WANDB_MODE", "offline")
    folder = tmp_path / "vae_digits" / "lightning_logs" / "version_0"
    folder.mkdir(parents=True)
    assert not (folder / WANDB_RUN_FILE).exists()
    log_wandb(_record(folder), None)
    wandb_in_process.teardown()
    (piece,) = offline_runs(folder)
    assert piece["summary"]["benchmark/fid"] == 12.5


def test_dashboard_w_and_b_cell_links_online_runs_and_shows_the_sync_command_of_offline_ones():
    assert 'href="https://wandb.ai/me/p/runs/abc"' in _wandb_cell("https://wandb.ai/me/p/runs/abc")
    cell = _wandb_cell(f"{OFFLINE_PREFIX}/r/v0/wandb/offline-run-1-abc | upload: wandb sync /r/v0/wandb/offline-run-*")
    assert "W&amp;B offline" in cell and "<code>wandb sync /r/v0/wandb/offline-run-*</code>" in cell
    assert "<code>/r/v0/wandb/offline-run-1-abc</code>" in cell
    assert _wandb_cell("javascript:alert(1)") == "<td></td>" and _wandb_cell(None) == "<td></td>"


# ---- the sweep -----------------------------------------------------------------------------------------------
def _sweep_points(sweep: dict, n_random: int) -> list[dict]:
    """Every value of each listed parameter once (with the others at their first value), plus random draws."""
    params = sweep["parameters"]

    def draw(spec, rng):
        if "value" in spec:
            return spec["value"]
        if "values" in spec:
            return rng.choice(spec["values"])
        assert spec["distribution"] == "log_uniform_values", spec
        return math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"])))

    first = {k: (v["value"] if "value" in v else v["values"][0] if "values" in v else v["min"])
             for k, v in params.items()}
    points = [first | {k: value} for k, spec in params.items() for value in spec.get("values", [])]
    rng = random.Random(0)
    return points + [{k: draw(spec, rng) for k, spec in params.items()} for _ in range(n_random)]


def _agent_command(sweep: dict, point: dict) -> list[str]:
    """The command line ``wandb agent`` runs for ``point``, built with W&B's own helpers as the agent builds it."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    args = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in point.items()}})
    args |= {"interpreter": ["python"], "program": [sweep["program"]], "env": ["/usr/bin/env"]}
    command = []
    for chunk in map(str, sweep_utils.create_sweep_command(sweep["command"])):
        command += args.get(chunk[2:-1]) or [] if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return command


def _get(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def test_every_sweep_point_parses_through_the_cli_into_the_config(monkeypatch):
    sweep = yaml.safe_load((CONFIGS / "sweeps" / "vae_binarized_mnist.yaml").read_text())
    monkeypatch.chdir(REPO)  # the agent runs from the repository root: the config paths are relative to it
    monkeypatch.setattr(sys, "argv", ["lightning-gen"])
    points = _sweep_points(sweep, n_random=3)
    assert len(points) >= 10
    for point in points:
        command = _agent_command(sweep, point)
        assert command[:5] == ["/usr/bin/env", "python", "-m", "lightning_gen", "fit"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([*command[4:], "--print_config"])
        config = yaml.safe_load(out.getvalue())
        for name, value in point.items():
            got = _get(config, name)
            assert got == pytest.approx(value) if isinstance(value, float) else got == value, (name, got, value)


# ---- the README command, with and without W&B ------------------------------------------------------------------
def _layout(folder: Path) -> set[str]:
    """What a run folder holds, W&B's own files and the CSV logger's aside."""
    skip = ("wandb", WANDB_RUN_FILE, "metrics.csv", "hparams.yaml")
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.relative_to(folder).parts[0] not in skip}


@pytest.mark.slow
def test_readme_fit_with_and_without_wandb_gives_one_run_folder_that_benchmark_opens_with_no_flags(tmp_path):
    fit = ["fit", "--config", str(CONFIGS / "fvsbn_digits.yaml"), "--trainer.max_epochs", "1",
           "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false"]
    for extra in ([], ["--config", str(CONFIGS / "logger" / "wandb.yaml")]):
        proc = run_cli([*fit, *extra], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = tmp_path / "runs" / "fvsbn_digits" / "lightning_logs"
    plain, with_wandb = runs / "version_0", runs / "version_1"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["fvsbn_digits"]  # nothing elsewhere
    assert _layout(plain) == _layout(with_wandb) >= {"config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt"}
    assert any(p.startswith("samples/step_") for p in _layout(plain))
    trained = read_wandb_run_file(with_wandb)
    assert Run.open(with_wandb / "checkpoints" / "last.ckpt").wandb_run == trained and Run.open(plain).wandb_run is None
    assert trained["mode"] == "offline" and trained["name"] == "fvsbn_digits_version_1"
    (piece,) = offline_runs(with_wandb)
    assert piece["id"] == trained["id"]
    assert piece["config"]["dataset_id"] == Digits().dataset_id
    assert piece["config"]["num_params"] == sum(p.numel() for p in Run.open(with_wandb).model().parameters())

    for folder, name in ((plain, "fvsbn_digits"), (with_wandb, "fvsbn_digits_version_1")):
        out = tmp_path / f"{folder.name}.json"
        proc = run_cli(["benchmark", str(folder.relative_to(tmp_path)), "--num-samples", "200", "--no-store",
                        "--no-progress", "--out", str(out), "--wandb"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (record,) = json.loads(out.read_text())
        assert record["run_name"] == name and record["dataset"] == "Digits"
        assert record["checkpoint"].endswith("checkpoints/best.ckpt")
        assert f"{name}: checkpoint {folder.relative_to(tmp_path)}/checkpoints/best.ckpt" in proc.stdout
        assert record["wandb_url"].startswith(OFFLINE_PREFIX)
        assert "W&B (offline): results saved in " in proc.stdout and "upload them with: wandb sync " in proc.stdout
    training, benchmark = offline_runs(with_wandb)
    assert training["id"] == benchmark["id"] == trained["id"]  # one W&B run for training and results
    assert benchmark["summary"]["benchmark/nll_bpd"] == pytest.approx(record["metrics"]["nll_bpd"])


def test_dcgan_fit_with_wandb_keeps_metrics_csv_with_val_fid_and_prints_the_val_metrics(tmp_path):
    """Beside the W&B logger (offline) the run folder still gets metrics.csv of every logged scalar, val/fid among
    them, and each validation's end prints one line of the latest val metrics."""
    proc = run_cli(["fit", "--config", str(CONFIGS / "dcgan_digits.yaml"), "--config",
                    str(CONFIGS / "logger" / "wandb.yaml"), "--trainer.max_epochs", "10",  # FID every 10th epoch
                    "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
                    "--trainer.enable_progress_bar", "false"],
                   cwd=tmp_path, env={"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "runs" / "dcgan_digits" / "lightning_logs" / "version_0"
    assert read_wandb_run_file(folder)["mode"] == "offline"
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    fids = [float(row["val/fid"]) for row in rows if row.get("val/fid")]
    assert len(fids) == 1 and math.isfinite(fids[0]), rows
    assert re.search(r"epoch 9, step [\d,]+: .*val/fid [\d.]+", proc.stdout + proc.stderr), proc.stdout[-2000:]
    assert "anonymous setting" not in proc.stderr
