"""Loading checkpoints safely: weights-only unpickling, so a checkpoint carrying code is refused unexecuted."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from lightning.pytorch.cli import instantiate_module

from lightning_gen.models.base import GenerativeModule


class CheckpointError(ValueError):
    """A file that is not a loadable lightning_gen checkpoint."""


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """Load a model from a Lightning checkpoint written by ``lightning_gen fit``, in eval mode.

    The class comes from the checkpoint's saved hyperparameters; nothing in the file is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save's zip archive, or a pickle
        raise CheckpointError(f"{path} is not a checkpoint: not a file written by torch.save "
                              "(write checkpoints with `python -m lightning_gen fit`)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds pickled objects other than tensors and plain data, so it was refused unexecuted "
            f"(weights-only loading). Only load checkpoints you trust with torch.load(weights_only=False). Detail: {e}"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated, or not a torch file?): {e}") from e
    hparams = dict(checkpoint.get("hyper_parameters") or {}) if isinstance(checkpoint, dict) else {}
    if "_class_path" not in hparams or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a lightning_gen checkpoint: it names no model class "
                              "(write checkpoints with `python -m lightning_gen fit`)")
    hparams.pop("_instantiator", None)
    model = instantiate_module(GenerativeModule, hparams)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(map_location).eval()
