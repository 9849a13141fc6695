"""The Lightning commands (fit / validate / test / predict): LightningCLI with the suite's checks and run folder.

Any model pairs with any data module: the data module's ``image_shape``, ``num_levels`` and ``num_classes`` are
linked into the model's constructor, so a config names only the model's own options. A checkpoint given with
``--ckpt_path`` is read weights-only, as every other command reads one: a file carrying pickled code is refused,
unexecuted, before anything is built.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningCLI

import lightning_gen.data  # noqa: F401  (registers the data modules with the CLI)
import lightning_gen.models  # noqa: F401  (registers the models with the CLI)
from lightning_gen.app.cli import PROG, TRAINER_COMMANDS, UserError
from lightning_gen.app.parse_errors import explain_bad_value, explain_parse_error
from lightning_gen.app.run import listing, read_checkpoint, run_checkpoints, runs_like, shown_path
from lightning_gen.app.runtime import tune_host
from lightning_gen.compat import cli_config_get
from lightning_gen.data.base import ImageDataModule
from lightning_gen.models.base import GenerativeModule

LINKED_DATA_ATTRIBUTES = ("image_shape", "num_levels", "num_classes")
#: Subcommands that train or evaluate over many steps, where the host tuning of :mod:`~lightning_gen.app.runtime`
#: pays; it changes process-wide allocator settings, so nothing else gets it.
TUNED_SUBCOMMANDS = ("fit", "validate", "test")
#: The settings every run shares (seed, accelerator, devices, the ``last.ckpt`` checkpoint), read by the Lightning
#: commands before any ``--config``; a missing file (an installed package without the repository) is skipped.
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "shared" / "defaults.yaml"
#: ``trainer.ckpt_path`` values that name no file (Lightning resolves them itself).
SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")


class GenCLI(LightningCLI):
    #: The parser of each subcommand, as :meth:`add_arguments_to_parser` meets them (for misspelt-option hints).
    _option_parsers: tuple = ()
    #: The command line as parsed (for the option names in error messages).
    _argv: list[str] = []
    #: The ``--model.*`` values given on the command line of a run with ``--ckpt_path``, by key.
    _explicit_model: dict = {}

    def add_arguments_to_parser(self, parser) -> None:
        for name in LINKED_DATA_ATTRIBUTES:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="name of the run folder runs/<run_name> (replaces the last part of "
                                 "trainer.default_root_dir; default: the config's, e.g. runs/vae_digits)")
        self._option_parsers = (*self._option_parsers, parser)  # one per subcommand

    def parse_arguments(self, parser, args) -> None:
        # Raised only where the parser was made with exit_on_error=False (main does): a short message with the
        # fix instead of jsonargparse's usage dump.
        self._argv = list(sys.argv[1:] if args is None else args)
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise UserError(explain_parse_error(str(e), self._argv, self._option_names())) from e
        # Before LightningCLI reads the checkpoint's hyperparameters (right after parsing): its file is checked here.
        subcommand = self.config.get("subcommand")
        if subcommand:  # None where the CLI only builds (run=False): nothing is loaded
            section = self.config[subcommand]
            require_weights_only(section)
            if section.get("ckpt_path"):
                # The run's root as --run_name will make it (applied later, before the classes are built).
                trainer = {"default_root_dir": (section.get("trainer") or {}).get("default_root_dir")}
                apply_run_name(trainer, section.get("run_name"))
                check_ckpt_path(str(section.ckpt_path), trainer)
                self._explicit_model = explicit_model_options(self._argv, section)

    def _option_names(self) -> set[str]:
        names = {"help", "print_config", "config"}
        for parser in self._option_parsers:
            names |= set(parser.get_defaults(skip_validation=True).keys())
        return names

    def instantiate_classes(self) -> None:
        # A constructor's ValueError for a value it does not know (--model.init_args.g_loss nonsaturating) is a
        # mistake on the command line: a few lines with the value meant, not LightningCLI's traceback.
        try:
            super().instantiate_classes()
        except ValueError as e:
            explained = explain_bad_value(e, self._argv)
            if explained is None:
                raise
            raise UserError(explained) from e

    def before_instantiate_classes(self) -> None:
        # LightningCLI lays a checkpoint's hyperparameters over the parsed config, the command line's included: a
        # `test --ckpt_path C --model.init_args.ais_temperatures 50000` would silently evaluate with the saved value.
        for key, value in self._explicit_model.items():
            self.config[self.subcommand][key] = value
        check_accelerator(cli_config_get(self, self.config, "trainer", default={}))
        if self.subcommand in TUNED_SUBCOMMANDS:
            tune_host()
        apply_run_name(cli_config_get(self, self.config, "trainer", default={}),
                       cli_config_get(self, self.config, "run_name"))

    def instantiate_trainer(self, **kwargs):
        """The configured Trainer, with :class:`ThrottledProgressBar` as its progress bar unless the config
        names one or turns the bar off (Lightning's default bar redraws every batch), :class:`StopReason` and
        :class:`ValidationSummary`."""
        from lightning.pytorch.callbacks import ProgressBar

        from lightning_gen.callbacks import StopReason, ThrottledProgressBar, ValidationSummary

        trainer = cli_config_get(self, self.config_init, "trainer", default={})
        callbacks = trainer.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        extra = []
        if trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            extra.append(ThrottledProgressBar())
        if not any(isinstance(c, StopReason) for c in callbacks):
            extra.append(StopReason())
        if not any(isinstance(c, ValidationSummary) for c in callbacks):
            extra.append(ValidationSummary())
        kwargs.setdefault("callbacks", [*callbacks, *extra])
        instance = super().instantiate_trainer(**kwargs)
        check_sync_batchnorm(instance, self.model, bool(trainer.get("sync_batchnorm")))
        place_run(instance)
        return instance

    def before_fit(self) -> None:
        log_run_facts(self.trainer, self.model, self.datamodule)


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
        raise UserError(
            f"sync_batchnorm is on and {type(model).__name__} has {layers} BatchNorm layers, but PyTorch synchronises "
            "BatchNorm only across GPU processes and this run is on the CPU. Add --trainer.sync_batchnorm false "
            "(each process then normalises its own batch), or train on GPUs.")


def check_accelerator(trainer) -> None:
    """Stop before Lightning's "No supported gpu backend found!" where the config asks for a GPU the machine lacks,
    naming the options that move the run to the CPU."""
    from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

    accelerator = trainer.get("accelerator")
    if accelerator not in ("gpu", "cuda"):
        return
    if CUDAAccelerator.is_available() or (accelerator == "gpu" and MPSAccelerator.is_available()):
        return
    fix = "Add --trainer.accelerator cpu to run on the CPU"
    devices, strategy = trainer.get("devices"), str(trainer.get("strategy") or "")
    if "ddp" in strategy or devices not in (None, 1, "1", "auto"):
        fix += (f" and --trainer.devices 2 for 2 CPU processes (the config's devices={devices} counts GPUs; DDP "
                "runs over gloo on the CPU)")
    if trainer.get("sync_batchnorm"):
        fix += "; models with BatchNorm also need --trainer.sync_batchnorm false"
    raise UserError(f"the config asks for accelerator {accelerator!r}, but this machine has no GPU.\n{fix}.")


def require_weights_only(config) -> None:
    """Pin the subcommand's ``weights_only`` to True, so Lightning reads ``--ckpt_path`` (and an SLURM ``hpc``
    checkpoint) weights-only whatever torch's default; ``--weights_only false`` is refused."""
    if config.get("weights_only") is False:
        raise UserError("--weights_only false: checkpoints are read weights-only, so that a file carrying pickled "
                        "code is refused unexecuted; checkpoints written by `fit` load that way. Drop the option.")
    config["weights_only"] = True


def explicit_model_options(argv: list[str], section) -> dict:
    """The ``--model.<key>`` options on the command line ``argv`` (``--model.init_args.k 5`` or ``...k=5``) with
    their parsed values from ``section``, the subcommand's config."""
    found = {}
    for token in argv:
        if token.startswith("--model.") and token != "--model.help":
            key = token[2:].split("=", 1)[0]
            try:
                found[key] = section[key]
            except KeyError:  # a shorthand jsonargparse expanded: left to Lightning
                continue
    return found


def check_ckpt_path(ckpt_path: str, trainer) -> None:
    """Stop where ``--ckpt_path`` names no file, listing the checkpoints the run (its ``default_root_dir``) has, or
    a file that does not read weights-only (:class:`~lightning_gen.app.run.CheckpointError`: refused unexecuted)."""
    if ckpt_path in SPECIAL_CKPT_PATHS or ckpt_path.startswith("registry:") or "://" in ckpt_path:
        return
    if Path(ckpt_path).is_file():
        read_checkpoint(Path(ckpt_path))
        return
    root = Path(trainer.get("default_root_dir") or os.getcwd())
    found = run_checkpoints(root)
    where = f"{shown_path(root)} (the run root: --trainer.default_root_dir, its last part replaced by --run_name)"
    if found:
        hint = f"Checkpoints under {where}, newest first:\n{listing(found)}"
    else:
        hint = (f"There are no checkpoints under {where} yet: `{PROG} fit` with the same configuration writes them "
                "to <default_root_dir>/lightning_logs/version_<n>/checkpoints/.")
        elsewhere = runs_like(Path(ckpt_path)) or runs_like(root)
        if elsewhere:
            hint += f"\nCheckpoints of runs with a similar name, newest first:\n{listing(elsewhere)}"
    raise UserError(f"--ckpt_path {ckpt_path}: no such file.\n{hint}")


def run_lightning(args: list[str] | None) -> int:
    GenCLI(
        GenerativeModule,
        ImageDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False, "prog": PROG,
                       **{command: {"default_config_files": [str(DEFAULT_CONFIG)]} for command in TRAINER_COMMANDS}},
        args=args,  # None: LightningCLI reads sys.argv itself
    )
    return 0


def apply_run_name(trainer_config, run_name: str | None) -> None:
    """``--run_name NAME``: the runs of this command go under ``runs/NAME`` (or ``<parent>/NAME`` of the configured
    ``trainer.default_root_dir``)."""
    if not run_name:
        return
    if Path(run_name).name != run_name or run_name in (".", ".."):
        raise UserError(f"--run_name {run_name!r}: give a folder name, not a path (set --trainer.default_root_dir "
                        "for another place)")
    root = trainer_config.get("default_root_dir")
    trainer_config["default_root_dir"] = str(Path(root).parent / run_name if root else Path("runs") / run_name)


def place_run(trainer) -> Path | None:
    """Put everything a training run writes into one run folder, whatever its loggers: ``<default_root_dir>/
    lightning_logs/version_N/`` with ``config.yaml``, ``checkpoints/``, ``samples/``, ``pictures/`` and, under W&B,
    ``wandb/`` and ``wandb_run.json``, and ``metrics.csv`` of every logged scalar whatever the loggers (a CSV logger
    is added beside W&B or TensorBoard, so the curve tools and an offline reader have the validation metrics).
    Returns the folder (None without loggers or under ``fast_dev_run``).

    The layout is Lightning's own for its CSV and TensorBoard loggers (their ``log_dir``), kept so older run folders
    and commands stay valid. A W&B logger first in the list would otherwise send the checkpoints to
    ``<save_dir>/<project>/<run id>/checkpoints`` and config.yaml to its shared ``save_dir``: it gets the next free
    version folder instead, and every ModelCheckpoint without a ``dirpath`` gets its ``checkpoints/`` (rank 0's choice
    is broadcast to the other ranks when the callback sets up)."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from lightning_gen.loggers import WandbLogger, metrics_csv_logger, run_folder, run_folder_name

    if not trainer.loggers or trainer.fast_dev_run:
        return None
    first = trainer.loggers[0]
    if isinstance(first, (TensorBoardLogger, CSVLogger)):
        folder = run_folder(trainer)
    else:
        versions = Path(trainer.default_root_dir) / "lightning_logs"
        folder = versions / f"version_{next_version(versions)}"
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(folder / "checkpoints")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.place(folder, run_folder_name(folder))
    if not any(isinstance(logger, CSVLogger) for logger in trainer.loggers):
        trainer.loggers = [*trainer.loggers, metrics_csv_logger(folder)]
    return folder


def next_version(folder: Path) -> int:
    """The next free N of the ``version_N`` folders in ``folder`` (Lightning's CSV/TensorBoard numbering)."""
    taken = [int(p.name[8:]) for p in folder.glob("version_*") if p.is_dir() and p.name[8:].isdigit()]
    return max(taken, default=-1) + 1


def log_run_facts(trainer, model, datamodule) -> None:
    """The model's parameter count and the data's ``dataset_id`` in every W&B run's config (rank 0)."""
    from lightning_gen.loggers import WandbLogger

    facts = {"num_params": sum(p.numel() for p in model.parameters()),
             "dataset_id": datamodule.dataset_id if isinstance(datamodule, ImageDataModule) else None}
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_hyperparams(facts)
