"""``lightning-gen set-lr``: a copy of a training checkpoint whose optimizer resumes at another learning rate.

    lightning-gen set-lr --ckpt IN.ckpt --lr 0.0005 --out OUT.ckpt

A stage of a step schedule run as resumed fits, for models without a scheduler option (see configs/repro/vae_*.yaml):
only the learning rate of each optimizer's parameter groups changes; weights, moments and counters are kept. The
checkpoint is read weights-only, as every command reads one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lightning_gen.app.cli import PROG, UserError
from lightning_gen.app.run import read_checkpoint


def set_lr(checkpoint: dict, lr: float) -> dict:
    """``checkpoint`` with every optimizer parameter group at learning rate ``lr`` (in place; returned)."""
    if not checkpoint.get("optimizer_states"):
        raise ValueError("it holds no optimizer state: it is not a training checkpoint (written by `fit`)")
    for state in checkpoint["optimizer_states"]:
        for group in state["param_groups"]:
            group["lr"] = lr
    return checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} set-lr", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, required=True, help="a training checkpoint (with optimizer state)")
    p.add_argument("--lr", type=float, required=True, help="the learning rate the copy resumes at")
    p.add_argument("--out", type=Path, required=True, help="where the copy is written")
    args = p.parse_args(argv)
    if not args.ckpt.is_file():
        raise UserError(f"{args.ckpt}: no such checkpoint file")
    _, checkpoint = read_checkpoint(args.ckpt)
    try:
        set_lr(checkpoint, args.lr)
    except ValueError as e:
        raise UserError(f"{args.ckpt}: {e}") from e
    torch.save(checkpoint, args.out)
    print(f"epoch={checkpoint.get('epoch')} global_step={checkpoint.get('global_step')} lr={args.lr:g} -> {args.out}")
    return 0
