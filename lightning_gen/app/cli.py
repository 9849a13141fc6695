"""Command line: LightningCLI for fit / validate / test / predict, plus the suite's own commands.

    lightning-gen fit --config configs/fvsbn_digits.yaml
    lightning-gen fit --model FVSBN --data Digits --trainer.max_epochs 5
    lightning-gen sample CHECKPOINT --num-samples 64 --out grid.png
    lightning-gen benchmark CHECKPOINT [CHECKPOINT ...] [--num-samples N] [--devices 2 --strategy ddp]
    lightning-gen leaderboard [--db results/leaderboard.sqlite] [--out results/leaderboard/index.html]

(``python -m lightning_gen`` is the same program.) The Lightning commands live in
:mod:`~lightning_gen.app.trainer_cli`; every other command is a module with ``main(argv)`` in :data:`COMMANDS`,
imported only when it runs, so ``--help`` and each command start without loading the others.

A mistake in how a command is called ends in a few lines that name the fix, with exit status 2 (1 where the call
was right but the machine lacks something, such as the data files), and no traceback: the mistake is a
:class:`UserError`, or one of the library's own exceptions that :func:`user_error` knows to be one, caught once, at
the top of :func:`main`. ``--debug`` (or ``LIGHTNING_GEN_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable

PROG = "lightning-gen"
DEBUG_ENV = "LIGHTNING_GEN_DEBUG"
#: LightningCLI's subcommands, as ``--help`` describes them.
TRAINER_COMMANDS = {
    "fit": "train a model: --config configs/<model>_<data>.yaml, or --model CLASS --data CLASS",
    "validate": "validation-split metrics of a model (--ckpt_path CHECKPOINT)",
    "test": "test-split metrics of a checkpoint, the NLL in nats and bits/dim among them (--ckpt_path CHECKPOINT)",
    "predict": "per-image log-likelihood (likelihood models) or fresh samples, over the test split",
}
#: How each command names the data root, for the message of missing data files.
DATA_ROOT_FLAGS = {**dict.fromkeys(TRAINER_COMMANDS, "--data.init_args.root"),
                   **dict.fromkeys(("benchmark", "probe", "pictures"), "--data-root")}


class UserError(Exception):
    """A mistake in how a command was called, or something the machine lacks, with the fix in the message.

    :func:`main` prints the message alone (no traceback) and exits with ``exit_code``: 2 for a usage mistake, 1
    where the call was right but the machine lacks something.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _lazy_main(module: str) -> Callable[[list[str]], int]:
    """``module.main``, imported only when its command runs (keeps ``--help`` and ``fit`` start-up light)."""
    return lambda argv: importlib.import_module(module).main(argv)


#: Commands beside LightningCLI's subcommands: name -> (what it does, main(argv) returning an exit code).
COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "sample": ("a PNG grid of samples from a checkpoint or run folder", _lazy_main("lightning_gen.app.sample")),
    "benchmark": ("FID / IS / KID, test NLL and linear probe of checkpoints, stored for the leaderboard",
                  _lazy_main("lightning_gen.app.benchmark")),
    "leaderboard": ("build the HTML leaderboard from the results store", _lazy_main("lightning_gen.leaderboard")),
    "probe": ("linear-probe accuracy of a checkpoint's representation (encoders, GAN discriminators)",
              _lazy_main("lightning_gen.app.probe")),
    "pictures": ("latent-space pictures of an autoencoder or VAE checkpoint: reconstructions, prior samples, "
                 "interpolations", _lazy_main("lightning_gen.app.pictures")),
    "curve": ("a PNG of a run's validation curve from its metrics.csv, beside a published number",
              _lazy_main("lightning_gen.app.curve")),
    "set-lr": ("copy a training checkpoint so that it resumes at another learning rate",
               _lazy_main("lightning_gen.app.set_lr")),
    "check": ("run the model contract's checks on any importable model class, one line each",
              _lazy_main("lightning_gen.app.check")),
    "demo": ("train every configs/*_digits.yaml model, benchmark them and build the leaderboard (`make demo`)",
             _lazy_main("lightning_gen.app.demo")),
}


def closest(word: str, candidates: list[str] | set[str]) -> str | None:
    """The candidate ``word`` was probably meant to be (case-insensitive), or None."""
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


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


# ---- errors ------------------------------------------------------------------------------------------------------
def data_files_missing_message(error: Exception, command: str) -> str:
    """The missing-files message with the data-root option of ``command`` (the message itself names only the
    environment variable, which every command reads)."""
    flag = DATA_ROOT_FLAGS.get(command)
    return f"{error}\nOr pass {flag} PATH." if flag else str(error)


def user_error(error: BaseException, command: str) -> UserError | None:
    """``error`` as a :class:`UserError` when it is a mistake the user can fix from its message, else None."""
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    from lightning_gen.app.run import CheckpointError, DataConfigError
    from lightning_gen.data.base import DataFilesMissing

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
    if not command.startswith("-") and command not in TRAINER_COMMANDS and command not in COMMANDS:
        guess = closest(command, [*TRAINER_COMMANDS, *COMMANDS])
        print(f"{PROG} {command}: error: unknown command {command!r}" + (f"; did you mean {guess}?" if guess else "")
              + f"\n`{PROG} --help` lists the commands.", file=sys.stderr)
        return 2
    from lightning_gen.app.noise import silence_known_noise

    silence_known_noise()
    try:
        if command in COMMANDS:
            return COMMANDS[command][1](args[1:])
        from lightning_gen.app.trainer_cli import run_lightning

        return run_lightning(None if argv is None else args)
    except Exception as e:
        error = user_error(e, command)
        if error is None or debug_requested():
            raise
        print(f"{PROG} {command}: error: {error}", file=sys.stderr)
        return error.exit_code
