"""Every use of Lightning's private API in lightning_gen, in one place.

Written for Lightning 2.6 (``lightning==2.6.6`` pinned in development; ``pyproject.toml`` allows
``lightning>=2.6,<2.7``, :data:`SUPPORTED`). Each function names the private attribute it touches and why no public
API does the job. ``tests/test_compat.py`` checks on the installed Lightning that every one of them still exists and
behaves as assumed; run it first after moving the pin. Importing this module under a Lightning outside
:data:`SUPPORTED` warns (:class:`UnsupportedLightningWarning`) rather than fails, so checkpoints stay loadable.

Dropped after measuring (FVSBN on 8x8 digits, one CPU thread, ~9 ms a step): a plain-attribute fast path for the
``_current_fx_name`` writes Lightning makes around every hook (45 a step, 0.8 us each through
``nn.Module.__setattr__``: 36 us a step, 0.4%, inside the run-to-run spread of ``fit``), and the progress bar's
``_should_update`` override (now public hooks, :class:`~lightning_gen.callbacks.ThrottledProgressBar`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import lightning
from lightning.pytorch.cli import LightningCLI, instantiate_module
from lightning.pytorch.strategies import DDPStrategy
from packaging.specifiers import SpecifierSet
from packaging.version import Version

#: The Lightning versions this module was written and tested for.
SUPPORTED = (">=2.6", "<2.7")


class UnsupportedLightningWarning(UserWarning):
    """The installed Lightning is outside :data:`SUPPORTED`: the private attributes used here may have moved."""


def check_lightning_version(installed: str) -> None:
    """Warn, naming both versions and the fix, when ``installed`` is outside :data:`SUPPORTED`."""
    if Version(installed) not in SpecifierSet(",".join(SUPPORTED), prereleases=True):
        wanted = ",".join(SUPPORTED)
        warnings.warn(
            f"lightning_gen.compat was written for lightning{wanted}, but lightning {installed} is installed; the "
            f"private Lightning attributes it uses may have changed. Install a supported version "
            f"(pip install 'lightning{wanted}'), or run tests/test_compat.py against this one and update "
            f"lightning_gen/compat.py.", UnsupportedLightningWarning, stacklevel=2)


check_lightning_version(lightning.__version__)


def attached_trainer(module: lightning.LightningModule) -> lightning.Trainer | None:
    """The Trainer ``module`` is attached to, or None.

    ``LightningModule._trainer``: the public ``module.trainer`` raises instead of returning None, and the model code
    that asks (logging throttles, checkpoint hooks) also runs outside a Trainer (plain loops, ``load_from_checkpoint``).
    """
    return module._trainer


def logs_this_step(trainer: lightning.Trainer) -> bool:
    """Whether the loggers write this training batch's step metrics (true on every step of a ``fast_dev_run``).

    ``Trainer._logger_connector.should_update_logs``: Lightning's own rule (``log_every_n_steps`` counted in batches
    that stepped, plus the last step before a stop), which no public attribute gives: ``global_step`` counts every
    optimizer step, two a batch for a GAN. Falls back to True (log every step) if the attribute disappears.
    """
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True) or trainer.fast_dev_run)


def ddp_find_unused_parameters(strategy: Any) -> bool:
    """Turn on ``find_unused_parameters`` of a DDP strategy that has not wrapped the model yet; True if it was off.

    ``DDPStrategy._ddp_kwargs``: the keyword arguments it passes to ``DistributedDataParallel``. Publicly they are
    set only when the strategy is built (``strategy="ddp_find_unused_parameters_true"``), but a model whose backward
    passes each reach part of it needs the flag whatever strategy the config names. Returns False (and changes
    nothing) for other strategies or if the attribute disappears; the caller checks the wrapped model.
    """
    kwargs = getattr(strategy, "_ddp_kwargs", None)
    if not isinstance(strategy, DDPStrategy) or not isinstance(kwargs, dict) or kwargs.get("find_unused_parameters"):
        return False
    kwargs["find_unused_parameters"] = True
    return True


def wandb_run_if_started(logger: Any) -> Any | None:
    """The W&B run of a ``WandbLogger`` if one was started, else None, without starting one.

    ``WandbLogger._experiment``: the public ``logger.experiment`` starts a run when there is none, which at the end
    of training (where this is asked) would create an empty run.
    """
    return logger._experiment


def cli_config_get(cli: LightningCLI, config: Any, key: str, default: Any = None) -> Any:
    """``config[key]`` of a LightningCLI config, looked up inside the subcommand's section when there is one.

    ``LightningCLI._get``: the parsed config nests everything under the subcommand (``config.fit.trainer``) when
    run with one and not otherwise; this is Lightning's own resolution of the two layouts.
    """
    return cli._get(config, key, default)


def checkpoint_hparams_class(hparams: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``(class_path, init_args)`` of a model's saved hyperparameters; class_path is None where none was saved.

    The ``_class_path`` and ``_instantiator`` keys: LightningCLI's instantiator writes them into the hparams of a
    model it builds (so ``load_from_checkpoint`` can find the subclass). ``init_args`` is everything else.
    """
    init_args = {k: v for k, v in hparams.items() if k not in ("_class_path", "_instantiator")}
    return hparams.get("_class_path"), init_args


def instantiate_class_path(base: type, class_path: str, init_args: Mapping[str, Any]) -> Any:
    """Build ``class_path`` from ``init_args`` the way LightningCLI would: jsonargparse checks the argument types
    and refuses a class that is not a subclass of ``base``.

    ``lightning.pytorch.cli.instantiate_module`` selects subclass mode by the private ``_class_path`` key.
    """
    return instantiate_module(base, {"_class_path": class_path, **init_args})


def wandb_logger_place(logger: Any, save_dir: str, name: str | None = None) -> None:
    """Point a ``WandbLogger`` that has not started its run at ``save_dir`` (and give the run the display name
    ``name`` where the config set none).

    ``WandbLogger._save_dir`` and ``WandbLogger._wandb_init``: both are fixed at construction, where the CLI does not
    know the run folder yet (it depends on the trainer's ``default_root_dir``, ``--run_name`` and the other loggers);
    no public setter exists. Raises RuntimeError once the run has started (its files are already elsewhere).
    """
    if logger._experiment is not None:
        raise RuntimeError("the W&B run has started already; its folder cannot move")
    logger._save_dir = save_dir
    logger._wandb_init["dir"] = save_dir
    if name is not None and not logger._wandb_init.get("name"):
        logger._wandb_init["name"] = logger._name = name
