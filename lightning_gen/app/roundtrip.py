"""The checkpoint round trip of the model contract: one step of ``lightning-gen fit`` on random images of any shape,
then the run opened from disk (:class:`~lightning_gen.app.run.Run`, weights-only) must give the trained model back:
the same state, seeded samples and seeded likelihoods.

``lightning-gen check`` runs it on a user's class (:func:`assert_round_trip`); ``tests/test_contract.py`` on every
model of the suite. :class:`TinyImages` is the data module of random images, :class:`RecordOutputs` the callback that
saves what the trained model computes, :func:`fit_one_step` the one-step run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import torch
from lightning import Callback
from torch import Tensor

from lightning_gen.compat import checkpoint_hparams_class
from lightning_gen.contracts import Data, generator, label_batch
from lightning_gen.data.base import ImageDataModule
from lightning_gen.models.base import GenerativeModule, from_levels


class TinyImages(ImageDataModule):
    """Random images of any shape, levels and classes, so that ``lightning_gen fit`` can train any model a step on
    a tiny shape: ``--data lightning_gen.app.roundtrip.TinyImages --data.image_shape [1,4,4] --data.num_levels 2``.

    Args:
        image_shape, num_levels, num_classes: the data attributes the CLI links into the model.
        size: images per split (train, val, test).
        seed: seed of the images and labels.
        batch_size: as for :class:`~lightning_gen.data.base.ImageDataModule`.
    """

    has_val_split = True

    def __init__(self, image_shape: Sequence[int] = (1, 4, 4), num_levels: int = 2, num_classes: int = 0,
                 size: int = 8, seed: int = 0, batch_size: int = 4) -> None:
        super().__init__(batch_size=batch_size)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_levels, self.num_classes = int(num_levels), int(num_classes)
        self.size, self.seed = int(size), int(seed)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        g = generator(self.seed + ("train", "val", "test").index(split))
        levels = torch.randint(self.num_levels, (self.size, *self.image_shape), generator=g)
        labels = (torch.randint(self.num_classes, (self.size,), generator=g) if self.num_classes
                  else torch.full((self.size,), -1))
        return from_levels(levels, self.num_levels), labels


def model_outputs(model: GenerativeModule) -> dict[str, Tensor]:
    """What a user gets from a model: its state, seeded samples, and (with a likelihood) the seeded
    ``log_prob`` of those samples."""
    labels = label_batch(model, 4)
    outputs = {f"state/{k}": v.detach().cpu().clone() for k, v in model.state_dict().items()}
    outputs["samples"] = model.sample(4, generator=generator(0), labels=labels).cpu()
    if model.has_likelihood:
        torch.manual_seed(0)
        with torch.no_grad():
            outputs["log_prob"] = model.log_prob(outputs["samples"], labels).cpu()
    return outputs


class RecordOutputs(Callback):
    """Saves :func:`model_outputs` of the trained model, in eval mode, to ``<dirpath>/outputs.pt`` at the end of
    ``fit``."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_fit_end(self, trainer, pl_module) -> None:
        was_training = pl_module.training
        pl_module.eval()
        self.dirpath.mkdir(parents=True, exist_ok=True)
        torch.save(model_outputs(pl_module), self.dirpath / "outputs.pt")
        pl_module.train(was_training)


def fit_one_step(model: str, data: Sequence[str], root: Path, model_args: Sequence[str] = ()) -> Path:
    """``lightning_gen fit`` (in this process) of ``model`` (a class path) for one step on ``data`` (``--data``
    arguments), into the run folder ``root``, recording :func:`model_outputs` of the trained model in
    ``root/outputs.pt``. Returns the checkpoint."""
    from lightning_gen.app.cli import main  # the CLI imports this module's callers: imported when used

    with mock.patch.object(sys, "argv", ["lightning_gen"]):  # LightningCLI warns of pytest's own arguments
        main(["fit", "--model", model, *model_args, *data, "--trainer.max_steps", "1",
              "--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_progress_bar",
              "false", "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu",
              "--trainer.devices", "1", "--trainer.default_root_dir", str(root),
              "--trainer.callbacks", f"{__name__}.RecordOutputs", "--trainer.callbacks.dirpath", str(root)])
    (checkpoint,) = root.glob("checkpoints/*.ckpt")
    return checkpoint


def assert_same_outputs(expected: dict[str, Tensor], model: GenerativeModule) -> None:
    """``model`` has the state, samples and likelihoods recorded in ``expected`` (see :func:`model_outputs`)."""
    got = model_outputs(model)
    assert sorted(got) == sorted(expected), f"state dict keys differ: {sorted(set(got) ^ set(expected))}"
    for key, value in expected.items():
        assert torch.equal(got[key], value), f"{key} differs"


@contextlib.contextmanager
def _quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def tiny_data_args(data: Data, side: int) -> list[str]:
    """``--data`` arguments of :class:`TinyImages` with ``data``'s channels, levels and classes at ``side``."""
    return ["--data", f"{__name__}.TinyImages", "--data.image_shape", f"[{data.channels},{side},{side}]",
            "--data.num_levels", str(data.num_levels), "--data.num_classes", str(data.num_classes)]


def assert_round_trip(cls: type[GenerativeModule], data: Data, side: int, root: Path, init_args: dict | None = None,
                      quiet: bool = True) -> None:
    """One step of ``lightning-gen fit`` of ``cls`` on :class:`TinyImages` into ``root``; the model opened from its
    checkpoint must compute what the trained one did. AssertionError, first line naming the fix, otherwise."""
    from lightning_gen.app.run import CheckpointError, Run, read_checkpoint

    init_args = {**(init_args or {}), **({"conditional": True} if data.conditional else {})}
    model = json.dumps({"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args})
    out = io.StringIO()
    with contextlib.ExitStack() as stack:
        if quiet:  # the trainer's own lines too: they go to logging handlers, not sys.stdout
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
            stack.enter_context(_quiet_logger("lightning.pytorch"))
            stack.enter_context(_quiet_logger("lightning.fabric"))
        try:
            checkpoint = fit_one_step(model, tiny_data_args(data, side), root)
        except SystemExit as e:  # the CLI's own short error
            raise AssertionError(f"lightning-gen fit of one step failed (exit {e.code}): "
                                 f"{out.getvalue().strip().splitlines()[-1:]}") from None
    expected = torch.load(root / "outputs.pt", weights_only=True)
    hparams = read_checkpoint(checkpoint)[1].get("hyper_parameters") or {}
    if checkpoint_hparams_class(hparams)[0] is None:
        raise AssertionError("its checkpoint names no model class: call self.save_hyperparameters() in __init__, so "
                             "that it records the class and its arguments")
    try:
        loaded = Run.open(checkpoint).model()
    except CheckpointError as e:
        raise AssertionError(f"its checkpoint does not load back: {e}") from None
    try:
        assert_same_outputs(expected, loaded)
    except AssertionError as e:
        raise AssertionError(f"the model loaded from its checkpoint differs from the trained one: {e} (keep every "
                             "tensor sample() and log_prob() use in parameters or registered buffers)") from None
