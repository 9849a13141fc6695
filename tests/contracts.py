"""The model contract's checkers, shared by the contract tests, the family tests and the add-a-model test.

- Finding the models: :func:`model_classes` walks :mod:`lightning_gen.models`, so a new model file is tested
  without anyone listing it; :func:`build` makes one from its constructor defaults plus the data attributes the
  CLI links in (``image_shape``, ``num_levels``, ``num_classes``), at the smallest image side it accepts.
- Samples and likelihoods: :func:`assert_sample_contract`, :func:`assert_log_prob_contract`,
  :func:`assert_normalised` (every image of a tiny space, :func:`all_images`) and
  :func:`assert_samples_follow_likelihood`.
- Causality: :func:`input_dependencies` (input gradients of a net's per-sub-pixel outputs) and
  :func:`conditional_dependencies` (level changes of uint8 images against per-sub-pixel log-conditionals) give
  dependency fields; :func:`assert_causal` checks them against an ordering, :func:`dependency_order` finds one.
  :func:`assert_autoregressive` is the whole check for a model's ``log_conditionals``.
- Checkpoints: :class:`TinyImages` is a data module of random images of any shape and :func:`fit_one_step` runs
  ``lightning_gen fit`` for one step on it, writing the checkpoint and config.yaml a user's run writes;
  :class:`RecordOutputs` saves what the trained model computes, to compare with the model rebuilt from disk.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import pkgutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import torch
from lightning import Callback
from torch import Tensor

import lightning_gen.models
from lightning_gen.data.base import ImageDataModule
from lightning_gen.models.base import GenerativeModule, NoLikelihoodError, from_levels, to_levels

Subpixel = tuple[int, int, int]  # (channel, row, column)


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


@dataclass(frozen=True)
class Data:
    """The data attributes a data module links into a model, and whether to ask for class conditioning (through
    the model's ``conditional`` option, where it has one)."""

    name: str
    channels: int
    num_levels: int
    num_classes: int = 0
    conditional: bool = False

    def __str__(self) -> str:
        return self.name


#: The data a model is tried on: binary grey; 4-level grey with labels the model may ignore; 4-level colour;
#: labelled binary grey with class conditioning asked for.
DATA = (Data("binary", 1, 2), Data("grey4", 1, 4, num_classes=3), Data("rgb4", 3, 4),
        Data("conditional", 1, 2, num_classes=3, conditional=True))
#: Image sides tried in turn: the smallest a model's nets accept is used (DCGAN nets need a halving: 8 at least).
SIDES = (4, 8, 16)


def takes_conditional(cls: type[GenerativeModule]) -> bool:
    """Whether the class has a ``conditional`` option (the base class's convention for class conditioning)."""
    return "conditional" in inspect.signature(cls.__init__).parameters


def construct(cls: type[GenerativeModule], data: Data, shape: Sequence[int] | int, seed: int = 0) -> GenerativeModule:
    """``cls`` from its constructor defaults plus the linked data attributes (and ``conditional=True`` for
    conditional data), seeded, in eval mode. ``shape``: ``(C, H, W)``, or a side (``data.channels`` x side x side)."""
    if isinstance(shape, int):
        shape = (data.channels, shape, shape)
    options = {"conditional": True} if data.conditional else {}
    torch.manual_seed(seed)
    model = cls(image_shape=tuple(shape), num_levels=data.num_levels, num_classes=data.num_classes, **options)
    return model.eval()


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


def sharpen(model: GenerativeModule, factor: float = 2.0) -> GenerativeModule:
    """Scale every parameter by ``factor``: larger weights than the initialisation's give conditionals far from
    uniform and outputs that vary, so that a check cannot pass by the model being nearly uniform or constant.
    Buffers (masks, running statistics) are untouched."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)
    return model


def label_batch(model: GenerativeModule, n: int) -> Tensor | None:
    """Labels ``0, 1, ..., num_classes - 1, 0, ...`` for a class-conditional model, else None."""
    return torch.arange(n) % model.num_classes if model.conditional else None


def likelihood_is_exact(model: GenerativeModule) -> bool:
    """Whether ``log_prob`` is exact rather than a stochastic estimate (the VAE's importance-weighted one): two
    evaluations of the same images under different global random states agree bit for bit."""
    x = torch.zeros(2, *model.image_shape, dtype=torch.uint8)
    labels = label_batch(model, 2)
    with torch.no_grad():
        torch.manual_seed(0)
        first = model.log_prob(x, labels)
        torch.manual_seed(1)
        return torch.equal(first, model.log_prob(x, labels))


# ---- tiny spaces ---------------------------------------------------------------------------------------------
def all_levels(shape: Sequence[int], num_levels: int) -> Tensor:
    """Every image of ``shape`` ``(C, H, W)`` as integer levels ``(num_levels ** D, C, H, W)``: image ``k``'s
    levels are the base-``num_levels`` digits of ``k`` over the sub-pixels in memory order ``(C, H, W)``, the first
    most significant (so :func:`image_index` inverts it)."""
    c, h, w = shape
    return torch.tensor(list(itertools.product(range(num_levels), repeat=c * h * w))).view(-1, c, h, w)


def all_images(shape: Sequence[int], num_levels: int) -> Tensor:
    """Every uint8 image of ``shape`` on ``num_levels`` levels, in the order of :func:`all_levels`."""
    return from_levels(all_levels(shape, num_levels), num_levels)


def image_index(levels: Tensor, num_levels: int) -> Tensor:
    """The position in :func:`all_images` of each image of integer ``levels`` ``(N, C, H, W)``."""
    digits = levels.flatten(1)
    return (digits * num_levels ** torch.arange(digits.shape[1] - 1, -1, -1)).sum(1)


# ---- samples and likelihoods -------------------------------------------------------------------------------------
def allowed_values(num_levels: int) -> set[int]:
    """The uint8 values a model on ``num_levels`` levels may produce (binary data: 0 and 255)."""
    return set(from_levels(torch.arange(num_levels), num_levels).tolist())


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_sample_contract(model: GenerativeModule, n: int = 6) -> None:
    """``sample(n)``: uint8 ``(n, C, H, W)`` on the data's levels; the same images for the same seeded generator
    whatever the global random state, other images for another seed; labels honoured by a class-conditional
    model (and checked), refused by any other."""
    images = model.sample(n)
    assert images.dtype == torch.uint8, f"sample returned {images.dtype}, not uint8"
    assert tuple(images.shape) == (n, *model.image_shape), f"sample returned shape {tuple(images.shape)}"
    outside = set(images.unique().tolist()) - allowed_values(model.num_levels)
    assert not outside, f"values {sorted(outside)} are not on the {model.num_levels} levels of the data"

    torch.manual_seed(1)
    a = model.sample(n, generator=generator(3))
    torch.manual_seed(2)  # the generator alone decides the draw
    assert torch.equal(a, model.sample(n, generator=generator(3))), "the same seeded generator gave other samples"
    assert len({bytes(im.flatten().tolist()) for im in a}) > 1, "the samples are all alike: this proves nothing"
    assert not torch.equal(a, model.sample(n, generator=generator(4))), "another seed gave the same samples"

    if model.conditional:
        first = model.sample(n, generator=generator(0), labels=torch.zeros(n, dtype=torch.long))
        last = model.sample(n, generator=generator(0), labels=torch.full((n,), model.num_classes - 1))
        assert not torch.equal(first, last), "the labels change nothing"
        with pytest.raises(ValueError, match=r"labels.*shape"):
            model.sample(n, labels=torch.zeros(n + 1, dtype=torch.long))
        with pytest.raises(ValueError, match="labels"):
            model.sample(2, labels=torch.tensor([0, model.num_classes]))
    else:
        with pytest.raises(ValueError, match="not class-conditional"):
            model.sample(2, labels=torch.zeros(2, dtype=torch.long))


def assert_log_prob_contract(model: GenerativeModule, x: Tensor) -> None:
    """``log_prob`` of uint8 images ``x``: ``(N,)`` finite log-probabilities of discrete images (so at most 0),
    a clear refusal of float images and of images of another shape, and (for an exact likelihood) each image's
    value independent of the batch it is in. A model without a likelihood says so with NoLikelihoodError."""
    labels = label_batch(model, x.shape[0])
    if not model.has_likelihood:
        with pytest.raises(NoLikelihoodError, match="no likelihood"):
            model.log_prob(x, labels)
        return
    with torch.no_grad():
        logp = model.log_prob(x, labels)
        assert logp.shape == (x.shape[0],) and logp.is_floating_point(), f"log_prob returned {logp.shape} {logp.dtype}"
        assert torch.isfinite(logp).all(), logp
        assert (logp <= 1e-4).all(), f"a discrete image has a probability above 1: log_prob {logp.max().item()}"
        if likelihood_is_exact(model):
            alone = torch.cat([model.log_prob(x[k : k + 1], None if labels is None else labels[k : k + 1])
                               for k in range(x.shape[0])])
            torch.testing.assert_close(alone, logp, rtol=1e-5, atol=1e-4, msg="log_prob depends on the batch")
        if model.conditional:
            other = (labels + 1) % model.num_classes
            assert not torch.allclose(model.log_prob(x, other), logp), "the labels change nothing"
    with pytest.raises(TypeError, match="uint8"):
        model.log_prob(x.float() / 255, labels)
    c, h, w = model.image_shape
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(torch.zeros(x.shape[0], c, h + 1, w + 1, dtype=torch.uint8), labels)


def assert_normalised(model: GenerativeModule, labels: int | None = None, *, repeats: int = 10) -> None:
    """The probabilities of every image of the model's (tiny) image space sum to one, given class ``labels`` for
    a class-conditional model: to 1e-5 for an exact likelihood; for a stochastic estimate of ``log p(x)``,
    whose exponential is unbiased for ``p(x)`` (an importance-weighted estimate is), within 4 standard errors of
    the mean of ``repeats`` seeded estimates. An exact likelihood must also be far from uniform (spread of
    ``log_prob`` over the images above 1 nat), or the sum would prove nothing."""
    x = all_images(model.image_shape, model.num_levels)
    y = None if labels is None else torch.full((x.shape[0],), labels)
    with torch.no_grad():
        if likelihood_is_exact(model):
            logp = model.log_prob(x, y).double()
            total = logp.exp().sum().item()
            assert abs(total - 1) < 1e-5, f"the probabilities of all {x.shape[0]} images sum to {total}"
            assert (logp.max() - logp.min()).item() > 1, "the model is nearly uniform: the sum proves nothing"
            return
        totals = []
        for seed in range(repeats):
            torch.manual_seed(seed)
            totals.append(model.log_prob(x, y).double().exp().sum().item())
    totals = torch.tensor(totals, dtype=torch.float64)
    mean, se = totals.mean().item(), (totals.std() / math.sqrt(repeats)).item()
    assert torch.isfinite(totals).all() and abs(mean - 1) < 4 * se + 1e-4, (
        f"the estimated probabilities of all {x.shape[0]} images sum to {mean} +- {se} (s.e.), not 1")


def assert_samples_follow_likelihood(model: GenerativeModule, n: int = 2000, labels: int | None = None) -> None:
    """``sample`` and ``log_prob`` describe one distribution: on the model's (tiny) image space, the total
    variation between the frequencies of ``n`` samples and the probabilities is below twice its expected value
    under correct sampling, ``0.5 sum_x sqrt(2 p (1 - p) / (pi n))``, and far below that of the uniform
    distribution."""
    x = all_images(model.image_shape, model.num_levels)
    with torch.no_grad():
        p = model.log_prob(x, None if labels is None else torch.full((x.shape[0],), labels)).double().exp()
    draw = model.sample(n, generator=generator(0), labels=None if labels is None else torch.full((n,), labels))
    freq = torch.bincount(image_index(to_levels(draw, model.num_levels), model.num_levels),
                          minlength=x.shape[0]).double() / n
    tv = 0.5 * (freq - p).abs().sum().item()
    expected = 0.5 * (2 * p * (1 - p) / (math.pi * n)).sqrt().sum().item()
    uniform = 0.5 * (p - 1 / x.shape[0]).abs().sum().item()
    assert uniform > 4 * expected, "the model is nearly uniform: the comparison proves nothing"
    assert tv < 2 * expected, f"total variation {tv:.4f} of samples from likelihood (sampling noise ~{expected:.4f})"


# ---- causality -----------------------------------------------------------------------------------------------
def raster_order(shape: Sequence[int]) -> Tensor:
    """``(C, H, W)``: each sub-pixel's position in raster order (rows, then columns, colours innermost)."""
    c, h, w = shape
    return torch.arange(c * h * w).view(h, w, c).permute(2, 0, 1)


def subpixels(shape: Sequence[int]) -> list[Subpixel]:
    """Every sub-pixel ``(channel, row, column)`` of ``shape``."""
    c, h, w = shape
    return list(itertools.product(range(c), range(h), range(w)))


def input_dependencies(fn: Callable[[Tensor], Tensor], x: Tensor,
                       outputs: Iterable[Subpixel] | None = None) -> dict[Subpixel, Tensor]:
    """Which inputs each output sub-pixel of a net depends on, from input gradients.

    ``fn`` maps float inputs ``x`` ``(B, C, H, W)`` to per-sub-pixel outputs ``(B, C, P, H, W)`` (``P`` logits
    each). Returns ``{(ch, i, j): (C, H, W) bool}`` for each of ``outputs`` (default: all): the input sub-pixels
    with a non-zero gradient at any of the ``B`` points, for a random mix of the ``P`` outputs. Use several random
    points: one point can hide a dependency behind an inactive unit, but a masked connection has an exactly zero
    gradient at every point.
    """
    x = x.detach().clone().requires_grad_()
    out = fn(x)
    if out.dim() != 5 or out.shape[:2] != x.shape[:2] or out.shape[3:] != x.shape[2:]:
        raise ValueError(f"fn must map (B, C, H, W) {tuple(x.shape)} to (B, C, P, H, W), got {tuple(out.shape)}")
    mix = torch.randn(out.shape[2], dtype=out.dtype, generator=generator(0))
    mixed = torch.einsum("bcphw,p->chw", out, mix)  # summed over the batch: the images are independent
    deps = {}
    for ch, i, j in subpixels(x.shape[1:]) if outputs is None else outputs:
        (grad,) = torch.autograd.grad(mixed[ch, i, j], x, retain_graph=True)
        deps[(ch, i, j)] = (grad != 0).any(0)
    return deps


def _moved(levels: Tensor, num_levels: int, where: Iterable[Subpixel], g: torch.Generator) -> Tensor:
    """``levels`` ``(B, C, H, W)`` repeated once per sub-pixel of ``where``, that sub-pixel moved to another level
    (a random one per image): ``(len(where) * B, C, H, W)``."""
    copies = []
    for ch, i, j in where:
        moved = levels.clone()
        shift = torch.randint(1, num_levels, (levels.shape[0],), generator=g)
        moved[:, ch, i, j] = (moved[:, ch, i, j] + shift) % num_levels
        copies.append(moved)
    return torch.cat(copies)


def conditional_dependencies(log_conditionals: Callable[[Tensor], Tensor], x: Tensor, num_levels: int,
                             *, atol: float = 1e-5) -> dict[Subpixel, Tensor]:
    """Which other sub-pixels each per-sub-pixel log-conditional depends on, from level changes of the images.

    ``log_conditionals`` maps uint8 images ``(B, C, H, W)`` to ``(B, C, H, W)``: the log-probability of each
    sub-pixel given those it conditions on. Each sub-pixel of the images ``x`` is moved to another level in turn;
    the term of sub-pixel ``o`` depends on sub-pixel ``s != o`` where it changed by more than ``atol`` in some
    image. (A term always changes with its own sub-pixel, the value it gives the probability of; whether it
    also *conditions* on it shows in :func:`assert_conditionals_normalised`.) Returns
    ``{(ch, i, j): (C, H, W) bool}`` like :func:`input_dependencies`.
    """
    shape, b = tuple(x.shape[1:]), x.shape[0]
    where = subpixels(shape)
    levels = to_levels(x, num_levels)
    with torch.no_grad():
        base = log_conditionals(x)
        moved = log_conditionals(from_levels(_moved(levels, num_levels, where, generator(0)), num_levels))
    changed = ((moved.view(len(where), b, *shape) - base).abs() > atol).any(1)  # (inputs, C, H, W): terms
    deps = {}
    for o in where:
        seen = changed[(slice(None), *o)].view(shape).clone()  # over the moved inputs, in `where` order
        seen[o] = False
        deps[o] = seen
    return deps


def assert_conditionals_normalised(log_conditionals: Callable[[Tensor], Tensor], x: Tensor, num_levels: int) -> None:
    """Each sub-pixel's term is a distribution over that sub-pixel's levels given the rest of the image: its
    exponential sums to one over the levels (a term that looked at its own value would not)."""
    shape, b = tuple(x.shape[1:]), x.shape[0]
    levels = to_levels(x, num_levels)
    where = subpixels(shape)
    variants = []
    for ch, i, j in where:
        for v in range(num_levels):
            moved = levels.clone()
            moved[:, ch, i, j] = v
            variants.append(moved)
    with torch.no_grad():
        terms = log_conditionals(from_levels(torch.cat(variants), num_levels)).double()
    terms = terms.view(len(where), num_levels, b, *shape)
    for k, s in enumerate(where):
        total = terms[(k, slice(None), slice(None), *s)].logsumexp(0)  # (B,)
        assert total.abs().max() < 1e-5, f"the term of sub-pixel {s} sums to {total.exp().tolist()} over its levels"


def assert_causal(deps: dict[Subpixel, Tensor], order: Tensor | None = None, *, sees_earlier: bool = True) -> None:
    """Each output sub-pixel depends on no input at or after it in ``order`` (``(C, H, W)`` positions, default
    raster order) and, with ``sees_earlier``, on some input before it (all but the first)."""
    for (ch, i, j), seen in deps.items():
        position = raster_order(seen.shape) if order is None else order
        now = position[ch, i, j]
        assert not seen[position >= now].any(), (
            f"sub-pixel {(ch, i, j)} depends on itself or a later sub-pixel:\n{seen.int()}\norder\n{position}")
        if sees_earlier and now > position.min():
            assert seen[position < now].any(), f"sub-pixel {(ch, i, j)} depends on no earlier sub-pixel"


def dependency_order(deps: dict[Subpixel, Tensor]) -> Tensor:
    """An ordering ``(C, H, W)`` in which the dependencies are causal (each sub-pixel depends only on earlier
    ones), by topological sort, the first ready sub-pixel in raster order first; fails on a cycle."""
    shape = tuple(next(iter(deps.values())).shape)
    parents = {s: {t for t in subpixels(shape) if deps[s][t]} for s in deps}
    order = torch.full(shape, -1, dtype=torch.long)
    done: set[Subpixel] = set()
    raster = raster_order(shape)
    for position in range(len(parents)):
        ready = [s for s in parents if s not in done and parents[s] <= done]
        assert ready, ("the per-sub-pixel terms depend on each other in a cycle: no ordering of the sub-pixels is "
                       f"causal; unordered: {sorted(set(parents) - done)}")
        first = min(ready, key=lambda s: raster[s])
        order[first] = position
        done.add(first)
    return order


def assert_autoregressive(model: GenerativeModule, x: Tensor) -> Tensor:
    """A model with an exact likelihood exposes its factorisation: ``log_conditionals(x, labels)`` ``(N, C, H, W)``,
    the log-probability of each sub-pixel given those before it in the model's ordering. Checks, at the images
    ``x``, that the terms sum to ``log_prob``, that each is normalised over its sub-pixel's levels, and that their
    dependencies admit an ordering (no cycle); returns that ordering ``(C, H, W)``."""
    terms_of = getattr(model, "log_conditionals", None)
    assert callable(terms_of), (
        f"{type(model).__name__} has an exact likelihood but no log_conditionals(x, labels=None) -> (N, C, H, W) "
        "giving each sub-pixel's log-probability given the sub-pixels before it: without it its causality cannot "
        "be checked")
    labels = label_batch(model, x.shape[0])

    def terms(images: Tensor) -> Tensor:
        return terms_of(images, None if labels is None else labels.repeat(images.shape[0] // x.shape[0]))

    with torch.no_grad():
        per_subpixel = terms(x)
        assert per_subpixel.shape == x.shape, f"log_conditionals gave {tuple(per_subpixel.shape)}, not {tuple(x.shape)}"
        torch.testing.assert_close(per_subpixel.flatten(1).sum(1), model.log_prob(x, labels), rtol=1e-5, atol=1e-4,
                                   msg="the log-conditionals do not sum to log_prob")
    assert_conditionals_normalised(terms, x, model.num_levels)
    deps = conditional_dependencies(terms, x, model.num_levels)
    order = dependency_order(deps)
    assert_causal(deps, order, sees_earlier=False)
    assert any(seen.any() for seen in deps.values()), "no sub-pixel depends on any other: this proves nothing"
    return order


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
