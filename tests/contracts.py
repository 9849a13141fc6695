"""The model contract for the tests: the checkers themselves live in :mod:`lightning_gen.contracts` (``lightning-gen
check`` runs them on a user's class) and are re-exported here; this module adds what only the tests need.

- Finding the models: :func:`model_classes` walks :mod:`lightning_gen.models`, so a new model file is tested
  without anyone listing it; :func:`build` makes one from its constructor defaults plus the data attributes the
  CLI links in (``image_shape``, ``num_levels``, ``num_classes``), at the smallest image side it accepts.
- Checkpoints: :class:`TinyImages` is a data module of random images of any shape and :func:`fit_one_step` runs
  ``lightning_gen fit`` for one step on it, writing the checkpoint and config.yaml a user's run writes;
  :class:`RecordOutputs` saves what the trained model computes, to compare with the model rebuilt from disk.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import torch
from lightning import Callback
from torch import Tensor

import lightning_gen.models
from lightning_gen.contracts import (Data, Subpixel, all_images, all_levels, allowed_values,  # noqa: F401
                                     assert_autoregressive, assert_causal, assert_conditionals_normalised,
                                     assert_log_prob_contract, assert_normalised, assert_raises,
                                     assert_sample_contract, assert_samples_follow_likelihood,
                                     conditional_dependencies, construct, dependency_order, generator, image_index,
                                     input_dependencies, label_batch, likelihood_is_exact, raster_order, sharpen,
                                     subpixels)
from lightning_gen.data.base import ImageDataModule
from lightning_gen.models.base import GenerativeModule, from_levels

# ---- the models ---------------------------------------------------------------------------------------------
def model_classes() -> list[type[GenerativeModule]]:
    """Every concrete model class defined in a module of :mod:`lightning_gen.models`, sorted by module and name.

    Concrete: public (no leading underscore) and implementing :meth:`GenerativeModule.sample` (the base classes
    ``GenerativeModule`` and ``LikelihoodModule`` do not).
    """
    found: dict[str, type[GenerativeModule]] = {}
    package = lightning_gen.models
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, GenerativeModule) and obj.__module__ == module.__name__
                    and not name.startswith("_") and not inspect.isabstract(obj)
                    and obj.sample is not GenerativeModule.sample):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


#: The data a model is tried on: binary grey; 4-level grey with labels the model may ignore; 4-level colour;
#: labelled binary grey with class conditioning asked for.
DATA = (Data("binary", 1, 2), Data("grey4", 1, 4, num_classes=3), Data("rgb4", 3, 4),
        Data("conditional", 1, 2, num_classes=3, conditional=True))
#: Image sides tried in turn: the smallest a model's nets accept is used (DCGAN nets need a halving: 8 at least).
SIDES = (4, 8, 16)


def takes_conditional(cls: type[GenerativeModule]) -> bool:
    """Whether the class has a ``conditional`` option (the base class's convention for class conditioning)."""
    return "conditional" in inspect.signature(cls.__init__).parameters


def smallest_side(cls: type[GenerativeModule], data: Data) -> tuple[int | None, list[str]]:
    """The smallest of :data:`SIDES` at which ``cls`` builds on ``data``, and the errors of the sides that failed."""
    errors = []
    for side in SIDES:
        try:
            construct(cls, data, side)
            return side, errors
        except Exception as e:  # noqa: BLE001  (the caller judges the kind of error)
            errors.append(f"{side}x{side}: {type(e).__name__}: {e}")
    return None, errors


def build(cls: type[GenerativeModule], data: Data, seed: int = 0) -> GenerativeModule:
    """``cls`` on ``data`` at its smallest accepted side; fails the test, quoting the errors, if it builds at none."""
    side, errors = smallest_side(cls, data)
    if side is None:
        raise AssertionError(f"{cls.__name__} cannot be built from its defaults on {data} data at any side of "
                             f"{SIDES}:\n" + "\n".join(errors))
    return construct(cls, data, side, seed)


# ---- checkpoints -------------------------------------------------------------------------------------------
class TinyImages(ImageDataModule):
    """Random images of any shape, levels and classes, so that ``lightning_gen fit`` can train any model a step on
    a tiny shape: ``--data contracts.TinyImages --data.image_shape [1,4,4] --data.num_levels 2``.

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
    from lightning_gen.app.cli import main

    with mock.patch.object(sys, "argv", ["lightning_gen"]):  # LightningCLI warns of pytest's own arguments
        main(["fit", "--model", model, *model_args, *data, "--trainer.max_steps", "1",
              "--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_progress_bar",
              "false", "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu",
              "--trainer.devices", "1", "--trainer.default_root_dir", str(root),
              "--trainer.callbacks", "contracts.RecordOutputs", "--trainer.callbacks.dirpath", str(root)])
    (checkpoint,) = root.glob("checkpoints/*.ckpt")
    return checkpoint


def assert_same_outputs(expected: dict[str, Tensor], model: GenerativeModule) -> None:
    """``model`` has the state, samples and likelihoods recorded in ``expected`` (see :func:`model_outputs`)."""
    got = model_outputs(model)
    assert sorted(got) == sorted(expected), f"state dict keys differ: {sorted(set(got) ^ set(expected))}"
    for key, value in expected.items():
        assert torch.equal(got[key], value), f"{key} differs"
