"""Exact resume: a run stopped by SIGTERM in the middle of an epoch and resumed from its ``preempted.ckpt`` ends
with the weights of the run never interrupted, bitwise; the training loader's position survives a checkpoint."""

from __future__ import annotations

import os
import signal as signal_module
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers import CONFIGS, REPO, run_cli

PREEMPTIBLE = str(CONFIGS / "trainer" / "preemptible.yaml")


class SignalAt(L.Callback):
    """Sends this process ``signal`` at the end of training step ``step`` (the scheduler's preemption or SLURM's
    time-limit warning, on cue); rank 0 only: the ranks agree at their next sync and all save."""

    def __init__(self, step: int, signal: str = "SIGTERM") -> None:
        self.step, self.signum, self.sent = step, getattr(signal_module, signal), False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # >=: a GAN's global step moves by 2 on the batches that end with a generator step
        if trainer.global_step >= self.step and trainer.is_global_zero and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class DumpCallbackStates(L.Callback):
    """Saves every stateful callback's ``state_dict()`` (by its state key) at the end of ``fit``, rank 0."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_fit_end(self, trainer, pl_module) -> None:
        states = {c.state_key: c.state_dict() for c in trainer.callbacks if c.state_dict()}
        torch.save(states, self.path)


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
        args += ["--trainer.callbacks+", "test_resume.SignalAt", "--trainer.callbacks.step", str(sigterm_at)]
    if ckpt_path is not None:
        args += ["--ckpt_path", str(ckpt_path)]
    run_lightning(args)
    return torch.load(root / "final" / "rank0.pt", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if not torch.equal(a[k], b[k])}
    assert not differ, f"tensors differ after the resume (max abs difference): {differ}"


def fit_ddp(config: str, root: Path, steps: int, extra: list[str] = (), sigterm_at: int | None = None,
            ckpt_path: Path | None = None) -> list[dict]:
    """``lightning-gen fit`` with DDP on 2 CPU processes (gloo); each rank's final model state."""
    args = _fit_args(config, root, steps, ["--trainer.devices", "2", "--trainer.strategy", "ddp", *extra])
    if sigterm_at is not None:
        args += ["--trainer.callbacks+", "test_resume.SignalAt", "--trainer.callbacks.step", str(sigterm_at)]
    if ckpt_path is not None:
        args += ["--ckpt_path", str(ckpt_path)]
    proc = run_cli(args, cwd=root.parent, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(root / "final" / f"rank{r}.pt", weights_only=True) for r in range(2)]


def assert_stopped_mid_epoch(preempted: Path, stop: int, steps: int) -> None:
    saved = torch.load(preempted, weights_only=True)
    assert stop <= saved["global_step"] < steps
    loader = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert 0 < loader["batches"] < loader["batches_per_epoch"], "the test must stop inside an epoch"


def preempted_and_resumed(config: str, tmp_path: Path, steps: int, stop: int, extra: list[str] = (),
                          mid_epoch: bool = True) -> tuple:
    """The final states of an uninterrupted run and of one SIGTERM-ed at ``stop`` and resumed to ``steps``."""
    whole = fit_in_process(config, tmp_path / "whole", steps, extra)
    run = tmp_path / "preempted"
    fit_in_process(config, run, steps, extra, sigterm_at=stop)
    preempted = run / "checkpoints" / "preempted.ckpt"
    if mid_epoch:
        assert_stopped_mid_epoch(preempted, stop, steps)
    resumed = fit_in_process(config, run, steps, extra, ckpt_path=preempted)
    return whole, resumed


@pytest.mark.slow
def test_fvsbn_preempted_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    """The issue's example: FVSBN on the digits (21 batches an epoch), 70 steps, SIGTERM at step 37."""
    assert_same_state(*preempted_and_resumed(str(CONFIGS / "fvsbn_digits.yaml"), tmp_path, steps=70, stop=37))


@pytest.mark.slow
def test_a_checkpoint_after_an_epochs_last_batch_resumes_bitwise(tmp_path):
    """Saved at step 21, the last of the first epoch's 21 batches: the resumed run starts the second epoch."""
    whole, resumed = preempted_and_resumed(str(CONFIGS / "fvsbn_digits.yaml"), tmp_path, 30, 20, mid_epoch=False)
    loader = torch.load(tmp_path / "preempted" / "checkpoints" / "preempted.ckpt", weights_only=True)[
        "loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert loader["batches"] == loader["batches_per_epoch"] == 21
    assert_same_state(whole, resumed)


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


@pytest.mark.slow
def test_two_ddp_processes_preempted_mid_epoch_resume_bitwise(tmp_path):
    """2 CPU processes over gloo, each with its share of every epoch (11 batches of 64 digits): SIGTERM on rank 0
    at step 35, both save at their next sync (step 40), and the resumed ranks end where the uninterrupted ones do."""
    config = str(CONFIGS / "fvsbn_digits.yaml")
    whole = fit_ddp(config, tmp_path / "whole", 50)
    run = tmp_path / "preempted"
    fit_ddp(config, run, 50, sigterm_at=35)
    preempted = run / "checkpoints" / "preempted.ckpt"
    assert_stopped_mid_epoch(preempted, 35, 50)
    resumed = fit_ddp(config, run, 50, ckpt_path=preempted)
    for rank in range(2):
        assert_same_state(whole[rank], resumed[rank])


@pytest.mark.slow
def test_a_resume_with_another_batch_size_mid_epoch_is_refused_with_the_fix(tmp_path):
    config = str(CONFIGS / "fvsbn_digits.yaml")
    run = tmp_path / "preempted"
    fit_in_process(config, run, 20, sigterm_at=5)
    with pytest.raises(ValueError, match=r"saved with batch_size=64 \(the per-process batch size\), this run has "
                                         r"batch_size=32.*--data.init_args.batch_size"):
        fit_in_process(config, run, 20, ["--data.init_args.batch_size", "32"],
                       ckpt_path=run / "checkpoints" / "preempted.ckpt")


@pytest.mark.slow
def test_slurm_requeue_mid_epoch_resumes_bitwise(tmp_path):
    """scripts/slurm.sbatch with stand-ins for srun and scontrol (as tests/test_scale.py runs it), 2 tasks: SLURM's
    time-limit warning (SIGUSR1) at step 35 saves hpc_ckpt_1.ckpt mid-epoch and requeues; the requeued job resumes
    from it by itself and ends with the weights of a job never interrupted."""
    from test_scale import _fake_slurm_env, _free_port

    def job(root: Path, *extra: str) -> tuple[list[dict], str]:
        env = _fake_slurm_env(tmp_path, job_id="77")
        env["MASTER_PORT"] = str(_free_port())
        cmd = ["bash", str(REPO / "scripts/slurm.sbatch"), "configs/fvsbn_digits.yaml", "--trainer.accelerator", "cpu",
               "--trainer.precision", "32-true", "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
               "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
               "--trainer.max_epochs", "-1", "--trainer.max_steps", "50", "--trainer.callbacks+",
               "helpers.DumpRankState", "--trainer.callbacks.dirpath", str(root / "final"), *extra]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:]
        return [torch.load(root / "final" / f"rank{r}.pt", weights_only=True) for r in range(2)], proc.stdout

    whole, _ = job(tmp_path / "whole")
    run = tmp_path / "requeued"
    job(run, "--trainer.callbacks+", "test_resume.SignalAt", "--trainer.callbacks.step", "35",
        "--trainer.callbacks.signal", "SIGUSR1")
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "77"]
    assert_stopped_mid_epoch(run / "hpc_ckpt_1.ckpt", 35, 50)
    resumed, out = job(run)  # the requeued job: same command, no --ckpt_path
    assert f"Restoring states from the checkpoint path at {run / 'hpc_ckpt_1.ckpt'}" in out
    for rank in range(2):
        assert_same_state(whole[rank], resumed[rank])


@pytest.mark.slow
def test_callbacks_with_state_end_the_resumed_run_as_the_uninterrupted_one(tmp_path):
    """Validation at every epoch end, best-checkpoint tracking, early stopping and the wall clock: the resumed run's
    best score, best file, early-stopping counters and logged metrics are the uninterrupted run's; its clock goes on
    from the preempted run's minutes."""
    config = str(CONFIGS / "fvsbn_digits.yaml")
    states = {}
    for name in ("whole", "preempted", "resumed"):
        root = tmp_path / ("whole" if name == "whole" else "preempted")
        extra = ["--trainer.limit_val_batches", "1.0", "--trainer.callbacks+", "lightning_gen.callbacks.WallClock",
                 "--trainer.callbacks+", "lightning.pytorch.callbacks.EarlyStopping",
                 "--trainer.callbacks.monitor", "val/nll_bpd", "--trainer.callbacks.patience", "100",
                 "--trainer.callbacks+", "test_resume.DumpCallbackStates",
                 "--trainer.callbacks.path", str(tmp_path / f"{name}.pt")]
        fit_in_process(config, root, 70, extra, sigterm_at=37 if name == "preempted" else None,
                       ckpt_path=root / "checkpoints" / "preempted.ckpt" if name == "resumed" else None)
        states[name] = torch.load(tmp_path / f"{name}.pt", weights_only=True)
    whole, resumed = states["whole"], states["resumed"]
    assert whole.keys() == resumed.keys()
    for key, state in whole.items():
        if key.startswith("WallClock"):
            assert resumed[key]["minutes"] > states["preempted"][key]["minutes"] > 0
        elif key.startswith("ModelCheckpoint"):
            for field in ("best_model_score", "best_k_models", "kth_value", "current_score"):
                expected = state[field]
                if field == "best_k_models":  # the same files, under the other run's folder
                    expected = {k.replace(str(tmp_path / "whole"), str(tmp_path / "preempted")): v
                                for k, v in expected.items()}
                assert str(resumed[key][field]) == str(expected), (key, field)
        else:
            assert str(resumed[key]) == str(state), key


# ---- the pieces, fast ------------------------------------------------------------------------------------------
def _digits_loader(**kwargs):
    from lightning_gen.data import Digits
    from lightning_gen.data.base import ResumableLoader

    dm = Digits(batch_size=64)
    dm.setup()
    return ResumableLoader(dm.datasets["train"], 64, collate_fn=lambda batch: batch, **kwargs)  # batched reads


def test_the_loader_resumes_mid_epoch_where_it_stopped_and_then_runs_whole_epochs():
    from lightning_gen.data.datamodules import DynamicBinarize

    loader = _digits_loader(seed=3, transform=DynamicBinarize())
    batches = iter(loader)
    for _ in range(5):
        next(batches)
    state = loader.state_dict()
    assert (state["epoch"], state["batches"], state["batches_per_epoch"]) == (0, 5, 21)
    rest = [x for x, _ in batches]
    following = [x for x, _ in loader]  # the next epoch

    resumed = _digits_loader(seed=0, transform=DynamicBinarize())  # the checkpoint's seed wins
    resumed.load_state_dict(state)
    resumed_rest = [x for x, _ in resumed]
    assert len(resumed_rest) == 16 and all(torch.equal(a, b) for a, b in zip(rest, resumed_rest, strict=True))
    resumed_following = [x for x, _ in resumed]
    assert all(torch.equal(a, b) for a, b in zip(following, resumed_following, strict=True))


def test_each_epoch_is_a_permutation_of_seed_and_epoch_and_ranks_share_it():
    def epoch_labels(loader):
        return torch.cat([y for _, y in loader])

    one = _digits_loader(seed=1)
    first, second = epoch_labels(one), epoch_labels(one)
    assert not torch.equal(first, second)  # a new order every epoch
    again = _digits_loader(seed=1)
    assert torch.equal(epoch_labels(again), first) and torch.equal(epoch_labels(again), second)
    assert not torch.equal(epoch_labels(_digits_loader(seed=2)), first)
    # Two ranks: disjoint halves of one epoch's order (one index repeated to even the 1297 out), 11 batches each.
    ranks = [_digits_loader(seed=1, num_replicas=2, rank=r) for r in range(2)]
    assert [len(r) for r in ranks] == [11, 11]
    shares = [list(r.sampler) for r in ranks]
    assert len(set(shares[0]) | set(shares[1])) == 1297 and len(set(shares[0]) & set(shares[1])) == 1


def test_a_mid_epoch_state_of_another_world_size_or_batch_size_is_refused():
    loader = _digits_loader()
    state = {"epoch": 2, "batches": 5, "seed": 0, "world_size": 2, "batch_size": 64, "batches_per_epoch": 11}
    with pytest.raises(ValueError, match=r"world_size=2 \(processes\), this run has world_size=1.*--trainer.devices"):
        loader.load_state_dict(state)
    loader.load_state_dict({**state, "batches": 11})  # an epoch's end: the next epoch is split afresh
    assert loader.sampler.epoch == 3 and len(list(loader)) == 21


def test_reseeding_makes_every_global_stream_a_function_of_the_step():
    import random

    import numpy as np

    from lightning_gen.callbacks.preemption import reseed

    def draws(*parts):
        reseed(*parts)
        dropout = torch.nn.functional.dropout(torch.ones(64), 0.5, training=True)
        return torch.rand(4), dropout, np.random.rand(4), random.random()

    a, b, c = draws(0, 0, 1, 7), draws(0, 0, 1, 7), draws(0, 1, 1, 7)  # rank 1: other streams
    assert all(torch.equal(torch.as_tensor(x), torch.as_tensor(y)) for x, y in zip(a, b))
    assert not any(torch.equal(torch.as_tensor(x), torch.as_tensor(y)) for x, y in zip(a, c))


def test_sample_metrics_keep_their_last_measurement_in_a_checkpoint():
    from lightning_gen.callbacks import SampleMetrics

    measured = SampleMetrics(num_samples=10)
    measured.last, measured.seconds = {"fid": 12.5, "kid": 0.01}, 3.0
    resumed = SampleMetrics(num_samples=10)
    resumed.load_state_dict(measured.state_dict())
    assert resumed.last == measured.last and resumed.seconds == 3.0
