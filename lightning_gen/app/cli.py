"""Command line: LightningCLI for fit / validate / test / predict, plus the suite's own commands.

    python -m lightning_gen fit --config configs/fvsbn_digits.yaml
    python -m lightning_gen fit --model FVSBN --data Digits --trainer.max_epochs 5
    python -m lightning_gen sample CHECKPOINT --num-samples 64 --out grid.png
    python -m lightning_gen benchmark CHECKPOINT [CHECKPOINT ...] [--num-samples N] [--devices 2 --strategy ddp]
    python -m lightning_gen leaderboard [--db results/leaderboard.sqlite] [--out results/leaderboard/index.html]

Any model pairs with any data module: the data module's ``image_shape``, ``num_levels`` and ``num_classes``
are linked into the model's constructor, so a config names only the model's own options.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from lightning.pytorch.cli import LightningCLI

import lightning_gen.data  # noqa: F401  (registers the data modules with the CLI)
import lightning_gen.models  # noqa: F401  (registers the models with the CLI)
from lightning_gen.app.runtime import tune_host
from lightning_gen.compat import cli_config_get
from lightning_gen.data.base import ImageDataModule
from lightning_gen.models.base import GenerativeModule

LINKED_DATA_ATTRIBUTES = ("image_shape", "num_levels", "num_classes")
#: Subcommands that train or evaluate over many steps, where the host tuning of :mod:`~lightning_gen.app.runtime`
#: pays; it changes process-wide allocator settings, so nothing else gets it.
TUNED_SUBCOMMANDS = ("fit", "validate", "test")


class GenCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for name in LINKED_DATA_ATTRIBUTES:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        if self.subcommand in TUNED_SUBCOMMANDS:
            tune_host()

    def instantiate_trainer(self, **kwargs):
        """The configured Trainer, with :class:`ThrottledProgressBar` as its progress bar unless the config
        names one or turns the bar off (Lightning's default bar redraws every batch)."""
        from lightning.pytorch.callbacks import ProgressBar

        from lightning_gen.callbacks import ThrottledProgressBar

        trainer = cli_config_get(self, self.config_init, "trainer", default={})
        callbacks = trainer.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        if trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs.setdefault("callbacks", [*callbacks, ThrottledProgressBar()])
        instance = super().instantiate_trainer(**kwargs)
        check_sync_batchnorm(instance, self.model, bool(trainer.get("sync_batchnorm")))
        return instance


def check_sync_batchnorm(trainer, model, sync_batchnorm: bool) -> None:
    """Stop at start-up, naming the fix, where ``sync_batchnorm`` would meet CPU processes.

    The ddp presets turn SyncBatchNorm on; PyTorch's DistributedDataParallel refuses it for CPU modules ("SyncBatchNorm
    layers only work with GPU modules"), so a preset moved to the CPU would otherwise fail with no hint of the
    setting. Models without BatchNorm are unaffected (there is nothing to convert).
    """
    from lightning.pytorch.accelerators import CPUAccelerator
    from torch.nn.modules.batchnorm import _BatchNorm

    if not (sync_batchnorm and isinstance(trainer.accelerator, CPUAccelerator)):
        return
    layers = sum(isinstance(m, _BatchNorm) for m in model.modules())
    if layers:
        raise ValueError(
            f"sync_batchnorm is on and {type(model).__name__} has {layers} BatchNorm layers, but PyTorch synchronises "
            "BatchNorm only across GPU processes and this run is on the CPU. Add --trainer.sync_batchnorm false "
            "(each process then normalises its own batch), or train on GPUs.")


def _lazy_main(module: str) -> Callable[[list[str]], int]:
    """``module.main``, imported only when its command runs (keeps ``fit`` start-up light)."""
    return lambda argv: importlib.import_module(module).main(argv)


#: Commands beside LightningCLI's subcommands: name -> main(argv) returning an exit code.
COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "sample": _lazy_main("lightning_gen.app.sample"),
    "benchmark": _lazy_main("lightning_gen.app.benchmark"),
    "leaderboard": _lazy_main("lightning_gen.leaderboard"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    GenCLI(
        GenerativeModule,
        ImageDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        args=argv,  # None: LightningCLI reads sys.argv itself
    )
    return 0
