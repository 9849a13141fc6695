"""Command line: LightningCLI for fit / validate / test / predict, plus the suite's own commands.

    lightning-gen fit --config configs/fvsbn_digits.yaml
    lightning-gen fit --model FVSBN --data Digits --trainer.max_epochs 5
    lightning-gen sample CHECKPOINT --num-samples 64 --out grid.png
    lightning-gen benchmark CHECKPOINT [CHECKPOINT ...] [--num-samples N] [--devices 2 --strategy ddp]
    lightning-gen leaderboard [--db results/leaderboard.sqlite] [--out results/leaderboard/index.html]

(``python -m lightning_gen`` is the same program.) Any model pairs with any data module: the data module's
``image_shape``, ``num_levels`` and ``num_classes`` are linked into the model's constructor, so a config names only
the model's own options.

A mistake in how a command is called ends in a few lines that name the fix, with exit status 2 (1 where the call
was right but the machine lacks something, such as the data files), and no traceback: the mistake is a
:class:`UserError`, or one of the library's own exceptions that :func:`user_error` knows to be one, caught once, at
the top of :func:`main`. ``--debug`` (or ``LIGHTNING_GEN_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.warnings import PossibleUserWarning

import lightning_gen.data  # noqa: F401  (registers the data modules with the CLI)
import lightning_gen.models  # noqa: F401  (registers the models with the CLI)
from lightning_gen.app.run import CheckpointError, DataConfigError
from lightning_gen.app.runtime import tune_host
from lightning_gen.compat import cli_config_get
from lightning_gen.data.base import DataFilesMissing, ImageDataModule
from lightning_gen.models.base import GenerativeModule

PROG = "lightning-gen"
DEBUG_ENV = "LIGHTNING_GEN_DEBUG"
LINKED_DATA_ATTRIBUTES = ("image_shape", "num_levels", "num_classes")
#: Subcommands that train or evaluate over many steps, where the host tuning of :mod:`~lightning_gen.app.runtime`
#: pays; it changes process-wide allocator settings, so nothing else gets it.
TUNED_SUBCOMMANDS = ("fit", "validate", "test")
#: LightningCLI's subcommands, as ``--help`` describes them.
TRAINER_COMMANDS = {
    "fit": "train a model: --config configs/<model>_<data>.yaml, or --model CLASS --data CLASS",
    "validate": "validation-split metrics of a model (--ckpt_path CHECKPOINT)",
    "test": "test-split metrics of a checkpoint, the NLL in nats and bits/dim among them (--ckpt_path CHECKPOINT)",
    "predict": "per-image log-likelihood (likelihood models) or fresh samples, over the test split",
}
#: How each command names the data root, for the message of missing data files.
DATA_ROOT_FLAGS = {**dict.fromkeys(TRAINER_COMMANDS, "--data.init_args.root"), "benchmark": "--data-root"}
#: ``trainer.ckpt_path`` values that name no file (Lightning resolves them itself).
SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")

#: Third-party messages that say nothing to a user of this suite, silenced by the CLI (and only these): (category,
#: regex the message starts with). A warning category filters :mod:`warnings`; ``logging.LogRecord`` filters
#: Lightning's info log.
KNOWN_NOISE: tuple[tuple[type, str], ...] = (
    # The CSV logger is the intended default; the TensorBoard one needs a package the suite does not install.
    (UserWarning, r"Starting from v1\.9\.0, `tensorboardX` has been removed as a dependency"),
    (logging.LogRecord, r"💡 Tip: For seamless cloud logging and experiment tracking, try installing \[litlogger\]"),
    # Lightning's own use of a torch name deprecated in torch 2.10, once per fit and per test.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # The data modules hold uint8 tensors in memory and batch with one index operation: workers only add IPC.
    (PossibleUserWarning, r"The '\w+_dataloader' does not have many workers"),
)


class UserError(Exception):
    """A mistake in how a command was called, or something the machine lacks, with the fix in the message.

    :func:`main` prints the message alone (no traceback) and exits with ``exit_code``: 2 for a usage mistake, 1
    where the call was right but the machine lacks something.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---- the Lightning commands ------------------------------------------------------------------------------------
class GenCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for name in LINKED_DATA_ATTRIBUTES:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="name of the run folder runs/<run_name> (replaces the last part of "
                                 "trainer.default_root_dir; default: the config's, e.g. runs/vae_digits)")
        self._option_parsers = [*getattr(self, "_option_parsers", []), parser]  # one per subcommand

    def parse_arguments(self, parser, args) -> None:
        # Raised only where the parser was made with exit_on_error=False (main does): a short message with the
        # fix instead of jsonargparse's usage dump.
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            argv = list(sys.argv[1:] if args is None else args)
            raise UserError(explain_parse_error(str(e), argv, self._option_names())) from e

    def _option_names(self) -> set[str]:
        names = {"help", "print_config", "config"}
        for parser in getattr(self, "_option_parsers", []):
            names |= set(parser.get_defaults(skip_validation=True).keys())
        return names

    def before_instantiate_classes(self) -> None:
        check_accelerator(cli_config_get(self, self.config, "trainer", default={}))
        ckpt_path = cli_config_get(self, self.config, "ckpt_path")
        if ckpt_path:
            check_ckpt_path(str(ckpt_path), cli_config_get(self, self.config, "trainer", default={}))
        if self.subcommand in TUNED_SUBCOMMANDS:
            tune_host()
        apply_run_name(cli_config_get(self, self.config, "trainer", default={}),
                       cli_config_get(self, self.config, "run_name"))

    def instantiate_trainer(self, **kwargs):
        """The configured Trainer, with :class:`ThrottledProgressBar` as its progress bar unless the config
        names one or turns the bar off (Lightning's default bar redraws every batch), and :class:`StopReason`."""
        from lightning.pytorch.callbacks import ProgressBar

        from lightning_gen.callbacks import StopReason, ThrottledProgressBar

        trainer = cli_config_get(self, self.config_init, "trainer", default={})
        callbacks = trainer.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        extra = []
        if trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            extra.append(ThrottledProgressBar())
        if not any(isinstance(c, StopReason) for c in callbacks):
            extra.append(StopReason())
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


def check_ckpt_path(ckpt_path: str, trainer) -> None:
    """Stop where ``--ckpt_path`` names no file, listing the checkpoints the run (its ``default_root_dir``) has."""
    if ckpt_path in SPECIAL_CKPT_PATHS or ckpt_path.startswith("registry:") or "://" in ckpt_path:
        return
    if Path(ckpt_path).is_file():
        return
    root = Path(trainer.get("default_root_dir") or os.getcwd())
    found = run_checkpoints(root)
    where = f"{_shown(root)} (the run's --trainer.default_root_dir)"
    if not found:
        hint = (f"There are no checkpoints under {where} yet: `{PROG} fit` with the same configuration writes them "
                "to <default_root_dir>/lightning_logs/version_<n>/checkpoints/.")
    else:
        shown = "\n".join(f"  {_shown(p)}" for p in found[:5])
        more = f"\n  ... and {len(found) - 5} more" if len(found) > 5 else ""
        hint = f"Checkpoints under {where}, newest first:\n{shown}{more}"
    raise UserError(f"--ckpt_path {ckpt_path}: no such file.\n{hint}")


def run_checkpoints(root: Path) -> list[Path]:
    """``*.ckpt`` files in the ``checkpoints/`` folders of a run root (as deep as Lightning's loggers put them),
    newest first."""
    found = {p for pattern in ("checkpoints/*.ckpt", "*/checkpoints/*.ckpt", "*/*/checkpoints/*.ckpt")
             for p in root.glob(pattern) if p.is_file()}
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---- parse errors: what was meant ------------------------------------------------------------------------------
def class_names(base: type) -> list[str]:
    """The classes of the package a ``--model`` / ``--data`` option may name (the base modules' interfaces aside)."""
    found, todo = set(), [base]
    while todo:
        for cls in todo.pop().__subclasses__():
            todo.append(cls)
            if cls.__module__.startswith("lightning_gen.") and not cls.__module__.endswith(".base") \
                    and not cls.__name__.startswith("_"):
                found.add(cls.__name__)
    return sorted(found)


def _closest(word: str, candidates: list[str] | set[str]) -> str | None:
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def _init_options(class_path: str) -> list[str]:
    """The constructor arguments of ``class_path`` (empty if it does not import)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        parameters = inspect.signature(cls).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
    return [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _given_option(argv: list[str], key: str) -> str | None:
    """The command-line option (name only) whose last component is ``key``, as the user typed it."""
    for token in argv:
        name = token.split("=", 1)[0]
        if name.startswith("--") and (name == f"--{key}" or name.endswith(f".{key}")):
            return name
    return None


def explain_parse_error(message: str, argv: list[str], known: set[str]) -> str:
    """A few lines for jsonargparse's parse error ``message``: what was wrong and, for a misspelt option or class
    name, what was probably meant (``known``: the parser's option names, without dashes)."""
    command = argv[0] if argv and argv[0] in TRAINER_COMMANDS else None
    help_hint = f"`{PROG} {command or 'fit'} --help` lists the options"
    # A class name that names no class: --model GANN, --data Digitz, class_path: GANN in a config.
    section = re.search(r'Parser key "(model|data)"', message)
    bad_class = re.search(r"dot import path string: (\S+)|has no attribute '(\w+)'", message)
    if section and bad_class:
        kind = section.group(1)
        name = (bad_class.group(1) or bad_class.group(2)).rpartition(".")[2]
        classes = class_names(GenerativeModule if kind == "model" else ImageDataModule)
        guess = _closest(name, classes)
        meant = f"; did you mean --{kind} {guess}?" if guess else ""
        return f"--{kind} {name}: no such {kind} class{meant}\n{kind.capitalize()} classes: {', '.join(classes)}."
    # An option a class does not take: --model.init_args.g_widht, or a misspelt key under init_args in a config.
    not_accepted = re.search(r"Option '([\w.]+)' is not accepted", message)
    if not_accepted:
        key = not_accepted.group(1).rpartition(".")[2]
        class_paths = re.findall(r"class_path[ =]'([\w.]+)'", message)
        owner = class_paths[-1] if class_paths else None
        options = _init_options(owner) if owner else []
        guess = _closest(key, options)
        typed = _given_option(argv, key)
        owner_name = owner.rpartition(".")[2] if owner else "the class"
        if typed:
            meant = f"; did you mean {typed[: -len(key)]}{guess}?" if guess else ""
            head = f"{typed}: {owner_name} takes no option {key!r}{meant}"
        else:
            meant = f"; did you mean {guess!r}?" if guess else ""
            head = f"a --config file gives {owner_name} the option {key!r}, which it does not take{meant}"
        listing = f"{owner_name}'s options: {', '.join(options)}." if options else help_hint + "."
        return f"{head}\n{listing}"
    # An option the parser does not know at all: --trainer.max_epohcs, --ckpt_pth.
    unrecognized = re.search(r"nrecognized arguments: (.+)", message)
    if unrecognized:
        lines = []
        for token in unrecognized.group(1).split():
            if not token.startswith("--"):
                continue
            name = token[2:].split("=", 1)[0]
            guess = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            lines.append(f"unknown option --{name}" + (f"; did you mean --{guess[0]}?" if guess else ""))
        if lines:
            return "\n".join(lines) + f"\n{help_hint}."
    # Anything else: jsonargparse's own message, shortened.
    lines = [line for line in message.splitlines() if line.strip()]
    shown = "\n".join(lines[:6]) + ("\n  ..." if len(lines) > 6 else "")
    return f"{shown}\n{help_hint}; --debug shows the parser's whole report."


# ---- errors, warnings, help ------------------------------------------------------------------------------------
def data_files_missing_message(error: DataFilesMissing, command: str) -> str:
    """The missing-files message with the data-root option of ``command`` (the message itself names only the
    environment variable, which every command reads)."""
    flag = DATA_ROOT_FLAGS.get(command)
    return f"{error}\nOr pass {flag} PATH." if flag else str(error)


def user_error(error: BaseException, command: str) -> UserError | None:
    """``error`` as a :class:`UserError` when it is a mistake the user can fix from its message, else None."""
    if isinstance(error, UserError):
        return error
    if isinstance(error, DataFilesMissing):
        return UserError(data_files_missing_message(error, command), exit_code=1)
    if isinstance(error, (CheckpointError, DataConfigError, MisconfigurationException)):
        return UserError(str(error))
    return None


def debug_requested() -> bool:
    """Whether errors should show their traceback (``--debug``, which :func:`main` turns into the variable)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class _NoiseFilter(logging.Filter):
    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(p.match(record.getMessage()) for p in self.patterns)


def silence_known_noise() -> None:
    """Filter the messages of :data:`KNOWN_NOISE` out of this process (and nothing else)."""
    log_patterns = []
    for category, pattern in KNOWN_NOISE:
        if category is logging.LogRecord:
            log_patterns.append(pattern)
        else:
            warnings.filterwarnings("ignore", message=pattern, category=category)
    noise = _NoiseFilter(log_patterns)
    # Handler filters see the records of child loggers too (Lightning logs through its modules' loggers); the root
    # logger's handlers print them where an application configured logging.
    for name in ("lightning.pytorch", "lightning.fabric", None):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _NoiseFilter) for f in handler.filters):
                handler.addFilter(noise)


def _lazy_main(module: str) -> Callable[[list[str]], int]:
    """``module.main``, imported only when its command runs (keeps ``fit`` start-up light)."""
    return lambda argv: importlib.import_module(module).main(argv)


#: Commands beside LightningCLI's subcommands: name -> (what it does, main(argv) returning an exit code).
COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "sample": ("a PNG grid of samples from a checkpoint or run folder", _lazy_main("lightning_gen.app.sample")),
    "benchmark": ("FID / IS / KID, test NLL and linear probe of checkpoints, stored for the leaderboard",
                  _lazy_main("lightning_gen.app.benchmark")),
    "leaderboard": ("build the HTML leaderboard from the results store", _lazy_main("lightning_gen.leaderboard")),
}


def overview() -> str:
    """What ``lightning-gen --help`` prints: every command with what it does."""
    purposes = {**TRAINER_COMMANDS, **{name: purpose for name, (purpose, _) in COMMANDS.items()}}
    width = max(map(len, purposes)) + 2
    rows = "\n".join(f"  {name:<{width}}{purpose}" for name, purpose in purposes.items())
    return (f"usage: {PROG} [--debug] COMMAND [options]\n\n"
            "Train, sample, benchmark and rank deep generative models (PyTorch Lightning).\n\n"
            f"commands:\n{rows}\n\n"
            f"`{PROG} COMMAND --help` lists a command's options; `{PROG} fit --model.help GAN` a model's.\n"
            f"--debug (or {DEBUG_ENV}=1) shows the full traceback of an error.\n")


def _run_lightning(args: list[str] | None) -> int:
    GenCLI(
        GenerativeModule,
        ImageDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False, "prog": PROG},
        args=args,  # None: LightningCLI reads sys.argv itself
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in args:
        # The variable reaches the processes Lightning launches for DDP; they re-read sys.argv, so it leaves that too.
        os.environ[DEBUG_ENV] = "1"
        args = [a for a in args if a != "--debug"]
        if argv is None:
            sys.argv = [sys.argv[0], *args]
    if not args or args[0] in ("-h", "--help"):
        print(overview(), end="", file=sys.stdout if args else sys.stderr)
        if not args:
            print(f"{PROG}: error: name a command", file=sys.stderr)
        return 0 if args else 2
    command = args[0]
    silence_known_noise()
    try:
        if command in COMMANDS:
            return COMMANDS[command][1](args[1:])
        if not command.startswith("-") and command not in TRAINER_COMMANDS:
            guess = _closest(command, [*TRAINER_COMMANDS, *COMMANDS])
            raise UserError(f"unknown command {command!r}" + (f"; did you mean {guess}?" if guess else "")
                            + f"\n`{PROG} --help` lists the commands.")
        return _run_lightning(None if argv is None else args)
    except Exception as e:
        error = user_error(e, command)
        if error is None or debug_requested():
            raise
        print(f"{PROG} {command}: error: {error}", file=sys.stderr)
        return error.exit_code


# ---- the run folder ----------------------------------------------------------------------------------------------
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
    ``wandb/`` and ``wandb_run.json``. Returns the folder (None without loggers or under ``fast_dev_run``).

    The layout is Lightning's own for its CSV and TensorBoard loggers (their ``log_dir``), kept so older run folders
    and commands stay valid. A W&B logger first in the list would otherwise send the checkpoints to
    ``<save_dir>/<project>/<run id>/checkpoints`` and config.yaml to its shared ``save_dir``: it gets the next free
    version folder instead, and every ModelCheckpoint without a ``dirpath`` gets its ``checkpoints/`` (rank 0's choice
    is broadcast to the other ranks when the callback sets up)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from lightning_gen.loggers import WandbLogger, run_folder, run_folder_name

    if not trainer.loggers or trainer.fast_dev_run:
        return None
    first = trainer.loggers[0]
    if isinstance(first, (TensorBoardLogger, CSVLogger)):
        folder = run_folder(trainer)
    else:
        versions = Path(trainer.default_root_dir) / "lightning_logs"
        folder = versions / f"version_{next_version(versions)}"
        for callback in trainer.checkpoint_callbacks:
            if getattr(callback, "dirpath", True) is None:
                callback.dirpath = str(folder / "checkpoints")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.place(folder, run_folder_name(folder))
    return folder


def next_version(folder: Path) -> int:
    """The next free N of the ``version_N`` folders in ``folder`` (Lightning's CSV/TensorBoard numbering)."""
    taken = [int(p.name[8:]) for p in folder.glob("version_*") if p.is_dir() and p.name[8:].isdigit()]
    return max(taken, default=-1) + 1


def log_run_facts(trainer, model, datamodule) -> None:
    """The model's parameter count and the data's ``dataset_id`` in every W&B run's config (rank 0)."""
    from lightning_gen.loggers import WandbLogger

    facts = {"num_params": sum(p.numel() for p in model.parameters()),
             "dataset_id": getattr(datamodule, "dataset_id", None)}
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_hyperparams(facts)
