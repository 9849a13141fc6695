"""A new user's first hour: every command is listed, every mistake ends in a few lines naming the fix (exit status
2, or 1 where the machine lacks something) with no traceback unless --debug asks for one, long benchmark steps are
announced with the option that shortens them, early stops say why, and outputs are readable by others.

The mistakes run the real CLI in a fresh process (``python -m lightning_gen``); each fails before any training.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.cli import LightningCLI

from helpers import CONFIGS, REPO, run_cli
from lightning_gen.app import cli
from lightning_gen.app.noise import silence_known_noise
from lightning_gen.app.estimates import step_estimates
from lightning_gen.callbacks import StopReason
from lightning_gen.data import Digits
from lightning_gen.images import save_png
from lightning_gen.models import FVSBN, VAE, Estimate
from test_benchmark import write_checkpoint

NO_GPU = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def assert_short_error(proc, code: int, *texts: str, max_lines: int = 8) -> str:
    """The process failed with ``code``, printed each of ``texts`` in a few lines of stderr, and no traceback."""
    err = proc.stderr
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    message = err[err.index("lightning-gen "):] if "lightning-gen " in err else err
    assert len(message.strip().splitlines()) <= max_lines, message
    for text in texts:
        assert text in message, message
    return message


# ---- help ------------------------------------------------------------------------------------------------------
def test_help_and_the_bare_command_list_every_command_with_its_purpose(tmp_path):
    commands = {*LightningCLI.subcommands(), *cli.TRAINER_COMMANDS, *cli.COMMANDS}
    assert {"fit", "validate", "test", "predict", "sample", "benchmark", "leaderboard"} <= commands
    helped = run_cli(["--help"], cwd=tmp_path)
    bare = run_cli([], cwd=tmp_path)
    assert helped.returncode == 0 and bare.returncode == 2
    for text in (helped.stdout, bare.stderr):
        rows = {line.split()[0]: line.split(None, 1)[1] for line in text.splitlines()
                if line.startswith("  ") and line.split() and line.split()[0] in commands}
        assert set(rows) == commands, text
        assert all(len(purpose) > 10 for purpose in rows.values()), rows


# ---- mistakes --------------------------------------------------------------------------------------------------
def test_misspelt_model_option_says_what_was_meant_and_debug_shows_the_traceback(tmp_path):
    args = ["fit", "--config", str(CONFIGS / "gan_digits.yaml"), "--model.init_args.g_widht", "64"]
    assert_short_error(run_cli(args, cwd=tmp_path), 2, "did you mean --model.init_args.g_width?")
    debug = run_cli([*args, "--debug"], cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "g_widht" in debug.stderr


def test_misspelt_trainer_option_says_what_was_meant(tmp_path):
    args = ["fit", "--config", str(CONFIGS / "fvsbn_digits.yaml"), "--trainer.max_epohcs", "3"]
    assert_short_error(run_cli(args, cwd=tmp_path), 2, "did you mean --trainer.max_epochs?")


@pytest.mark.parametrize("option, typo, meant", [("--model", "GANN", "GAN"), ("--data", "Digitz", "Digits")])
def test_misspelt_class_name_says_which_class_was_meant(option, typo, meant, tmp_path):
    proc = run_cli(["fit", option, typo, *(["--data", "Digits"] if option == "--model" else ["--model", "FVSBN"])],
                   cwd=tmp_path)
    assert_short_error(proc, 2, f"did you mean {option} {meant}?")


@pytest.mark.parametrize("option, value, meant", [("--model.init_args.g_loss", "nonsaturating", "non_saturating"),
                                                  ("--model.init_args.generator", "dcgann", "dcgan")])
def test_unknown_option_value_says_which_value_was_meant(option, value, meant, tmp_path):
    args = ["fit", "--config", str(CONFIGS / "dcgan_digits.yaml"), option, value,
            "--trainer.default_root_dir", str(tmp_path / "run")]
    message = assert_short_error(run_cli(args, cwd=tmp_path, env=NO_GPU), 2, f"{option} {value}: no such",
                                 f"did you mean {meant}?", "Choices of")
    assert len(message.strip().splitlines()) <= 3, message


def test_a_model_module_that_does_not_import_says_how_to_make_it_importable(tmp_path):
    typed = run_cli(["fit", "--config", str(CONFIGS / "dcgan_digits.yaml"), "--model", "my_missing_module.Model"],
                    cwd=tmp_path, env=NO_GPU)
    assert_short_error(typed, 2, "--model my_missing_module.Model: Python cannot import 'my_missing_module'",
                       "PYTHONPATH=", "pip install -e")
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  class_path: mixture.Mixture\ndata:\n  class_path: lightning_gen.data.Digits\n")
    in_config = run_cli(["fit", "--config", str(config)], cwd=tmp_path, env=NO_GPU)
    assert_short_error(in_config, 2, "class_path mixture.Mixture (in a --config file)", "No module named 'mixture'",
                       "PYTHONPATH=")


#: Each launcher and the environment it needs besides the python and the GPU count.
LAUNCHERS = {"torchrun.sh": {}, "torchrun_multinode.sh": {"NNODES": "2", "NODE_RANK": "0", "MASTER_ADDR": "127.0.0.1"}}


@pytest.mark.parametrize("name", LAUNCHERS)
def test_torchrun_script_without_the_environment_or_a_gpu_names_the_fix(tmp_path, name):
    script = str(REPO / "scripts" / name)
    bare = subprocess.run(["bash", script, "configs/fvsbn_digits.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": "/usr/bin/false", **LAUNCHERS[name]}, timeout=60)
    assert bare.returncode == 2 and "Traceback" not in bare.stderr, bare.stderr
    assert "source .venv/bin/activate" in bare.stderr and "PYTHON=.venv/bin/python" in bare.stderr
    env = {**os.environ, **NO_GPU, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), **LAUNCHERS[name]}
    env.pop("GPUS", None)
    no_gpu = subprocess.run(["bash", script, "configs/fvsbn_digits.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, env=env, timeout=120)
    assert no_gpu.returncode == 2 and "AssertionError" not in no_gpu.stderr, no_gpu.stderr
    assert "no GPU is visible" in no_gpu.stderr and "GPUS=2" in no_gpu.stderr and "--trainer.accelerator cpu" in no_gpu.stderr


def test_multinode_script_without_its_rendezvous_settings_names_them(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "NNODES": "2"}
    for var in ("NODE_RANK", "MASTER_ADDR"):
        env.pop(var, None)
    out = subprocess.run(["bash", str(REPO / "scripts/torchrun_multinode.sh"), "configs/fvsbn_digits.yaml"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "set NODE_RANK" in out.stderr and "NODE_RANK 0..NNODES-1" in out.stderr, out.stderr


def test_gpu_preset_on_a_machine_without_gpu_names_the_cpu_options(tmp_path):
    args = ["fit", "--config", str(CONFIGS / "fvsbn_digits.yaml"), "--config", str(CONFIGS / "trainer/ddp.yaml"),
            "--trainer.default_root_dir", str(tmp_path / "run")]
    message = assert_short_error(run_cli(args, cwd=tmp_path, env=NO_GPU), 2, "--trainer.accelerator cpu",
                                 "--trainer.devices 2", "2 CPU processes")
    assert "No supported gpu backend" not in message


def test_missing_checkpoint_lists_the_runs_checkpoints_newest_first(tmp_path):
    root = tmp_path / "run"
    args = ["fit", "--config", str(CONFIGS / "fvsbn_digits.yaml"), "--trainer.default_root_dir", str(root),
            "--ckpt_path", str(root / "lightning_logs/version_0/checkpoints/last.ckpt")]
    assert_short_error(run_cli(args, cwd=tmp_path), 2, "no such file", "no checkpoints under")
    older = root / "lightning_logs/version_0/checkpoints/epoch=0-step=21.ckpt"
    newer = root / "lightning_logs/version_1/checkpoints/last.ckpt"
    for i, path in enumerate((older, newer)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        os.utime(path, (time.time() - 100 + 50 * i,) * 2)
    message = assert_short_error(run_cli(args, cwd=tmp_path), 2, "no such file", "newest first")
    shown = [str(p.relative_to(tmp_path)) for p in (newer, older)]  # relative to the working directory
    assert message.index(shown[0]) < message.index(shown[1])


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_missing_checkpoint_hint_honours_run_name_and_finds_the_demo_runs(tmp_path):
    fit = ["fit", "--config", str(CONFIGS / "fvsbn_digits.yaml")]
    five = _touch(tmp_path / "runs/fvsbn_5min/lightning_logs/version_0/checkpoints/last.ckpt")
    _touch(tmp_path / "runs/fvsbn_digits/lightning_logs/version_0/checkpoints/other.ckpt")
    named = run_cli([*fit, "--run_name", "fvsbn_5min", "--ckpt_path", "runs/fvsbn_5min/best.ckpt"], cwd=tmp_path)
    message = assert_short_error(named, 2, "Checkpoints under runs/fvsbn_5min", str(five.relative_to(tmp_path)))
    assert "other.ckpt" not in message

    demo = _touch(tmp_path / "runs/demo/gan_digits/lightning_logs/version_0/checkpoints/last.ckpt")
    guessed = run_cli(["fit", "--config", str(CONFIGS / "gan_digits.yaml"), "--ckpt_path",
                       "runs/gan_digits/lightning_logs/version_0/checkpoints/last.ckpt"], cwd=tmp_path)
    assert_short_error(guessed, 2, "no checkpoints under runs/gan_digits", "Checkpoints of runs with a similar name",
                       str(demo.relative_to(tmp_path)), max_lines=10)


def test_sample_of_a_misspelt_checkpoint_lists_the_ones_beside_it(tmp_path):
    folder = tmp_path / "runs/demo/vae_digits/lightning_logs/version_0/checkpoints"
    for name in ("best.ckpt", "last.ckpt"):
        _touch(folder / name)
    proc = run_cli(["sample", str((folder / "lats.ckpt").relative_to(tmp_path))], cwd=tmp_path)
    shown = str(folder.relative_to(tmp_path))
    assert_short_error(proc, 2, f"did you mean {shown}/last.ckpt?", f"Checkpoints in {shown}:", f"{shown}/best.ckpt")
    elsewhere = run_cli(["sample", "runs/vae_digits"], cwd=tmp_path)
    assert_short_error(elsewhere, 2, "runs/vae_digits does not exist", f"{shown}/last.ckpt")


def test_sample_of_a_file_that_is_no_checkpoint_is_one_line(tmp_path):
    proc = run_cli(["sample", str(REPO / "README.md")], cwd=tmp_path)
    message = assert_short_error(proc, 2, "README.md is not a checkpoint", max_lines=1)
    assert message.startswith("lightning-gen sample: error:")
    debug = run_cli(["sample", str(REPO / "README.md")], cwd=tmp_path, env={cli.DEBUG_ENV: "1"})
    assert "Traceback" in debug.stderr and "CheckpointError" in debug.stderr


def test_missing_data_names_the_data_root_option_of_the_command_it_is_printed_for(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"LIGHTNING_GEN_DATA": str(empty)}
    fit = run_cli(["fit", "--model", "FVSBN", "--data", "BinarizedMNIST", "--data.init_args.download", "false",
                   "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path / "run")],
                  cwd=tmp_path, env=env)
    message = assert_short_error(fit, 1, "LIGHTNING_GEN_DATA", "--data.init_args.root PATH", max_lines=12)
    assert "--data-root" not in message

    ckpt = write_checkpoint(tmp_path / "fvsbn28.ckpt", "lightning_gen.models.fvsbn.FVSBN", image_shape=[1, 28, 28],
                            num_levels=2)
    bench = run_cli(["benchmark", str(ckpt), "--data", "BinarizedMNIST", "--data-args", '{"download": false}',
                     "--no-store"], cwd=tmp_path, env=env)
    message = assert_short_error(bench, 2, "LIGHTNING_GEN_DATA", "--data-root PATH", max_lines=12)
    assert "--data.init_args.root" not in message and "--data.root" not in message


# ---- estimates -------------------------------------------------------------------------------------------------
def test_estimates_name_the_option_that_shortens_the_step_and_stay_quiet_when_it_is_short():
    torch.manual_seed(0)
    model = VAE(image_shape=(1, 8, 8), num_levels=2, arch="mlp", hidden_sizes=(16,), z_dim=2, iw_samples=200).eval()
    test_images = Digits(binarize=True).splits()["test"][0]
    extractor = lambda x: x.float().flatten(1)  # noqa: E731  (a cost, not a feature: only timed)
    kwargs = dict(num_samples=500, extractor=extractor, batch_size=50, estimate=Estimate(seed=0), processes=1)
    lines = step_estimates(model, test_images, nll=True, after_s=0, **kwargs)
    iw = next(line for line in lines if line.startswith("importance-weighted NLL"))
    assert "k=200 × 300 images ≈" in iw and "--iw-samples" in iw
    assert any("--num-samples" in line for line in lines)
    assert step_estimates(model, test_images, nll=True, after_s=3600, **kwargs) == []


def test_benchmark_announces_a_long_step_before_running_it(tmp_path):
    ckpt = write_checkpoint(tmp_path / "vae.ckpt", "lightning_gen.models.vae.VAE", image_shape=[1, 8, 8],
                            num_levels=2, arch="mlp", hidden_sizes=[16], z_dim=2, iw_samples=50)
    out = tmp_path / "records.json"
    proc = run_cli(["benchmark", str(ckpt), "--data", "Digits", "--data-args", '{"binarize": true}',
                    "--num-samples", "0", "--no-probe", "--no-store", "--no-progress", "--out", str(out)],
                   cwd=tmp_path, env={"LIGHTNING_GEN_ESTIMATE_AFTER_S": "0", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "estimate: importance-weighted NLL: k=50 × 300 images" in proc.stderr
    assert "--iw-samples" in proc.stderr
    assert json.loads(out.read_text())[0]["protocol"]["nll_estimator"] == "importance-weighted k=50"


# ---- why training stopped --------------------------------------------------------------------------------------
def test_max_time_says_training_stopped_and_how_to_resume(tmp_path):
    root = tmp_path / "run"
    proc = run_cli(["fit", "--config", str(CONFIGS / "fvsbn_digits.yaml"), "--trainer.max_time", "00:00:00:01",
                    "--trainer.max_epochs", "-1", "--trainer.limit_val_batches", "0",
                    "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)],
                   cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    for noise in ("tensorboardX", "litlogger", "LeafSpec"):  # Lightning's tips and deprecations: filtered
        assert noise not in output, output[-3000:]
    line = next(line for line in output.splitlines() if line.startswith("Training stopped"))
    assert "reached --trainer.max_time 00:00:00:01" in line and "larger --trainer.max_time" in line
    resume = line.split("--ckpt_path ")[1].split()[0]
    assert resume.endswith(".ckpt") and os.path.isfile(resume)


def test_early_stopping_says_training_stopped_and_why(tmp_path):
    data = Digits(batch_size=64, binarize=True)
    model = FVSBN(image_shape=(1, 8, 8), num_levels=2)
    reason = StopReason()
    stopper = EarlyStopping(monitor="val/nll_nats", stopping_threshold=1e9)  # met at the first validation
    trainer = L.Trainer(accelerator="cpu", max_epochs=5, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[reason, stopper])
    trainer.fit(model, data)
    assert trainer.current_epoch == 1
    assert reason.message.startswith("Training stopped: early stopping") and "val/nll_nats" in reason.message
    assert "--ckpt_path" in reason.message


class _StopAt(L.Callback):
    def __init__(self, epoch: int, batch_idx: int) -> None:
        self.epoch, self.batch_idx = epoch, batch_idx

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch_idx):
            trainer.should_stop = True


def test_a_stop_inside_an_epoch_counts_the_epochs_run_as_a_fraction(tmp_path):
    reason = StopReason()
    trainer = L.Trainer(accelerator="cpu", max_epochs=5, limit_train_batches=4, limit_val_batches=0, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path, callbacks=[reason, _StopAt(epoch=1, batch_idx=2)])
    trainer.fit(FVSBN(image_shape=(1, 8, 8), num_levels=2), Digits(batch_size=64, binarize=True))
    assert "after 1.75 epochs (7 steps)" in reason.message, reason.message


def test_a_run_that_uses_its_budget_says_nothing_extra(tmp_path):
    reason = StopReason()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path, callbacks=[reason])
    trainer.fit(FVSBN(image_shape=(1, 8, 8), num_levels=2), Digits(batch_size=64, binarize=True))
    assert reason.message is None


def test_only_the_listed_third_party_messages_are_silenced():
    from lightning.pytorch.utilities.warnings import PossibleUserWarning

    noise = [(UserWarning, "Starting from v1.9.0, `tensorboardX` has been removed as a dependency of the "
                           "`lightning.pytorch` package, due to potential conflicts"),
             (FutureWarning, "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`"),
             (PossibleUserWarning, "The 'train_dataloader' does not have many workers which may be a bottleneck.")]
    kept = [(UserWarning, "`isinstance(treespec, LeafSpec)` is deprecated"),  # the text, in another category
            (UserWarning, "The 'train_dataloader' returned no batches")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise()
        for category, message in noise + kept:
            warnings.warn(message, category)
    assert [(w.category, str(w.message)) for w in caught] == kept

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, __file__, 1, message, (), None)

    (handler, *_) = logging.getLogger("lightning.pytorch").handlers
    tip = ("💡 Tip: For seamless cloud logging and experiment tracking, try installing "
           "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger")
    assert not handler.filter(record(tip)) and handler.filter(record("GPU available: False, used: False"))


# ---- outputs ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_pngs_get_the_permissions_of_the_users_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        path = save_png(np.zeros((4, 4, 1), dtype=np.uint8), tmp_path / "grid.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left behind


def test_sample_grid_is_readable_by_others_under_umask_022(tmp_path):
    ckpt = write_checkpoint(tmp_path / "fvsbn.ckpt", "lightning_gen.models.fvsbn.FVSBN", image_shape=[1, 8, 8],
                            num_levels=2)
    old = os.umask(0o022)
    try:
        proc = run_cli(["sample", str(ckpt), "--num-samples", "4", "--out", str(tmp_path / "grid.png"),
                        "--device", "cpu"], cwd=tmp_path)
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stat.S_IMODE((tmp_path / "grid.png").stat().st_mode) == 0o644
