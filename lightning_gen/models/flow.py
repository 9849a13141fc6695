"""RealNVP, a change-of-variables flow, with the likelihood of discrete images under uniform dequantization.

[1] arXiv 1605.08803 (Dinh, Sohl-Dickstein & Bengio 2017, RealNVP: affine couplings, checkerboard and channel
    masks, multi-scale squeezing and factoring out).
[2] arXiv 1511.01844 (Theis, van den Oord & Bethge 2016: a density of dequantized data bounds the discrete
    likelihood).

The flow ``f`` (:class:`~lightning_gen.nn.flow.MultiScaleFlow`) maps ``s = logit(y)`` to ``z = f(s)`` with an
``N(0, I)`` prior, where ``y = (x + u) / L`` in ``[0, 1]^D`` dequantizes an image of integer levels ``x``
(``L = num_levels``, ``u ~ U[0, 1)^D``). Its density of ``y`` is exact::

    log p(y) = log N(f(s); 0, I) + log |det df/ds| + log |det ds/dy|

and the probability of the discrete image is the integral of ``p`` over its cube, ``P(x) = L^-D E_u[p(y)]``, so by
Jensen [2] ``log P(x) >= E_u[log p(y)] - D log L``. :meth:`RealNVP.log_prob` is that bound with one draw of ``u``
per image (the record says "bound (uniform dequantization, 1 draw)"); with ``k > 1`` draws it averages ``p`` inside
the log, ``log (1/k) sum_j p(y_j) L^-D``, an importance-weighted estimate with the uniform proposal that tightens
towards ``log P(x)`` as ``k`` grows (the record says so). Either way ``exp`` of one estimate is unbiased for
``P(x)``, which is what the tiny-space tests check.

Where the code differs from [1]: the logit is applied without [1]'s ``a = 0.05`` squash (so the density on the
cube is proper; the reason and the edge arithmetic are in :mod:`lightning_gen.nn.flow`), no batch or weight
normalisation, and no L2 penalty; Glow's actnorm and invertible 1x1 convolutions are an option (``glow``), the actnorm
starting at the identity rather than at Glow's data-dependent initialisation.

The dequantization noise of an image is keyed on ``(seed, the image)`` like the VAE's importance samples
(:func:`~lightning_gen.nn.latent.image_keys`), so an estimate does not depend on the batch, the rank or the number of
processes; training draws fresh noise every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from lightning_gen.models.base import Estimate, LikelihoodModule
from lightning_gen.nn.flow import MultiScaleFlow, dequantize, quantize
from lightning_gen.nn.latent import KeyedNormal, image_keys, standard_normal_log_prob
from lightning_gen.nn.pixels import from_levels, to_levels


class RealNVP(LikelihoodModule):
    """RealNVP [1] on images of ``num_levels`` levels, trained on the dequantization bound.

    Logged: ``train/nll_nats`` and ``train/nll_bpd`` (the one-draw bound on fresh noise); ``val/`` and ``test/``
    ``nll_nats`` and ``nll_bpd``: :meth:`log_prob` under seed 0 (the benchmark's default), so the test step's
    number is the benchmark's.

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`.
        num_scales: scales of the multi-scale architecture; the image's sides must be divisible by
            ``2 ** (num_scales - 1)`` (28x28 MNIST: up to 3).
        couplings: coupling layers per mask type and scale (3 in [1]; the last scale has one more).
        hidden: channels of each coupling's ResNet.
        blocks: residual blocks of each coupling's ResNet.
        glow: put Glow's actnorm and invertible 1x1 convolution (arXiv 1807.03039) before every coupling.
        dequantization_draws: draws ``k`` of ``u`` per image in :meth:`log_prob` (1: the bound; more: the
            importance-weighted estimate); the benchmark's ``--iw-samples`` overrides it.
        temperature: the prior's standard deviation when sampling (1: the model's distribution).
        lr_scheduler: an ``LRSchedulerCallable`` stepped once per epoch, or None.
    """

    family = "flow"
    likelihood_kind = "bound"

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 256,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        num_scales: int = 2,
        couplings: int = 3,
        hidden: int = 32,
        blocks: int = 1,
        glow: bool = False,
        dequantization_draws: int = 1,
        temperature: float = 1.0,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        if dequantization_draws < 1:
            raise ValueError(f"dequantization_draws must be at least 1, got {dequantization_draws}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.dequantization_draws, self.temperature = int(dequantization_draws), float(temperature)
        self.lr_scheduler = lr_scheduler
        self.flow = MultiScaleFlow(self.image_shape, num_scales, couplings, hidden, blocks, glow)

    # ---- the density ----------------------------------------------------------------------------------------
    def levels(self, x: Tensor) -> Tensor:
        """uint8 images -> integer levels, refusing anything that is not an image of this model's data."""
        if x.dtype != torch.uint8:
            raise TypeError(f"{type(self).__name__} takes uint8 images in 0..255, got dtype {x.dtype}; convert "
                            "images in [0, 1] with (x * 255).round().to(torch.uint8), or integer levels "
                            f"0..{self.num_levels - 1} with lightning_gen.models.from_levels(levels, "
                            f"{self.num_levels})")
        self.check_images(x)
        levels = to_levels(x, self.num_levels)
        if self.num_levels < 256:
            off = from_levels(levels, self.num_levels) != x
            if off.any():
                raise ValueError(f"the images have values {sorted(x[off].unique().tolist())[:5]} that are not on the "
                                 f"{self.num_levels} levels the model was built for "
                                 f"{sorted(from_levels(torch.arange(self.num_levels), self.num_levels).tolist())[:5]}"
                                 f"...: use data of {self.num_levels} levels, or build the model with the data's "
                                 "num_levels (256 for 8-bit images)")
        return levels

    def dequantized_log_prob(self, levels: Tensor, noise: Tensor) -> Tensor:
        """The one-draw bound ``log p(y) - D log L`` in nats, ``(N,)``, differentiable: integer ``levels``
        ``(N, C, H, W)`` dequantized by ``u = Phi(noise)``, ``noise`` standard normal of the same shape."""
        s, logit_log_det = dequantize(levels, noise, self.num_levels)
        z, flow_log_det = self.flow(s.to(self.dtype))
        log_density = standard_normal_log_prob(z) + flow_log_det  # log p(s), in the weights' dtype
        return log_density.double() + logit_log_det - self.num_dims * math.log(self.num_levels)

    def resolve_estimate(self, estimate: Estimate | None = None) -> Estimate:
        estimate = estimate or Estimate()
        return Estimate(k=self.dequantization_draws if estimate.k is None else int(estimate.k), seed=estimate.seed,
                        chunk=estimate.chunk)

    def likelihood_protocol(self, estimate: Estimate | None = None) -> str:
        k = self.resolve_estimate(estimate).k
        if k == 1:
            return "bound (uniform dequantization, 1 draw)"
        return f"importance-weighted (uniform dequantization, k={k} draws averaged inside the log)"

    @torch.no_grad()
    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        """``log P(x)`` of the discrete images estimated from ``estimate.k`` draws of the dequantization noise
        (default ``dequantization_draws``): ``(N,)`` nats, float64. One draw: the bound's one-sample estimate;
        ``k`` draws: ``log (1/k) sum_j exp(bound_j)``. Draw ``j`` of an image is keyed on ``(estimate.seed, the
        image, j)``; without a seed one is drawn from the global RNG. ``labels`` are ignored (unconditional)."""
        levels = self.levels(x)
        estimate = self.resolve_estimate(estimate)
        seed = int(torch.randint(0, 2**62, ()).item()) if estimate.seed is None else estimate.seed
        noise = KeyedNormal(image_keys(x, seed), self.num_dims, device=self.device, dtype=torch.float64, block=1)
        total = None
        for j in range(estimate.k):
            bound = self.dequantized_log_prob(levels, noise(j, 1)[0].view(levels.shape))
            total = bound if total is None else torch.logaddexp(total, bound)
        return total - math.log(estimate.k)

    # ---- sampling --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               temperature: float | None = None) -> Tensor:
        """``z ~ N(0, T^2 I)`` (``T``: ``temperature``, default the model's), ``y = sigmoid(f^-1(z))``, and the level
        whose cube holds ``y``: ``floor(L y)``. At ``T = 1`` a draw of the discrete model ``P(x)`` exactly."""
        self.check_labels(n, labels)
        temperature = self.temperature if temperature is None else float(temperature)
        z = torch.randn(n, self.num_dims, generator=generator, device=self.device) * temperature
        return from_levels(quantize(self.flow.inverse(z), self.num_levels), self.num_levels)

    # ---- Lightning -------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, _ = batch
        levels = self.levels(x)
        noise = torch.randn(levels.shape, device=self.device)
        with torch.autocast(self.device.type, enabled=False):
            mean_nll = -self.dequantized_log_prob(levels, noise).mean()
        if self.logs_this_step():
            self.log("train/nll_nats", mean_nll.detach(), batch_size=x.shape[0])
            self.log("train/nll_bpd", mean_nll.detach() / (self.num_dims * math.log(2.0)), prog_bar=True,
                     batch_size=x.shape[0])
        # Per-dimension loss keeps the learning rate independent of the image size.
        return (mean_nll / self.num_dims).float()

    def eval_values(self, x: Tensor, y: Tensor, stage: str) -> dict[str, Tensor]:
        """The NLL estimate of :meth:`log_prob` under seed 0, the benchmark's default: the same number in the
        validation curve, the test step and the benchmark."""
        return {"nll_nats": -self.log_prob(x, estimate=Estimate(seed=0))}
