"""Pixel likelihoods: the distribution of one discrete sub-pixel given a model's parameters for it, and the
conversions between uint8 images, level indices and raster order that every pixel model shares.

A head maps ``P`` = :attr:`~PixelHead.params_per_subpixel` numbers (on axis ``dim`` of ``params``) to a distribution
over the ``L`` = ``num_levels`` levels ``0..L-1`` of one sub-pixel:

- :class:`Bernoulli` (``L = 2``, ``P = 1``): ``p(1) = sigmoid(logit)``;
- :class:`Categorical` (``P = L``): ``softmax(logits)``;
- :class:`DiscretizedLogistic` (``P = 2`` for one component, ``3K`` for a mixture of ``K``): a logistic on
  ``[-1, 1]`` cut into ``L`` bins, level ``k`` owning ``[c_k - h, c_k + h]`` around ``c_k = 2k / (L - 1) - 1``
  (``h = 1 / (L - 1)``), the edge levels taking the tails, as in [1].

Sampling is by inverse CDF from one uniform ``u`` in ``[0, 1)`` per sub-pixel, under one rule: the level is the
smallest ``k`` with ``CDF(k) > u`` (so ``P(k) = CDF(k) - CDF(k - 1)`` exactly for a uniform on ``[0, 1)``, and a level
of probability 0 is never drawn). The Bernoulli orders its two levels as ``(1, 0)``: ``1`` iff ``u < p(1)``, which is
what ``torch.bernoulli`` computes from ``torch.rand`` on a CPU, so a model may pass ``torch.rand(...)`` and get the
draws ``torch.bernoulli`` would give. The logistic inverts the continuous CDF and takes the bin the value falls in.

[1] arXiv 1701.05517 (Salimans et al. 2017, PixelCNN++: the discretized logistic mixture with open edge bins).

Raster order is rows, then columns, then channels innermost: ``(B, C, H, W) -> (B, H * W * C)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Bounds of the logistic's log-scale, as in PixelCNN++: keeps the bins' probabilities from collapsing to 0.
MIN_LOG_SCALE = -7.0
MAX_LOG_SCALE = 7.0


# ---- levels and raster order ---------------------------------------------------------------------------------
def to_levels(x: Tensor, num_levels: int) -> Tensor:
    """uint8 images in 0..255 -> integer level indices in 0..num_levels-1 (int64)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images in 0..255, got dtype {x.dtype}; convert with (x * 255).round().to(torch.uint8)")
    if num_levels == 256:
        return x.long()
    # Round to the nearest level so that 0/255 binary images map to exactly 0/1: floor((x (L-1) + 127) / 255).
    # Computed in float32, 3x faster than int64 division on a CPU and exact: the numerators are integers below
    # 2^16, and a quotient that is not an integer lies at least 1/255 from one, far beyond float32 rounding.
    return (x.float() * (num_levels - 1) + 127).div_(255).floor_().long()


def from_levels(levels: Tensor, num_levels: int) -> Tensor:
    """Integer level indices in 0..num_levels-1 -> uint8 images in 0..255."""
    if num_levels == 256:
        return levels.to(torch.uint8)
    return torch.div(levels.long() * 255 + (num_levels - 1) // 2, num_levels - 1, rounding_mode="floor").to(torch.uint8)


def raster_flatten(images: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, D)`` in raster order, channels innermost."""
    return images.permute(0, 2, 3, 1).reshape(images.shape[0], -1)  # (B, C, H, W) -> (B, H, W, C) -> (B, D)


def raster_unflatten(flat: Tensor, image_shape: tuple[int, int, int]) -> Tensor:
    """``(B, D) -> (B, C, H, W)``, the inverse of :func:`raster_flatten`."""
    c, h, w = image_shape
    return flat.reshape(-1, h, w, c).permute(0, 3, 1, 2)


# ---- heads ---------------------------------------------------------------------------------------------------
def inverse_cdf(probs: Tensor, u: Tensor) -> Tensor:
    """The smallest level ``k`` with ``CDF(k) > u``: ``probs`` ``(..., L)``, ``u`` ``(...)`` -> levels ``(...)``.

    The last level takes any ``u`` the rounded CDF leaves uncovered (its CDF is 1 only up to rounding).
    """
    cdf = probs.cumsum(-1)
    return (cdf[..., :-1] <= u.unsqueeze(-1)).sum(-1)


class PixelHead:
    """The distribution of a sub-pixel over ``num_levels`` levels given ``params_per_subpixel`` parameters.

    Every method takes ``params`` with the parameters on axis ``dim`` (default last); ``levels``, ``u`` and the
    results have the shape of ``params`` without that axis (``levels`` broadcasts against it).
    """

    params_per_subpixel: int

    def __init__(self, num_levels: int) -> None:
        if not 2 <= num_levels <= 256:
            raise ValueError(f"num_levels must be in 2..256, got {num_levels}")
        self.num_levels = int(num_levels)

    def log_prob(self, params: Tensor, levels: Tensor, dim: int = -1) -> Tensor:
        """Elementwise ``log p(level)`` of integer ``levels``."""
        raise NotImplementedError

    def probs(self, params: Tensor, dim: int = -1) -> Tensor:
        """The probabilities of all levels, on a new last axis: ``(..., L)``."""
        raise NotImplementedError

    def sample(self, params: Tensor, u: Tensor, dim: int = -1) -> Tensor:
        """The level (int64) that the uniform ``u`` in ``[0, 1)`` selects by inverse CDF (see the module)."""
        return inverse_cdf(self.probs(params, dim), u)

    def mean(self, params: Tensor, dim: int = -1) -> Tensor:
        """The expected level scaled to ``[0, 1]`` (``E[level] / (L - 1)``)."""
        grid = torch.arange(self.num_levels, device=params.device, dtype=params.dtype) / (self.num_levels - 1)
        return self.probs(params, dim) @ grid

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_levels={self.num_levels})"


class Bernoulli(PixelHead):
    """Binary sub-pixels, one logit each: ``p(1) = sigmoid(logit)``."""

    params_per_subpixel = 1

    def __init__(self, num_levels: int = 2) -> None:
        super().__init__(num_levels)
        if self.num_levels != 2:
            raise ValueError(f"a Bernoulli pixel needs binary data (num_levels=2), got {num_levels} levels")

    def log_prob(self, params: Tensor, levels: Tensor, dim: int = -1) -> Tensor:
        logits, target = torch.broadcast_tensors(params.select(dim, 0), levels.to(params.dtype))
        return -F.binary_cross_entropy_with_logits(logits, target, reduction="none")

    def probs(self, params: Tensor, dim: int = -1) -> Tensor:
        p1 = torch.sigmoid(params.select(dim, 0))
        return torch.stack([1 - p1, p1], -1)

    def sample(self, params: Tensor, u: Tensor, dim: int = -1) -> Tensor:
        return (u < torch.sigmoid(params.select(dim, 0))).long()

    def mean(self, params: Tensor, dim: int = -1) -> Tensor:
        return torch.sigmoid(params.select(dim, 0))


class Categorical(PixelHead):
    """Any number of levels, one logit per level: ``softmax(logits)``."""

    @property
    def params_per_subpixel(self) -> int:
        return self.num_levels

    def log_prob(self, params: Tensor, levels: Tensor, dim: int = -1) -> Tensor:
        logp = params.log_softmax(dim)
        index = levels.unsqueeze(dim)
        shape = list(torch.broadcast_shapes(index.shape, logp.shape))  # levels and params may broadcast
        full = list(shape)
        full[dim] = logp.shape[dim]
        shape[dim] = 1
        return logp.expand(full).gather(dim, index.expand(shape)).squeeze(dim)

    def probs(self, params: Tensor, dim: int = -1) -> Tensor:
        return params.softmax(dim).movedim(dim, -1)


def _log1mexp(d: Tensor) -> Tensor:
    """``log(1 - exp(-d))`` for ``d > 0``, accurate for small and large ``d`` (Maechler 2012).

    Each branch sees inputs clamped to its own range, so the branch ``torch.where`` discards has finite
    gradients (an infinite one would turn into NaN through the zero mask).
    """
    small = d <= math.log(2.0)
    return torch.where(small, torch.log(-torch.expm1(-d.clamp(max=math.log(2.0)))),
                       torch.log1p(-torch.exp(-d.clamp(min=math.log(2.0)))))


def discretized_logistic_log_prob(levels: Tensor, mean: Tensor, log_scale: Tensor, num_levels: int) -> Tensor:
    """Elementwise ``log P(level)`` under a logistic(``mean``, ``exp(log_scale)``) on [-1, 1] cut into
    ``num_levels`` bins, the edge bins taking the tails, so the ``num_levels`` probabilities sum to exactly one.

    The bin probability ``sigmoid(a) - sigmoid(b)`` (``a, b`` the standardised bin edges) is computed as
    ``sigmoid(a) * sigmoid(-b) * (1 - exp(b - a))`` in log space, which stays accurate far in the tails where the
    difference of two CDFs rounds to zero; PixelCNN++ falls back to the density at the bin centre there instead.
    """
    log_scale = log_scale.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)
    inv_scale = torch.exp(-log_scale)
    half_width = 1.0 / (num_levels - 1)
    centre = levels * (2.0 * half_width) - 1.0
    upper = (centre + half_width - mean) * inv_scale  # a: standardised upper edge
    lower = (centre - half_width - mean) * inv_scale  # b: standardised lower edge
    log_cdf_upper = F.logsigmoid(upper)  # log P(X <= upper): the lowest level's probability
    log_sf_lower = F.logsigmoid(-lower)  # log P(X >= lower): the highest level's probability
    log_inner = log_cdf_upper + log_sf_lower + _log1mexp(2.0 * half_width * inv_scale)
    return torch.where(levels == 0, log_cdf_upper, torch.where(levels == num_levels - 1, log_sf_lower, log_inner))


class DiscretizedLogistic(PixelHead):
    """A discretized logistic, or a mixture of ``num_components`` of them [1].

    Parameters per sub-pixel: ``(mean, log_scale)`` for one component; ``(logit_1..K, mean_1..K, log_scale_1..K)``
    for ``K > 1``. Log-scales are clamped to ``[MIN_LOG_SCALE, MAX_LOG_SCALE]``. :meth:`mean` is the location
    clamped to the pixel range (weighted by the mixture weights): the centre of the distribution, which differs from
    its mean only where the edge bins' tails make it lopsided.
    """

    def __init__(self, num_levels: int, num_components: int = 1) -> None:
        super().__init__(num_levels)
        if num_components < 1:
            raise ValueError(f"num_components must be positive, got {num_components}")
        self.num_components = int(num_components)

    @property
    def params_per_subpixel(self) -> int:
        return 2 if self.num_components == 1 else 3 * self.num_components

    def _split(self, params: Tensor, dim: int) -> tuple[Tensor | None, Tensor, Tensor]:
        """``(mixture log-weights or None, means, log-scales)``, the components on the last axis (K > 1)."""
        if self.num_components == 1:
            return None, params.select(dim, 0), params.select(dim, 1)
        logits, mean, log_scale = params.movedim(dim, -1).chunk(3, -1)
        return logits.log_softmax(-1), mean, log_scale

    def log_prob(self, params: Tensor, levels: Tensor, dim: int = -1) -> Tensor:
        log_w, mean, log_scale = self._split(params, dim)
        levels = levels.to(params.dtype)
        if log_w is None:
            return discretized_logistic_log_prob(levels, mean, log_scale, self.num_levels)
        return torch.logsumexp(log_w + discretized_logistic_log_prob(levels.unsqueeze(-1), mean, log_scale,
                                                                     self.num_levels), -1)

    def probs(self, params: Tensor, dim: int = -1) -> Tensor:
        grid = torch.arange(self.num_levels, device=params.device)
        shape = params.movedim(dim, -1).shape[:-1]
        levels = grid.view(-1, *[1] * len(shape))  # (L, 1, ...)
        return self.log_prob(params.unsqueeze(0), levels, dim if dim < 0 else dim + 1).exp().movedim(0, -1)

    def sample(self, params: Tensor, u: Tensor, dim: int = -1) -> Tensor:
        log_w, mean, log_scale = self._split(params, dim)
        if log_w is not None:  # the component by inverse CDF of the weights, then u rescaled within its share
            w = log_w.exp()
            k = inverse_cdf(w, u)
            below = (w.cumsum(-1) - w).gather(-1, k.unsqueeze(-1)).squeeze(-1)
            u = (u - below) / w.gather(-1, k.unsqueeze(-1)).squeeze(-1)
            mean = mean.gather(-1, k.unsqueeze(-1)).squeeze(-1)
            log_scale = log_scale.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        # Inverse CDF of the logistic, then the bin it falls in; the clamp gives the edge levels their tails.
        u = u.clamp(1e-6, 1 - 1e-6)
        x = mean + log_scale.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE).exp() * (torch.log(u) - torch.log1p(-u))
        return torch.round((x + 1.0) * (self.num_levels - 1) / 2.0).clamp(0, self.num_levels - 1).long()

    def mean(self, params: Tensor, dim: int = -1) -> Tensor:
        log_w, mean, _ = self._split(params, dim)
        centre = (mean.clamp(-1, 1) + 1) / 2
        return centre if log_w is None else (log_w.exp() * centre).sum(-1)


#: The heads by the name a config gives them.
HEADS = {"bernoulli": Bernoulli, "categorical": Categorical, "logistic": DiscretizedLogistic}


def pixel_head(name: str, num_levels: int) -> PixelHead:
    """The head called ``name`` (one of :data:`HEADS`) for ``num_levels``-level data."""
    if name not in HEADS:
        raise ValueError(f"unknown likelihood {name!r}; expected one of {tuple(HEADS)}")
    return HEADS[name](num_levels)


def default_head(num_levels: int) -> PixelHead:
    """The autoregressive models' head: a Bernoulli for binary data, else a categorical over the levels."""
    return Bernoulli() if num_levels == 2 else Categorical(num_levels)
