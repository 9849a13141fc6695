"""Exact resume: a run stopped by SIGTERM in the middle of an epoch and resumed from its ``preempted.ckpt`` ends
with the weights of the run never interrupted, bitwise; the training loader's position survives a checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers import CONFIGS, REPO, run_cli

PREEMPTIBLE = str(CONFIGS / "trainer" / "preemptible.yaml")


class SigtermAt(L.Callback):
    """Sends this process SIGTERM at the end of training step ``step`` (the scheduler's preemption, on cue);
    rank 0 only: the preemption callback's launcher passes it on, and the ranks agree at their next sync."""

    def __init__(self, step: int) -> None:
        self.step, self.sent = step, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # >=: a GAN's global step moves by 2 on the batches that end with a generator step
        if trainer.global_step >= self.step and trainer.is_global_zero and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def _fit_args(config: str, root: Path, steps: int, extra: list[str]) -> list[str]:
    return ["fit", "--config", config, "--config", PREEMPTIBLE, "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--trainer.limit_val_batches", "0",
            "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "-1",
            "--trainer.max_steps", str(steps), "--trainer.callbacks+", "helpers.DumpRankState",
            "--trainer.callbacks.dirpath", str(root / "final"), *extra]


def fit_in_process(config: str, root: Path, steps: int, extra: list[str] = (), sigterm_at: int | None = None,
                   ckpt_path: Path | None = None) -> dict:
    """``lightning-gen fit`` in this process; the final model state (rank 0)."""
    from lightning_gen.app.trainer_cli import run_lightning

    args = _fit_args(config, root, steps, list(extra))
    if sigterm_at is not None:
        args += ["--trainer.callbacks+", "test_resume.SigtermAt", "--trainer.callbacks.step", str(sigterm_at)]
    if ckpt_path is not None:
        args += ["--ckpt_path", str(ckpt_path)]
    run_lightning(args)
    return torch.load(root / "final" / "rank0.pt", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if not torch.equal(a[k], b[k])}
    assert not differ, f"tensors differ after the resume (max abs difference): {differ}"


def preempted_and_resumed(config: str, tmp_path: Path, steps: int, stop: int, extra: list[str] = ()) -> tuple:
    """The final states of an uninterrupted run and of one SIGTERM-ed at ``stop`` and resumed to ``steps``."""
    whole = fit_in_process(config, tmp_path / "whole", steps, extra)
    run = tmp_path / "preempted"
    fit_in_process(config, run, steps, extra, sigterm_at=stop)
    preempted = run / "checkpoints" / "preempted.ckpt"
    saved = torch.load(preempted, weights_only=True)
    assert stop <= saved["global_step"] < steps
    loader = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert 0 < loader["batches"] < loader["batches_per_epoch"], "the test must stop inside an epoch"
    resumed = fit_in_process(config, run, steps, extra, ckpt_path=preempted)
    return whole, resumed


@pytest.mark.slow
def test_fvsbn_preempted_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    """The issue's example: FVSBN on the digits (21 batches an epoch), 70 steps, SIGTERM at step 37."""
    assert_same_state(*preempted_and_resumed(str(CONFIGS / "fvsbn_digits.yaml"), tmp_path, steps=70, stop=37))


@pytest.mark.slow
@pytest.mark.parametrize("config, steps, stop, extra", [
    ("pixelcnn_digits.yaml", 30, 25, []),
    # k = 2 discriminator steps per generator step and an EMA generator: global_step moves 1, 2, 1, 2, ...
    ("gan_digits.yaml", 40, 31, ["--model.init_args.d_steps_per_g_step", "2", "--model.init_args.ema_decay", "0.9"]),
], ids=["pixelcnn", "gan-k2-ema"])
def test_each_family_preempted_mid_epoch_resumes_bitwise(config, steps, stop, extra, tmp_path):
    assert_same_state(*preempted_and_resumed(str(CONFIGS / config), tmp_path, steps, stop, extra))


@pytest.mark.slow
def test_vae_on_dynamically_binarized_data_resumes_bitwise(fake_data_root, tmp_path):
    """A fresh binarization per batch and the reparameterisation noise: both drawn again, the same, after a resume
    (100 training images in batches of 20: 5 an epoch, stopped in the third)."""
    data = ["--data.class_path", "lightning_gen.data.BinarizedMNIST", "--data.init_args.binarization", "dynamic",
            "--data.init_args.root", str(fake_data_root), "--data.init_args.batch_size", "20"]
    assert_same_state(*preempted_and_resumed(str(CONFIGS / "vae_binarized_mnist.yaml"), tmp_path, 14, 12, data))
