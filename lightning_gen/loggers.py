"""Weights & Biases logging that never prompts or hangs: offline unless credentials and a terminal say otherwise."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from lightning_gen.compat import wandb_run_if_started


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_wandb_mode() -> str:
    """``$WANDB_MODE`` when set; else "online" with credentials, else "offline" (W&B would otherwise prompt)."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if _has_wandb_credentials() else "offline"


class WandbLogger(_WandbLogger):
    """Lightning's ``WandbLogger``, choosing the mode by :func:`resolve_wandb_mode` and saying how to sync.

    Without credentials (and ``WANDB_MODE`` unset) the run is written offline under ``save_dir/wandb`` and the
    end of training prints the ``wandb sync`` command that uploads it later.
    """

    def __init__(self, *args, **kwargs) -> None:
        if kwargs.get("mode") is None:  # the CLI passes every wandb.init option, unset ones as None
            kwargs["mode"] = "offline" if kwargs.get("offline") else resolve_wandb_mode()
        if kwargs["mode"] == "offline" and not os.environ.get("WANDB_MODE"):
            rank_zero_info("W&B: no credentials found (WANDB_API_KEY or `wandb login`); logging offline.")
        os.environ.setdefault("WANDB_SILENT", "true")
        # Never block on a prompt: with no terminal W&B must not ask for a key.
        if not sys.stdin or not sys.stdin.isatty():
            os.environ.setdefault("WANDB_DISABLE_CODE", "true")
        super().__init__(*args, **kwargs)
        self._mode = kwargs["mode"]

    def finalize(self, status: str) -> None:
        super().finalize(status)
        run = wandb_run_if_started(self)
        if self._mode == "offline" and run is not None:
            rank_zero_info(f"W&B run saved offline in {run.dir}; upload it with:\n  wandb sync {Path(run.dir).parent}")
