"""Launch features that compose with any model config: presets, compile switch, preemption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO

PRESETS = sorted((REPO / "configs" / "trainer").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_trainer_presets_compose_with_a_model_config(preset, tmp_path):
    """Each preset resolves together with a model config (GPU presets are only parsed here: no GPU in CI)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "lightning_gen", "fit", "--config", str(REPO / "configs/fvsbn_digits.yaml"),
                           "--config", str(preset), "--print_config"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SampleGrid" in proc.stdout  # the model config's callbacks survive the preset's additions


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_run_resumes_from_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    base = [sys.executable, "-m", "lightning_gen", "fit", "--config", str(REPO / "configs/fvsbn_digits.yaml"),
            "--config", str(REPO / "configs/trainer/preemptible.yaml"), "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false",
            "--trainer.limit_val_batches", "0"]
    ckpt_dir = tmp_path / "run" / "checkpoints"  # ModelCheckpoint's folder without a logger
    proc = subprocess.Popen([*base, "--trainer.max_steps", "100000", "--trainer.max_epochs", "-1"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # wait until training is under way (a few epochs' checkpoints), then preempt it
    deadline = time.time() + 120
    while time.time() < deadline and not list(ckpt_dir.glob("epoch=*.ckpt")):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    preempted = ckpt_dir / "preempted.ckpt"
    assert preempted.is_file(), out[-3000:]
    assert "SIGTERM received" in out
    step = torch.load(preempted, weights_only=True)["global_step"]
    assert 0 < step < 100000

    resumed = subprocess.run([*base, "--trainer.max_steps", str(step + 5), "--trainer.max_epochs", "-1",
                              "--ckpt_path", str(preempted)], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (last,) = ckpt_dir.glob("last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == step + 5


@pytest.mark.slow
def test_torchrun_launch_two_cpu_processes(tmp_path):
    """The torchrun path (what scripts/torchrun.sh runs), on 2 CPU processes: both ranks train and stay in sync."""
    dump = tmp_path / "states"
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lightning_gen",
         "fit", "--config", str(REPO / "configs/fvsbn_digits.yaml"), "--trainer.accelerator", "cpu",
         "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "3",
         "--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
         "--trainer.callbacks", "helpers.DumpRankState", "--trainer.callbacks.dirpath", str(dump),
         "--trainer.default_root_dir", str(tmp_path / "run")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s0, s1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert all(torch.equal(s0[k], s1[k]) for k in s0)


@pytest.mark.slow
def test_compile_switch_trains_and_keeps_checkpoint_keys(tmp_path):
    """configs/trainer/compile.yaml compiles the nets in place: training runs and checkpoints load into an
    uncompiled model (no `_orig_mod.` prefixes)."""
    from lightning_gen.models.loading import load_model

    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "lightning_gen", "fit", "--config", str(REPO / "configs/fvsbn_digits.yaml"),
                           "--config", str(REPO / "configs/trainer/compile.yaml"), "--trainer.max_steps", "5",
                           "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
                           "--trainer.default_root_dir", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt,) = tmp_path.glob("**/checkpoints/last.ckpt")
    assert torch.load(ckpt, weights_only=True)["global_step"] == 5
    load_model(ckpt)  # strict load into a plain model
