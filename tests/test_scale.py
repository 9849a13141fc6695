"""Launch features that compose with any model config: presets, compile switch, preemption."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers import REPO, benchmark_module, run_cli

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


def _activated_path() -> str:
    """PATH as in an activated environment (the launch scripts call `torchrun` and `python`): `make test` runs
    .venv/bin/python without activating .venv."""
    return f"{Path(sys.executable).parent}:{os.environ['PATH']}"


def _newest_last(folder: Path) -> Path:
    """The resumed run's last checkpoint: ModelCheckpoint writes last-v1.ckpt beside a last.ckpt it did not write."""
    return max(folder.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_run_resumes_from_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    base = [sys.executable, "-m", "lightning_gen", "fit", "--config", str(REPO / "configs/fvsbn_digits.yaml"),
            "--config", str(REPO / "configs/trainer/preemptible.yaml"), "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false",
            "--trainer.limit_val_batches", "0"]
    ckpt_dir = tmp_path / "run" / "checkpoints"  # ModelCheckpoint's folder without a logger
    beat = tmp_path / "heartbeat"
    proc = subprocess.Popen([*base, "--trainer.max_steps", "100000", "--trainer.max_epochs", "-1",
                             "--trainer.callbacks+", "helpers.Heartbeat", "--trainer.callbacks.dirpath", str(beat)],
                            cwd=tmp_path, env={**env, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: (beat / "rank0.step").is_file(), 120, "training to get under way", proc)
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
    assert torch.load(_newest_last(ckpt_dir), weights_only=True)["global_step"] == step + 5


@pytest.mark.slow
def test_torchrun_launch_two_cpu_processes(tmp_path):
    """scripts/torchrun.sh with 2 CPU processes (the ddp preset, moved to the CPU): both ranks train and stay in sync."""
    dump = tmp_path / "states"
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
           "GPUS": "2", "PATH": _activated_path()}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/torchrun.sh"), str(REPO / "configs/fvsbn_digits.yaml"),
         "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.max_steps", "3",
         "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
         "--trainer.callbacks+", "helpers.DumpRankState", "--trainer.callbacks.dirpath", str(dump),
         "--trainer.default_root_dir", str(tmp_path / "run")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s0, s1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert all(torch.equal(s0[k], s1[k]) for k in s0)


@pytest.mark.slow
def test_ddp_preset_moved_to_the_cpu_stops_at_sync_batchnorm_with_the_fix(tmp_path):
    """The ddp preset turns SyncBatchNorm on, which PyTorch's DDP refuses for CPU modules. Moved to 2 CPU processes
    with a BatchNorm model, the run stops at start-up naming the setting and its fix; with the fix it trains."""
    args = ["fit", "--config", str(REPO / "configs/dcgan_digits.yaml"), "--config", str(REPO / "configs/trainer/ddp.yaml"),
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.precision", "32-true",
            "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path / "run")]
    proc = run_cli(args, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode != 0
    assert "sync_batchnorm is on" in proc.stderr and "--trainer.sync_batchnorm false" in proc.stderr, proc.stderr[-3000:]
    fixed = run_cli([*args, "--trainer.sync_batchnorm", "false"], cwd=tmp_path, env={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert fixed.returncode == 0, fixed.stderr[-3000:]


@pytest.mark.slow
def test_compile_switch_trains_and_keeps_checkpoint_keys(tmp_path):
    """configs/trainer/compile.yaml compiles the nets in place: training runs and checkpoints load into an
    uncompiled model (no `_orig_mod.` prefixes)."""
    from lightning_gen.app.run import load_model

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


def test_compile_says_so_when_a_model_has_nothing_to_compile():
    """NADE and the RBM keep their parameters on the module itself: the switch would silently do nothing."""
    from lightning_gen.callbacks import Compile
    from lightning_gen.models import NADE, FVSBN

    with pytest.warns(UserWarning, match="NADE keeps its parameters on itself.*nothing was compiled"):
        Compile().setup(None, NADE((1, 2, 2), 2, hidden_size=3), "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Compile().setup(None, FVSBN((1, 2, 2), 2), "fit")


# ---- per-step host costs (see lightning_gen/app/runtime.py and callbacks.ThrottledProgressBar) ----------------
def test_host_tuning_keeps_the_cuda_answer_and_stops_probing_nvml_every_step(monkeypatch):
    import ctypes

    import lightning  # noqa: F401  (sets PYTORCH_NVML_BASED_CUDA_CHECK=1 on import)

    from lightning_gen.app import runtime

    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.delenv("LIGHTNING_GEN_HOST_TUNING", raising=False)
    cuda_before = torch.cuda.is_available()
    applied = runtime.tune_host()
    assert torch.cuda.is_available() == cuda_before
    assert applied["allocator"] == sys.platform.startswith("linux")
    if runtime.nvml_present():  # a driver is there: Lightning's fork-safe check stays
        assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1" and not applied["nvml_check"]
        return
    assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ and applied["nvml_check"]
    loads = []
    real_cdll = ctypes.CDLL
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: loads.append(a[0]) or real_cdll(*a, **k))
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w])
    for _ in range(3):
        (w * w).sum().backward()
        opt.step()
    assert loads == []  # before: one failing dlopen of libnvidia-ml per step


def test_host_tuning_can_be_turned_off(monkeypatch):
    from lightning_gen.app import runtime

    monkeypatch.setattr(runtime, "_applied", None)
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setenv("LIGHTNING_GEN_HOST_TUNING", "0")
    assert runtime.tune_host() == {"allocator": False, "nvml_check": False}
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"


def test_host_tuning_only_for_the_commands_that_train_or_evaluate(tmp_path, monkeypatch, capsys):
    """The allocator and environment changes are process-wide: fit/validate/test get them, the other commands
    (sample, benchmark, leaderboard) leave the process alone."""
    from lightning_gen.app import cli, trainer_cli

    calls = []
    monkeypatch.setattr(trainer_cli, "tune_host", lambda: calls.append(True))
    assert cli.main(["benchmark", str(tmp_path / "missing.ckpt"), "--no-store"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    assert calls == []
    cli.main(["validate", "--config", str(REPO / "configs/fvsbn_digits.yaml"), "--trainer.limit_val_batches", "1",
              "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(tmp_path)])
    assert calls == [True]


class _BarProbe(L.Callback):
    def __init__(self) -> None:
        self.redraws = 0
        self.final = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = trainer.progress_bar_callback
        self.redraws += bar.train_progress_bar.n == batch_idx + 1  # the bar shows this batch: it was redrawn

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.final = (trainer.progress_bar_callback.train_progress_bar.n, trainer.num_training_batches)


@pytest.mark.parametrize("min_interval, expected", [(0.0, "every batch"), (3600.0, "first and last")])
def test_throttled_progress_bar_redraws_by_time_and_ends_on_the_true_count(min_interval, expected, tmp_path, capsys):
    from lightning_gen.callbacks import ThrottledProgressBar
    from lightning_gen.data import Digits
    from lightning_gen.models import FVSBN

    data = Digits(batch_size=16, binarize=True)
    model = FVSBN(image_shape=(1, 8, 8), num_levels=2)
    probe = _BarProbe()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=30, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[ThrottledProgressBar(min_interval=min_interval), probe])
    trainer.fit(model, data)
    assert probe.final == (30, 30)
    assert probe.redraws == (30 if expected == "every batch" else 2)


def test_fit_uses_the_throttled_bar_unless_the_config_names_a_bar_or_turns_it_off(tmp_path):
    from lightning.pytorch.callbacks import TQDMProgressBar

    from lightning_gen.callbacks import ThrottledProgressBar
    from lightning_gen.app.trainer_cli import GenCLI
    from lightning_gen.data.base import ImageDataModule
    from lightning_gen.models.base import GenerativeModule

    def trainer_of(*extra):
        cli = GenCLI(GenerativeModule, ImageDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     auto_configure_optimizers=False, run=False, save_config_callback=None,
                     args=["--config", str(REPO / "configs/fvsbn_digits.yaml"), "--trainer.logger", "false",
                           "--trainer.default_root_dir", str(tmp_path), *extra])
        return cli.trainer

    assert type(trainer_of().progress_bar_callback) is ThrottledProgressBar
    own = trainer_of("--trainer.callbacks+", "lightning.pytorch.callbacks.TQDMProgressBar",
                     "--trainer.callbacks.refresh_rate", "7").progress_bar_callback
    assert type(own) is TQDMProgressBar and own.refresh_rate == 7
    assert trainer_of("--trainer.enable_progress_bar", "false").progress_bar_callback is None


#: A model whose configure_optimizers returns Lightning's dict form (optimizer and an epoch-wise scheduler), as the
#: RBM's default config does.
SCHEDULED = ["--model.init_args.lr_scheduler.class_path", "torch.optim.lr_scheduler.CosineAnnealingLR",
             "--model.init_args.lr_scheduler.init_args.T_max", "48"]


@pytest.mark.parametrize("config, precision, extra", [("configs/fvsbn_digits.yaml", "32-true", []),
                                                      ("configs/vae_digits.yaml", "32-true", []),
                                                      ("configs/vae_digits.yaml", "bf16-mixed", []),
                                                      ("configs/rbm_digits.yaml", "32-true", SCHEDULED)])
def test_bench_train_times_the_same_training_in_both_loops(config, precision, extra, tmp_path):
    """benchmarks/bench_train.py's ratio means something only if both loops do the same work: from the same seeded
    model and batches they must end at the same parameters, in mixed precision too, and for a model with a learning
    rate scheduler."""
    import copy

    throughput = benchmark_module("throughput")
    build_from_config, fixed_batches, time_lightning, time_plain = (
        throughput.build_from_config, throughput.fixed_batches, throughput.time_lightning, throughput.time_plain)

    model, data = build_from_config(REPO / config, ["--data.init_args.root", str(tmp_path / "data"), *extra])
    batches = fixed_batches(data, 6)
    plain, lightning = copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(0)
    assert time_plain(plain, batches, warmup=2, precision=precision) > 0
    torch.manual_seed(0)
    assert time_lightning(lightning, batches, warmup=2, log_dir=tmp_path / "logs", precision=precision) > 0
    for (name, a), b in zip(plain.named_parameters(), lightning.parameters()):
        assert torch.equal(a, b), name
    assert not torch.equal(next(plain.parameters()), next(model.parameters()))  # and they did train


def _saved_activation_bytes(config: Path, extra: list[str]) -> int:
    """Bytes autograd keeps for the backward pass of one training step (a floor for the training peak)."""
    throughput = benchmark_module("throughput")
    build_from_config, fixed_batches = (
        throughput.build_from_config, throughput.fixed_batches)

    model, data = build_from_config(config, extra)
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.training_step(fixed_batches(data, 1)[0], 0)
    return sum(storages.values())


def test_peak_memory_counts_the_activations_and_grows_with_the_batch():
    """benchmarks/bench_memory.py's CPU figure: the peak a run adds covers what autograd saves for backward, and a
    batch 8x larger adds correspondingly more (so the number tracks the model, not allocator noise)."""
    config = REPO / "configs/pixelcnn_digits.yaml"
    peaks, saved = {}, {}
    for batch in (32, 256):
        extra = ["--data.init_args.batch_size", str(batch)]
        # a fresh process each, in benchmarks/ as its scripts run (they import `memory` by plain name)
        code = f"import json, memory; print(json.dumps(memory.peak_memory({str(config)!r}, {extra!r}, steps=3)))"
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO / "benchmarks", capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        peaks[batch] = json.loads(done.stdout.strip().splitlines()[-1])["training_peak_bytes"]
        saved[batch] = _saved_activation_bytes(config, extra)
    assert peaks[256] >= saved[256]
    assert peaks[256] - peaks[32] >= 0.8 * (saved[256] - saved[32])


# ---- SLURM and multi-node launchers, run for real on this machine's CPU ----------------------------------------
FAKE_SRUN = """#!/usr/bin/env bash
# Stand-in for SLURM's srun on one node: SLURM_NTASKS copies of the command, each with its task's variables.
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NODEID=0 "$@" &
  pids+=($!)
  echo $! >> "$FAKE_SLURM_DIR/task_pids"
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
echo "$@" >> "$FAKE_SLURM_DIR/scontrol.log"
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fake_slurm_env(tmp_path: Path, job_id: str) -> dict:
    """The variables SLURM gives `sbatch --nodes=1 --ntasks-per-node=2`, with srun and scontrol stand-ins on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": f"{REPO}:{REPO / 'tests'}",
            "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "FAKE_SLURM_DIR": str(tmp_path),
            "SLURM_SUBMIT_DIR": str(REPO), "SLURM_JOB_ID": job_id, "SLURM_JOB_NAME": "lightning_gen",
            "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NUM_NODES": "1", "SLURM_NNODES": "1",
            "SLURM_NODELIST": "127.0.0.1", "MASTER_PORT": str(_free_port())}


def _signal_tasks(tmp_path: Path, signum) -> None:
    for pid in (tmp_path / "task_pids").read_text().split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signum)


def _wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the job ended (exit {proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
def test_slurm_script_trains_on_two_tasks_requeues_on_sigusr1_and_the_requeued_job_resumes(tmp_path):
    """scripts/slurm.sbatch under stand-ins for srun and scontrol, 2 DDP tasks: SIGUSR1 (SLURM's time-limit warning)
    saves an HPC checkpoint, requeues the job and stops it cleanly; the requeued job (same script, same job id)
    resumes from that checkpoint with no --ckpt_path; SIGTERM (a preemption) saves the next HPC checkpoint, and
    the two ranks end in sync."""
    run, dump = tmp_path / "run", tmp_path / "states"
    env = _fake_slurm_env(tmp_path, job_id="4242")
    cmd = ["bash", str(REPO / "scripts/slurm.sbatch"), "configs/fvsbn_digits.yaml", "--trainer.accelerator", "cpu",
           "--trainer.precision", "32-true", "--trainer.default_root_dir", str(run), "--trainer.logger", "false",
           "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0", "--trainer.max_epochs", "-1",
           "--trainer.callbacks+", "helpers.DumpRankState", "--trainer.callbacks.dirpath", str(dump)]
    beat = tmp_path / "heartbeat"
    job = subprocess.Popen([*cmd, "--trainer.max_steps", "100000", "--trainer.callbacks+", "helpers.Heartbeat",
                            "--trainer.callbacks.dirpath", str(beat)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for(lambda: all((beat / f"rank{r}.step").is_file() for r in range(2)), 180,
                  "both tasks to be training", job)
        _signal_tasks(tmp_path, signal.SIGUSR1)  # SLURM's time-limit warning: save, requeue, stop
        out, _ = job.communicate(timeout=180)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 0, out[-3000:]
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert sorted(p.name for p in run.glob("hpc_ckpt_*.ckpt")) == ["hpc_ckpt_1.ckpt"]
    first = torch.load(run / "hpc_ckpt_1.ckpt", weights_only=True)["global_step"]
    assert first > 0

    # The requeued job (same script, same job id) resumes by itself; SLURM's kill (SIGTERM) then preempts it.
    (tmp_path / "task_pids").unlink()
    env["MASTER_PORT"] = str(_free_port())
    for f in beat.glob("*.step"):
        f.unlink()
    requeued = subprocess.Popen([*cmd, "--trainer.max_steps", "100000", "--trainer.callbacks+", "helpers.Heartbeat",
                                 "--trainer.callbacks.dirpath", str(beat)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for(lambda: all((beat / f"rank{r}.step").is_file() for r in range(2)), 180,
                  "the requeued job to be training", requeued)
        _signal_tasks(tmp_path, signal.SIGTERM)
        out, _ = requeued.communicate(timeout=180)
    finally:
        if requeued.poll() is None:
            os.killpg(requeued.pid, signal.SIGKILL)
    assert requeued.returncode == 0, out[-3000:]
    assert f"Restoring states from the checkpoint path at {run / 'hpc_ckpt_1.ckpt'}" in out
    second = torch.load(run / "hpc_ckpt_2.ckpt", weights_only=True)["global_step"]
    assert second > first  # it went on from the first job's state and saved its own newest state
    s0, s1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert all(torch.equal(s0[k], s1[k]) for k in s0)


@pytest.mark.slow
def test_torchrun_multinode_script_trains_two_nodes_in_sync(tmp_path):
    """scripts/torchrun_multinode.sh started twice, as node 0 and node 1 of 2 (one CPU process each, on localhost):
    the two nodes form one DDP job with the multinode preset and end with identical parameters."""
    dump = tmp_path / "states"
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
           "NNODES": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "GPUS": "1",
           "PATH": _activated_path()}
    cmd = ["bash", str(REPO / "scripts/torchrun_multinode.sh"), str(REPO / "configs/fvsbn_digits.yaml"),
           "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.max_steps", "3",
           "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
           "--trainer.callbacks+", "helpers.DumpRankState", "--trainer.callbacks.dirpath", str(dump),
           "--trainer.default_root_dir", str(tmp_path / "run")]
    nodes = [subprocess.Popen(cmd, cwd=tmp_path, env={**env, "NODE_RANK": str(rank)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    outs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-2000:] for o in outs)
    s0, s1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert all(torch.equal(s0[k], s1[k]) for k in s0)


def test_flops_per_step_matches_the_hand_count_of_an_mlp_vae():
    """The MFU numerator: an MLP VAE's step is 2*in*out FLOPs per linear layer and image forward, twice that
    backward, less the input gradient of the first layer (the data needs none)."""
    throughput = benchmark_module("throughput")
    build_from_config, flops_per_step, synthetic_batches = (
        throughput.build_from_config, throughput.flops_per_step, throughput.synthetic_batches)

    batch = 8
    model, data = build_from_config(REPO / "configs/vae_binarized_mnist.yaml", ["--data.init_args.batch_size", str(batch)])
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears][:1] == [(200, 784)]  # the first layer reads the image
    expected = sum(6 * m.in_features * m.out_features for m in linears) * batch - 2 * 784 * 200 * batch
    assert flops_per_step(model, synthetic_batches(data, 1)) == expected


@pytest.mark.slow
@pytest.mark.parametrize("script, args, last_line", [
    ("bench_train.py", ["--synthetic", "--compile", "--precision", "bf16-mixed", "--steps", "3", "--repeats", "1"],
     r"min_ratio=\d+\.\d{3} floor_ms=\d+\.\d{3}"),
    ("bench_memory.py", ["--steps", "3"], r"fvsbn_digits=\d+\.\d"),
    ("bench_optimizer.py", ["--steps", "3", "--repeats", "1", "--min-seconds", "0"],
     r"min_speedup=\d+\.\d{3} speedup_fvsbn_digits=\d+\.\d{3}"),
])
def test_speed_and_memory_scripts_end_with_their_headline(script, args, last_line, tmp_path):
    """The benchmark scripts run end to end (compiled, bf16) and end with their key=value line."""
    import re

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--configs", "configs/fvsbn_digits.yaml",
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.fullmatch(last_line, proc.stdout.strip().splitlines()[-1]), proc.stdout[-2000:]


def _validation_metrics(folder: Path) -> dict[str, float]:
    """The last logged value of each ``val/`` column of the CSV log under ``folder``."""
    import csv

    (path,) = folder.glob("lightning_logs/version_*/metrics.csv")
    out = {}
    for row in csv.DictReader(path.open()):
        out |= {k: float(v) for k, v in row.items() if k.startswith("val/") and v}
    return out


@pytest.mark.slow
def test_sample_metrics_are_the_same_on_one_and_two_cpu_processes(tmp_path):
    """SampleMetrics under DDP: seeded chunks dealt to the ranks, features gathered in sample order, so
    ``val/fid``, ``val/kid`` and ``val/is`` of the same (seeded, untrained) DCGAN equal those of one process."""
    base = ["validate", "--config", str(REPO / "configs/dcgan_digits.yaml"), "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false"]  # the config's SampleMetrics: 1000 samples, 4 chunks
    one = run_cli([*base, "--trainer.default_root_dir", str(tmp_path / "one")], cwd=tmp_path,
                  env={"OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_cli([*base, "--trainer.default_root_dir", str(tmp_path / "two"), "--trainer.devices", "2",
                   "--trainer.strategy", "ddp", "--trainer.sync_batchnorm", "false"], cwd=tmp_path,
                  env={"OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-3000:]
    single, double = _validation_metrics(tmp_path / "one"), _validation_metrics(tmp_path / "two")
    assert {"val/fid", "val/kid", "val/is"} <= single.keys()
    for key in ("val/fid", "val/kid", "val/is"):
        assert double[key] == pytest.approx(single[key], rel=1e-6), key
