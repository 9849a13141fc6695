"""The model contract for the tests: the checkers themselves live in :mod:`lightning_gen.contracts` (``lightning-gen
check`` runs them on a user's class) and are re-exported here; this module adds what only the tests need.

- Finding the models: :func:`model_classes` walks :mod:`lightning_gen.models`, so a new model file is tested
  without anyone listing it; :func:`build` makes one from its constructor defaults plus the data attributes the
  CLI links in (``image_shape``, ``num_levels``, ``num_classes``), at the smallest image side it accepts.
- Checkpoints: the round trip of :mod:`lightning_gen.app.roundtrip` (``lightning-gen check`` runs it too), re-exported:
  :class:`TinyImages`, :func:`fit_one_step`, :class:`RecordOutputs`, :func:`assert_same_outputs`.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import lightning_gen.models
from lightning_gen.app.roundtrip import (RecordOutputs, TinyImages, assert_round_trip, assert_same_outputs,  # noqa: F401
                                         fit_one_step, model_outputs, tiny_data_args)
from lightning_gen.contracts import (Data, Subpixel, all_images, all_levels, allowed_values,  # noqa: F401
                                     assert_autoregressive, assert_causal, assert_conditionals_normalised,
                                     assert_log_prob_contract, assert_normalised, assert_raises,
                                     assert_sample_contract, assert_samples_follow_likelihood,
                                     conditional_dependencies, construct, dependency_order, generator, image_index,
                                     input_dependencies, label_batch, likelihood_is_exact, raster_order, sharpen,
                                     subpixels)
from lightning_gen.models.base import GenerativeModule


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

