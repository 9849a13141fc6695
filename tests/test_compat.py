"""lightning_gen.compat: the installed Lightning is one it was written for, and each private attribute it touches
still exists and behaves as assumed. After moving the Lightning pin, run this file first."""

from __future__ import annotations

import csv
import logging
import subprocess
import re
import sys
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from torch.utils.data import DataLoader, TensorDataset

from helpers import REPO
from lightning_gen import compat
from lightning_gen.models.base import GenerativeModule

QUIET = dict(accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


class TwoOptimizers(L.LightningModule):
    """Manual optimization with two optimizer steps a batch (as the GAN), so ``global_step`` runs twice as fast as
    the batches; records, per batch, whether compat says the loggers write it."""

    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.a, self.b = torch.nn.Linear(1, width), torch.nn.Linear(1, width)
        self.logged_batches: list[int] = []
        self.trainer_seen = None

    def training_step(self, batch, batch_idx):
        self.trainer_seen = compat.attached_trainer(self)
        for net, opt in zip((self.a, self.b), self.optimizers()):
            opt.zero_grad()
            self.manual_backward(net(batch[0]).square().mean())
            opt.step()
        if compat.logs_this_step(self.trainer):
            self.logged_batches.append(batch_idx)
        self.log("train/x", float(batch_idx))  # every batch: the logger decides which rows it writes

    def configure_optimizers(self):
        return [torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.1)]

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(10, 1)), batch_size=1)


# ---- the version range --------------------------------------------------------------------------------------------
def test_installed_lightning_is_supported_and_pyproject_pins_the_same_range():
    supported = SpecifierSet(",".join(compat.SUPPORTED))
    assert Version(L.__version__) in supported
    (pin,) = re.findall(r'"lightning([<>=!~][^"]*)"', (REPO / "pyproject.toml").read_text())  # the dependency
    assert SpecifierSet(pin) == supported


def test_importing_compat_under_another_lightning_warns_naming_both_versions_and_the_fix():
    code = "import warnings, lightning; lightning.__version__ = '2.7.0'; import lightning_gen.compat"
    proc = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode != 0  # the warning, turned into an error here, was raised at import
    assert "UnsupportedLightningWarning" in proc.stderr
    assert "lightning 2.7.0 is installed" in proc.stderr and "pip install 'lightning>=2.6,<2.7'" in proc.stderr
    with pytest.warns(compat.UnsupportedLightningWarning, match=r"lightning>=2\.6,<2\.7.*lightning 2\.5\.2"):
        compat.check_lightning_version("2.5.2")


@pytest.mark.parametrize("version", ["2.6.0", "2.6.6", "2.6.7rc1"])
def test_versions_in_the_range_pass_silently(version, recwarn):
    compat.check_lightning_version(version)
    assert not [w for w in recwarn if issubclass(w.category, compat.UnsupportedLightningWarning)]


# ---- one test per function ------------------------------------------------------------------------------------------
def test_attached_trainer_is_none_outside_a_trainer_and_the_trainer_inside(tmp_path):
    model = TwoOptimizers()
    assert compat.attached_trainer(model) is None
    trainer = L.Trainer(max_steps=2, logger=False, default_root_dir=tmp_path, **QUIET)
    trainer.fit(model)
    assert model.trainer_seen is trainer


def test_logs_this_step_is_true_exactly_on_the_batches_the_logger_writes(tmp_path):
    model = TwoOptimizers()
    trainer = L.Trainer(max_epochs=1, log_every_n_steps=3, logger=CSVLogger(tmp_path), **QUIET)
    trainer.fit(model)
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        written = [int(float(row["train/x"])) for row in csv.DictReader(f) if row["train/x"]]
    assert written == model.logged_batches == [2, 5, 8]  # by batch, not by global_step (2 a batch here)


def test_ddp_find_unused_parameters_reaches_distributed_data_parallel(monkeypatch):
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies import ddp

    strategy = DDPStrategy(parallel_devices=[torch.device("cpu")], cluster_environment=LightningEnvironment())
    assert compat.ddp_find_unused_parameters(strategy)
    assert not compat.ddp_find_unused_parameters(strategy)  # already on: nothing to change
    monkeypatch.setattr(ddp, "DistributedDataParallel", lambda module, device_ids, **kwargs: kwargs)
    assert strategy._setup_model(torch.nn.Linear(1, 1)) == {"find_unused_parameters": True}
    assert not compat.ddp_find_unused_parameters(DDPStrategy(find_unused_parameters=True))
    assert not compat.ddp_find_unused_parameters(SingleDeviceStrategy(torch.device("cpu")))


def test_wandb_run_is_none_until_started_and_never_starts_one(monkeypatch, tmp_path, caplog):
    import wandb

    from lightning_gen.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb, "run", None)
    run = SimpleNamespace(dir=str(tmp_path / "wandb" / "offline-run-1" / "files"))
    started = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: started.append(kwargs) or run)
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    assert compat.wandb_run_if_started(logger) is None
    logger.finalize("success")
    assert started == []  # asking did not start a run
    assert logger.experiment is run and compat.wandb_run_if_started(logger) is run
    with caplog.at_level(logging.INFO):
        logger.finalize("success")
    assert f"wandb sync {tmp_path / 'wandb' / 'offline-run-1'}" in caplog.text


class RecordingCLI(LightningCLI):
    def instantiate_trainer(self, **kwargs):
        self.trainer_config = compat.cli_config_get(self, self.config_init, "trainer", default={})
        return super().instantiate_trainer(**kwargs)


@pytest.mark.parametrize("subcommand", [[], ["fit"]])
def test_cli_config_get_finds_the_trainer_section_with_and_without_a_subcommand(subcommand, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning_gen"])  # LightningCLI warns when pytest's argv is there too
    args = [*subcommand, "--trainer.max_steps", "1", "--trainer.logger", "false", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(tmp_path)]
    cli = RecordingCLI(TwoOptimizers, run=bool(subcommand), args=args, save_config_callback=None)
    assert cli.trainer_config["max_steps"] == 1 and cli.trainer.max_steps == 1
    assert compat.cli_config_get(cli, cli.config_init, "no_such_section", default="absent") == "absent"


def test_checkpoint_hparams_name_the_class_and_rebuild_it(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning_gen"])
    cli = LightningCLI(TwoOptimizers, subclass_mode_model=True, run=False, save_config_callback=None,
                       args=["--model", f"{__name__}.TwoOptimizers", "--model.width", "3", "--trainer.logger", "false"])
    class_path, init_args = compat.checkpoint_hparams_class(dict(cli.model.hparams))
    assert class_path.endswith("TwoOptimizers") and init_args == {"width": 3}
    rebuilt = compat.instantiate_class_path(L.LightningModule, class_path, init_args)
    assert type(rebuilt).__name__ == "TwoOptimizers" and rebuilt.a.out_features == 3
    assert compat.checkpoint_hparams_class({"width": 3}) == (None, {"width": 3})  # built in Python, not by the CLI
    with pytest.raises(Exception, match="GenerativeModule|subclass"):
        compat.instantiate_class_path(GenerativeModule, class_path, init_args)
