"""The model contract's checkers: what every model of the suite, and any model of yours, must do, in plain torch.

- Building: :class:`Data` names the data attributes the CLI links into a model; :func:`construct` makes one from
  its constructor defaults plus those, seeded, in eval mode; :func:`sharpen` scales its weights away from a
  nearly uniform initialisation.
- Samples and likelihoods: :func:`assert_sample_contract`, :func:`assert_log_prob_contract`,
  :func:`assert_normalised` (every image of a tiny space, :func:`all_images`) and
  :func:`assert_samples_follow_likelihood` (which sharpens the weights itself until the comparison means something).
- Causality: :func:`input_dependencies` (input gradients of a net's per-sub-pixel outputs) and
  :func:`conditional_dependencies` (level changes of uint8 images against per-sub-pixel log-conditionals) give
  dependency fields; :func:`assert_causal` checks them against an ordering, :func:`dependency_order` finds one.
  :func:`assert_autoregressive` is the whole check for a model's ``log_conditionals``.

Each checker raises AssertionError whose message's first line says what is wrong; ``lightning-gen check``
(:mod:`lightning_gen.app.check`) runs them on any importable class, and ``tests/contracts.py`` on every model of
:mod:`lightning_gen.models`.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_gen.models.base import GenerativeModule, NoLikelihoodError, from_levels, to_levels

Subpixel = tuple[int, int, int]  # (channel, row, column)


def assert_raises(call: Callable[[], object], error: type[BaseException], pattern: str, what: str) -> None:
    """``call()`` raises ``error`` with a message matching ``pattern``; else AssertionError naming ``what``."""
    try:
        call()
    except error as e:
        assert re.search(pattern, str(e)), f"{what} raised {type(e).__name__}({e}), expected a message matching {pattern!r}"
        return
    raise AssertionError(f"{what} raised no {error.__name__}")


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


def construct(cls: type[GenerativeModule], data: Data, shape: Sequence[int] | int, seed: int = 0) -> GenerativeModule:
    """``cls`` from its constructor defaults plus the linked data attributes (and ``conditional=True`` for
    conditional data), seeded, in eval mode. ``shape``: ``(C, H, W)``, or a side (``data.channels`` x side x side)."""
    if isinstance(shape, int):
        shape = (data.channels, shape, shape)
    options = {"conditional": True} if data.conditional else {}
    torch.manual_seed(seed)
    model = cls(image_shape=tuple(shape), num_levels=data.num_levels, num_classes=data.num_classes, **options)
    return model.eval()


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
        assert_raises(lambda: model.sample(n, labels=torch.zeros(n + 1, dtype=torch.long)), ValueError,
                      r"labels.*shape", f"sample({n}) with {n + 1} labels")
        assert_raises(lambda: model.sample(2, labels=torch.tensor([0, model.num_classes])), ValueError, "labels",
                      f"sample with label {model.num_classes} of {model.num_classes} classes")
    else:
        assert_raises(lambda: model.sample(2, labels=torch.zeros(2, dtype=torch.long)), ValueError,
                      "not class-conditional", "sample with labels, of a model that is not class-conditional,")


def assert_log_prob_contract(model: GenerativeModule, x: Tensor) -> None:
    """``log_prob`` of uint8 images ``x``: ``(N,)`` finite log-probabilities of discrete images (so at most 0),
    a clear refusal of float images and of images of another shape, and (for an exact likelihood) each image's
    value independent of the batch it is in. A model without a likelihood says so with NoLikelihoodError."""
    labels = label_batch(model, x.shape[0])
    if not model.has_likelihood:
        assert_raises(lambda: model.log_prob(x, labels), NoLikelihoodError, "no likelihood",
                      "log_prob of a model without a likelihood")
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
    assert_raises(lambda: model.log_prob(x.float() / 255, labels), TypeError, "uint8", "log_prob of float images")
    c, h, w = model.image_shape
    assert_raises(lambda: model.log_prob(torch.zeros(x.shape[0], c, h + 1, w + 1, dtype=torch.uint8), labels),
                  ValueError, "shape", "log_prob of images of another shape")


def assert_normalised(model: GenerativeModule, labels: int | None = None, *, repeats: int = 10) -> None:
    """The probabilities of every image of the model's (tiny) image space sum to one, given class ``labels`` for
    a class-conditional model: to 1e-5 for an exact likelihood; for a stochastic estimate of ``log p(x)``,
    whose exponential is unbiased for ``p(x)`` (an importance-weighted estimate is), within 4 standard errors of
    the mean of ``repeats`` seeded estimates; a bound's at most one. An exact likelihood must also be far from
    uniform (spread of ``log_prob`` over the images above 1 nat), or the sum would prove nothing."""
    x = all_images(model.image_shape, model.num_levels)
    y = None if labels is None else torch.full((x.shape[0],), labels)
    with torch.no_grad():
        if likelihood_is_exact(model):
            logp = model.log_prob(x, y).double()
            total = logp.exp().sum().item()
            assert abs(total - 1) < 1e-5, (f"the probabilities of all {x.shape[0]} images sum to {total:.6g}, not 1: "
                                            "normalise each conditional over its sub-pixel's levels")
            assert (logp.max() - logp.min()).item() > 1, "the model is nearly uniform: the sum proves nothing"
            return
        # (repeats, images): the global seed is set to 0, 1, .. before each estimate
        estimates = torch.stack([model.log_prob(x, y).double() for _ in map(torch.manual_seed, range(repeats))])
    if model.likelihood_kind == "bound":  # unbiased for the bound on log p(x): average it, less 4 s.e., per image
        lower = estimates.mean(0) - 4 * estimates.std(0) / math.sqrt(repeats)
        assert torch.isfinite(estimates).all() and lower.exp().sum() <= 1 + 1e-4, (
            f"the bound's probabilities of all {x.shape[0]} images sum to {lower.exp().sum()}, above 1: no bound")
        return
    totals = estimates.exp().sum(1)  # (repeats,)
    mean, se = totals.mean().item(), (totals.std() / math.sqrt(repeats)).item()
    assert torch.isfinite(totals).all() and abs(mean - 1) < 4 * se + 1e-4, (
        f"the estimated probabilities of all {x.shape[0]} images sum to {mean} +- {se} (s.e.), not 1")


def assert_samples_follow_likelihood(model: GenerativeModule, n: int = 2000, labels: int | None = None,
                                     *, max_factor: float = 64.0) -> None:
    """``sample`` and ``log_prob`` describe one distribution: on the model's (tiny) image space, the total
    variation between the frequencies of ``n`` samples and the probabilities is below twice its expected value
    under correct sampling, ``0.5 sum_x sqrt(2 p (1 - p) / (pi n))``.

    The comparison means something only far from the uniform distribution (its total variation from the
    probabilities above 4 times that noise): a model too close to it is compared as a copy with its weights
    scaled by 2, 4, ... (:func:`sharpen`) up to ``max_factor``; the model itself is untouched."""
    x = all_images(model.image_shape, model.num_levels)
    y = None if labels is None else torch.full((x.shape[0],), labels)
    factor, tried = 1.0, model
    while True:
        with torch.no_grad():
            p = tried.log_prob(x, y).double().exp()
        expected = 0.5 * (2 * p * (1 - p) / (math.pi * n)).sqrt().sum().item()
        if 0.5 * (p - 1 / x.shape[0]).abs().sum().item() > 4 * expected:
            break
        factor *= 2
        assert factor <= max_factor, (
            f"the model stays nearly uniform on {x.shape[0]} images even with its weights scaled by {max_factor:g}, "
            "so its samples cannot be compared with its likelihood: initialise it with larger weights")
        tried = sharpen(copy.deepcopy(model), factor)
    draw = tried.sample(n, generator=generator(0), labels=None if labels is None else torch.full((n,), labels))
    freq = torch.bincount(image_index(to_levels(draw, tried.num_levels), tried.num_levels),
                          minlength=x.shape[0]).double() / n
    tv = 0.5 * (freq - p).abs().sum().item()
    scaled = f" (weights scaled by {factor:g})" if factor > 1 else ""
    assert tv < 2 * expected, (f"the samples do not follow log_prob{scaled}: total variation {tv:.4f} between their "
                               f"frequencies and exp(log_prob) (sampling noise ~{expected:.4f})")


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
        assert total.abs().max() < 1e-5, (
            f"sub-pixel {s} sees itself: its log_conditionals term is not a distribution over its own levels (sums "
            f"to {total.exp().max().item():.4g}); the logits of sub-pixel {s} must not depend on its own value, mask "
            f"that connection")


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
