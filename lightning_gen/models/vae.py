"""Latent-variable family: a deterministic autoencoder and the variational autoencoder, with an importance-weighted
likelihood estimate (pictures of the latent space: :mod:`lightning_gen.pictures`).

[1] arXiv 1312.6114 (Kingma & Welling 2013, auto-encoding variational Bayes: the VAE, the reparameterisation
    trick, the analytic Gaussian KL, the 2-D latent manifold figure).
[2] arXiv 1509.00519 (Burda, Grosse & Salakhutdinov 2015, IWAE: the k-sample importance-weighted bound used as
    the NLL estimate, k = 5000, and the 784-200-200-50 networks of ``arch="mlp"``).
[3] arXiv 1701.05517 (Salimans et al. 2017, PixelCNN++: the discretised logistic with open edge bins).

The VAE's pixel distribution ``p(x | z)`` is chosen by ``likelihood`` so that its numbers compare with the
autoregressive models' (nats of *discrete* images, bits/dim over the data's levels):

- ``"bernoulli"``: one logit per sub-pixel, binary data only (``num_levels=2``);
- ``"categorical"``: a ``num_levels``-way softmax per sub-pixel;
- ``"logistic"``: a discretised logistic per sub-pixel (one mean and log-scale), level ``k`` owning the bin
  ``[c_k - h, c_k + h]`` around its centre ``c_k = 2k / (L - 1) - 1`` with ``h = 1 / (L - 1)``, the lowest and
  highest levels taking the tails (``(-inf, c_0 + h]`` and ``[c_{L-1} - h, inf)``), as in [3] but one component
  instead of a mixture.

Where the code differs from [1]/[2]: the default networks are convolutional (``arch="conv"``, see
:mod:`lightning_gen.nn.conv`); ``arch="mlp"`` gives the networks of [2]. Validation reports the one-sample ELBO
(cheap); only the test step and :meth:`VAE.log_prob` pay for the k-sample estimate. Training maximises the
ELBO (k = 1), optionally with a KL weight ``beta`` [beta-VAE, Higgins et al. 2017] and a linear KL warm-up.

The importance samples of an image are a pure function of ``(seed, the image's bytes, sample index)``
(:class:`KeyedNormal`), so an image's estimate is the same in any batch, on any rank, with any chunk size, in the
benchmark and in the test step alike: drawing them from the global RNG (seeded per rank) made an image's estimate
depend on where it landed (-44.466 nats alone, -44.731 in a batch of 4, k = 50). Keying on the image rather than on
its position in the split is deliberate: the test step under a ``DistributedSampler`` does not know positions, and a
split cut differently (``test_size``) keeps each image's estimate. Identical images share their samples.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from lightning_gen.models.base import Estimate, GenerativeModule, bits_per_dim, from_levels, to_levels
from lightning_gen.nn.conv import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

LIKELIHOODS = ("bernoulli", "categorical", "logistic")
ARCHS = ("conv", "mlp")
LOG_2PI = math.log(2 * math.pi)
#: Lower bound of the logistic's log-scale, as in PixelCNN++: keeps the bins' probabilities from collapsing to 0.
MIN_LOG_SCALE = -7.0
MAX_LOG_SCALE = 7.0
#: Importance samples per noise block of :class:`KeyedNormal`.
NOISE_BLOCK = 128


# ---- densities ---------------------------------------------------------------------------------------------
def gaussian_kl_to_standard(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean, diag(exp(logvar))) || N(0, I))`` in nats, summed over the last dimension."""
    return 0.5 * (logvar.exp() + mean.square() - 1.0 - logvar).sum(-1)


def diagonal_gaussian_log_prob(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z; mean, diag(exp(logvar)))`` summed over the last dimension (shapes broadcast)."""
    return -0.5 * (LOG_2PI + logvar + (z - mean).square() * torch.exp(-logvar)).sum(-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * (LOG_2PI + z.square()).sum(-1)


def bernoulli_log_prob(levels: Tensor, logits: Tensor) -> Tensor:
    """Elementwise ``log p(x)`` of 0/1 ``levels`` under Bernoulli(sigmoid(logits)); shapes broadcast."""
    return levels * logits - F.softplus(logits)


def categorical_log_prob(levels: Tensor, logits: Tensor) -> Tensor:
    """Elementwise ``log p(x)`` of integer ``levels`` ``(...)`` under softmax(``logits`` ``(..., L)``)."""
    logp = logits.log_softmax(-1)
    shape = torch.broadcast_shapes(levels.shape, logp.shape[:-1])
    return logp.expand(*shape, logp.shape[-1]).gather(-1, levels.expand(shape).unsqueeze(-1)).squeeze(-1)


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


# ---- importance-weighted likelihood --------------------------------------------------------------------------
def _hash63(*parts: bytes) -> int:
    digest = hashlib.blake2b(b"".join(len(p).to_bytes(4, "little") + p for p in parts), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def image_keys(x: Tensor, seed: int = 0) -> list[int]:
    """One 63-bit key per image of ``x`` ``(N, ...)``: a hash of ``seed`` and the image's bytes (its position in a
    batch, split or rank plays no part)."""
    rows = x.detach().contiguous().cpu().numpy().reshape(x.shape[0], -1)
    prefix = int(seed).to_bytes(8, "little", signed=True)
    return [_hash63(prefix, row.tobytes()) for row in rows]


class KeyedNormal:
    """Standard normal noise for ``N`` items where draw ``j`` of item ``n`` is a pure function of ``(keys[n], j)``.

    Draw ``j`` is row ``j % block`` of ``randn(block, dim)`` from a generator seeded by ``(keys[n], j // block)``, so
    it does not depend on the other items, on how the draws are chunked, or on how many are drawn (``k`` samples are
    the first ``k`` of any larger ``k``). Numbers differ between a CPU and a CUDA device (their generators differ).
    Calls that walk through the draws in order reuse the current block.
    """

    def __init__(self, keys: Sequence[int], dim: int, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, block: int = NOISE_BLOCK) -> None:
        self.keys, self.dim, self.block = [int(k) for k in keys], int(dim), int(block)
        self.device, self.dtype = torch.device(device), dtype
        self._generator = torch.Generator(device=self.device)
        self._cached: tuple[int, Tensor | None] = (-1, None)

    def _block(self, b: int) -> Tensor:
        if self._cached[0] != b:
            rows = []
            for key in self.keys:
                seed = _hash63(key.to_bytes(8, "little", signed=True), b.to_bytes(8, "little"))
                self._generator.manual_seed(seed)
                rows.append(torch.randn(self.block, self.dim, generator=self._generator, device=self.device,
                                        dtype=self.dtype))
            self._cached = (b, torch.stack(rows, 1))  # N x (block, D) -> (block, N, D)
        return self._cached[1]

    def __call__(self, start: int, m: int) -> Tensor:
        """Draws ``start .. start + m - 1`` of every item: ``(m, N, dim)``."""
        parts, j = [], start
        while j < start + m:
            b, offset = divmod(j, self.block)
            take = min(self.block - offset, start + m - j)
            parts.append(self._block(b)[offset:offset + take])
            j += take
        return torch.cat(parts) if len(parts) > 1 else parts[0]


def iw_log_likelihood(
    log_joint: Callable[[Tensor], Tensor],
    q_sample: Callable[[int, int], Tensor],
    q_log_prob: Callable[[Tensor], Tensor],
    k: int,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """The importance-weighted estimate ``log (1/k) sum_i p(x, z_i) / q(z_i | x)``, ``z_i ~ q(z | x)`` [2].

    Its expectation is a lower bound on ``log p(x)`` that rises with ``k`` and reaches it as ``k -> inf``; ``k = 1``
    is the ELBO's one-sample estimate.

    Args:
        log_joint: ``z (m, N, D) -> log p(x, z) (m, N)`` for the ``N`` data points.
        q_sample: ``(start, m) -> z (m, N, D)``: importance samples ``start .. start + m - 1`` of each data point,
            drawn from its proposal ``q(z | x)``; the estimate is as reproducible as these draws are (a
            :class:`KeyedNormal` makes them a function of the sample index, whatever the chunking).
        q_log_prob: ``z (m, N, D) -> log q(z | x) (m, N)``.
        k: number of importance samples.
        chunk_size: samples evaluated at once (default all ``k``): memory is bounded by ``chunk_size``, not ``k``.

    Returns:
        ``(N,)`` float64. The log-sum-exp runs across chunks in float64.
    """
    if k < 1:
        raise ValueError(f"k must be a positive number of samples, got {k}")
    chunk_size = k if chunk_size is None else int(chunk_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    total: Tensor | None = None
    for start in range(0, k, chunk_size):
        z = q_sample(start, min(chunk_size, k - start))  # (m, N, D)
        log_w = (log_joint(z) - q_log_prob(z)).double()  # (m, N)
        chunk_total = torch.logsumexp(log_w, 0)
        total = chunk_total if total is None else torch.logaddexp(total, chunk_total)
    return total - math.log(k)


# ---- models --------------------------------------------------------------------------------------------------
class _LatentModel(GenerativeModule):
    """Shared parts of the autoencoder and the VAE: the networks, input scaling, mean images, the latent picture
    helpers (:meth:`encode`, :meth:`decode_mean`, :meth:`prior_transform`)."""

    family: ClassVar[str] = "latent"
    def _build(self, encoder_outputs: int, decoder_channels: int, *, z_dim: int, arch: str, channels: int,
               blocks: int, hidden_sizes: Sequence[int]) -> None:
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
        if z_dim < 1:
            raise ValueError(f"z_dim must be positive, got {z_dim}")
        self.z_dim = int(z_dim)
        if arch == "conv":
            self.encoder = ConvEncoder(self.image_shape, encoder_outputs, channels=channels, blocks=blocks)
            self.decoder = ConvDecoder(z_dim, self.image_shape, decoder_channels, channels=channels, blocks=blocks)
        else:
            self.encoder = MLPEncoder(self.image_shape, encoder_outputs, hidden_sizes=hidden_sizes)
            self.decoder = MLPDecoder(z_dim, self.image_shape, decoder_channels,
                                      hidden_sizes=tuple(reversed(hidden_sizes)))

    def _levels(self, x: Tensor) -> Tensor:
        """uint8 images -> integer levels (checked)."""
        return to_levels(self.check_images(x), self.num_levels)

    def _inputs(self, levels: Tensor) -> Tensor:
        """Integer levels -> encoder inputs in [-1, 1], in the weights' dtype."""
        return levels.to(self.dtype) * (2.0 / (self.num_levels - 1)) - 1.0

    has_representation = True

    def encode(self, x: Tensor) -> Tensor:
        """uint8 ``(N, C, H, W)`` -> codes ``(N, z_dim)`` float: the representation the linear probe reads."""
        raise NotImplementedError

    def representation(self, x: Tensor) -> Tensor:
        return self.encode(x)

    def decode_mean(self, z: Tensor) -> Tensor:
        """Codes ``(N, z_dim)`` -> the decoder's mean images as uint8 0..255 (for pictures, not samples)."""
        raise NotImplementedError

    def prior_transform(self, eps: Tensor) -> Tensor:
        """Standard normal noise ``(N, z_dim)`` -> codes from the distribution :meth:`sample` decodes."""
        raise NotImplementedError


class VAE(_LatentModel):
    """Variational autoencoder [1] with a diagonal Gaussian ``q(z | x)``, an ``N(0, I)`` prior and a Bernoulli,
    categorical or discretised-logistic ``p(x | z)``.

    Logged: ``train/recon_nats`` (``-log p(x | z)``, one ``z ~ q``), ``train/kl_nats`` (analytic
    ``KL(q(z | x) || p(z))``), ``train/elbo_nats``; ``val/elbo_nats`` and ``val/elbo_bpd`` (also ``val/recon_nats``,
    ``val/kl_nats``); ``test/nll_nats``, ``test/nll_bpd`` (the ``iw_samples``-sample estimate of :meth:`log_prob`),
    ``test/iw_samples``, ``test/elbo_nats``, ``test/elbo_bpd``. Every ``*elbo_nats`` is the **negative** ELBO in
    nats per image (with ``beta = 1``): positive like an NLL and an upper bound on it, so it reads on the same
    scale as ``nll_nats``; ``*_bpd`` divides by ``C * H * W * ln 2``.

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`.
        likelihood: ``"bernoulli"`` (binary data), ``"categorical"`` or ``"logistic"`` (any number of levels).
        z_dim: latent dimensions.
        arch: ``"conv"`` (:class:`~lightning_gen.nn.conv.ConvEncoder` / ``ConvDecoder``) or ``"mlp"`` (the networks
            of [2], tanh units of sizes ``hidden_sizes``).
        channels, blocks: width at full resolution and extra 3x3 convolutions per scale (``arch="conv"``).
        hidden_sizes: hidden layer sizes of the encoder; the decoder uses them reversed (``arch="mlp"``).
        beta: weight of the KL term in the training loss (1: the ELBO).
        kl_warmup_steps: the KL weight rises linearly from 0 to ``beta`` over this many optimizer steps (0: off).
        iw_samples: importance samples ``k`` of :meth:`log_prob` and the test step (5000 as in [2]).
        iw_chunk_size: decoder evaluations (samples times images) made at once by :meth:`log_prob`; bounds its
            memory whatever ``k`` and the batch size.
        lr_scheduler: an ``LRSchedulerCallable`` stepped once per epoch (None: a constant learning rate), e.g.
            ``torch.optim.lr_scheduler.MultiStepLR`` for [2]'s eight stages (``configs/repro/vae_*.yaml``).
        train_samples: ``k`` of the training objective. 1: the ELBO (a VAE); ``k > 1``: the k-sample
            importance-weighted bound of [2] (an IWAE; ``k`` decoder passes a step), logged as
            ``train/iwae_nats``. Validation reports the ELBO and, for ``k > 1``, ``val/iwae_nats``: the same
            ``k``-sample bound (fixed seed), which is what a checkpoint should be selected by; the test step
            reports the ``iw_samples`` estimate.
    """

    likelihood_kind = "importance-weighted"

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 2,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        likelihood: str = "bernoulli",
        z_dim: int = 32,
        arch: str = "conv",
        channels: int = 32,
        blocks: int = 0,
        hidden_sizes: Sequence[int] = (200, 200),
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        iw_samples: int = 5000,
        iw_chunk_size: int = 4096,
        lr_scheduler: LRSchedulerCallable | None = None,
        train_samples: int = 1,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        self.lr_scheduler = lr_scheduler
        if train_samples < 1:
            raise ValueError(f"train_samples must be at least 1 (1: the ELBO), got {train_samples}")
        if train_samples > 1 and (beta != 1 or kl_warmup_steps):
            raise ValueError(f"train_samples={train_samples} trains on the importance-weighted bound, which has no "
                             f"separate KL term for beta={beta} or kl_warmup_steps={kl_warmup_steps} to weight; use "
                             f"beta 1 and no warm-up, or train_samples 1")
        self.train_samples = int(train_samples)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}")
        if likelihood == "bernoulli" and self.num_levels != 2:
            raise ValueError(f"likelihood 'bernoulli' needs binary data (num_levels=2), but the data has "
                             f"{self.num_levels} levels; use 'categorical' or 'logistic', or binarized data")
        if beta < 0 or kl_warmup_steps < 0:
            raise ValueError(f"beta and kl_warmup_steps must be non-negative, got {beta} and {kl_warmup_steps}")
        if iw_samples < 1 or iw_chunk_size < 1:
            raise ValueError(f"iw_samples and iw_chunk_size must be positive, got {iw_samples} and {iw_chunk_size}")
        self.likelihood = likelihood
        self.params_per_subpixel = {"bernoulli": 1, "categorical": self.num_levels, "logistic": 2}[likelihood]
        self.beta, self.kl_warmup_steps = float(beta), int(kl_warmup_steps)
        self.iw_samples, self.iw_chunk_size = int(iw_samples), int(iw_chunk_size)
        self._build(2 * z_dim, self.image_shape[0] * self.params_per_subpixel, z_dim=z_dim, arch=arch,
                    channels=channels, blocks=blocks, hidden_sizes=hidden_sizes)

    # ---- networks --------------------------------------------------------------------------------------------
    def encode_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 images -> mean and log-variance of ``q(z | x)``, each ``(N, z_dim)``."""
        return self._posterior(self._levels(x))

    def _posterior(self, levels: Tensor) -> tuple[Tensor, Tensor]:
        mean, logvar = self.encoder(self._inputs(levels)).chunk(2, dim=-1)
        return mean, logvar

    def encode(self, x: Tensor) -> Tensor:
        """The posterior means ``(N, z_dim)``."""
        return self.encode_stats(x)[0]

    def _pixel_params(self, out: Tensor) -> Tensor:
        """Decoder output ``(..., C * P, H, W)`` -> ``(..., C, H, W, P)``, P parameters per sub-pixel."""
        c, h, w = self.image_shape
        p = self.params_per_subpixel
        return out.view(*out.shape[:-3], c, p, h, w).movedim(-3, -1)

    def pixel_log_prob(self, out: Tensor, levels: Tensor) -> Tensor:
        """``log p(x | z)`` summed over the sub-pixels: decoder output ``(..., C * P, H, W)`` and integer levels
        ``(..., C, H, W)`` (leading dimensions broadcast) -> ``(...)``."""
        params = self._pixel_params(out)
        if self.likelihood == "bernoulli":
            logp = bernoulli_log_prob(levels.to(params.dtype), params[..., 0])
        elif self.likelihood == "categorical":
            logp = categorical_log_prob(levels, params)
        else:
            logp = discretized_logistic_log_prob(levels.to(params.dtype), params[..., 0], params[..., 1],
                                                 self.num_levels)
        return logp.flatten(-3).sum(-1)

    @torch.no_grad()
    def _draw_pixels(self, out: Tensor, generator: torch.Generator | None) -> Tensor:
        """A draw of integer levels ``(N, C, H, W)`` from ``p(x | z)``, decoder output ``out``."""
        params = self._pixel_params(out)
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(params[..., 0]), generator=generator).long()
        u = torch.rand(params.shape if self.likelihood == "categorical" else params.shape[:-1],
                       generator=generator, device=out.device).clamp(1e-6, 1 - 1e-6)
        if self.likelihood == "categorical":
            return (params - torch.log(-torch.log(u))).argmax(-1)  # Gumbel-max
        # Inverse CDF of the logistic, then the bin it falls in; the clamp gives the edge levels their tails.
        mean, log_scale = params[..., 0], params[..., 1].clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)
        x = mean + log_scale.exp() * (torch.log(u) - torch.log1p(-u))
        return torch.round((x + 1.0) * (self.num_levels - 1) / 2.0).clamp(0, self.num_levels - 1).long()

    @torch.no_grad()
    def decode_mean(self, z: Tensor) -> Tensor:
        """The mean of ``p(x | z)`` as an 8-bit grey image (Bernoulli: the probabilities; logistic: the location,
        clamped to the pixel range), for reconstructions, interpolations and the manifold picture."""
        params = self._pixel_params(self.decoder(z))
        if self.likelihood == "bernoulli":
            mean01 = torch.sigmoid(params[..., 0])
        elif self.likelihood == "categorical":
            grid = torch.arange(self.num_levels, device=z.device, dtype=params.dtype) / (self.num_levels - 1)
            mean01 = params.softmax(-1) @ grid
        else:
            mean01 = (params[..., 0].clamp(-1, 1) + 1) / 2
        return (mean01 * 255).round().to(torch.uint8)

    def prior_transform(self, eps: Tensor) -> Tensor:
        return eps  # the prior is N(0, I)

    # ---- the objective -------------------------------------------------------------------------------------
    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One-sample ``-log p(x | z)`` (``z ~ q(z | x)`` reparameterised) and the analytic KL, each ``(N,)`` nats.

        Their sum is the negative ELBO.
        """
        levels = self._levels(x)
        mean, logvar = self._posterior(levels)
        eps = torch.randn(mean.shape, generator=generator, device=self.device)
        z = mean + torch.exp(0.5 * logvar) * eps
        recon = -self.pixel_log_prob(self.decoder(z), levels)
        return recon, gaussian_kl_to_standard(mean, logvar)

    def iwae_loss(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``-log (1/k) sum_i p(x, z_i) / q(z_i | x)``, ``z_1..z_k ~ q(z | x)`` reparameterised: the negative
        k-sample importance-weighted bound of [2] (eq. 8), ``(N,)`` nats, differentiable. For ``k = 1`` it is the
        one-sample negative ELBO with a sampled (not analytic) KL; it decreases towards ``-log p(x)`` as ``k``
        grows, in expectation."""
        levels = self._levels(x)
        mean, logvar = self._posterior(levels)
        eps = torch.randn((k, *mean.shape), generator=generator, device=self.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * eps  # (k, N, D)
        out = self.decoder(z.flatten(0, 1))
        out = out.view(k, x.shape[0], *out.shape[1:])
        log_w = (self.pixel_log_prob(out, levels) + standard_normal_log_prob(z)
                 - diagonal_gaussian_log_prob(z, mean, logvar))  # (k, N)
        return -(torch.logsumexp(log_w, dim=0) - math.log(k))

    def kl_weight(self) -> float:
        if self.kl_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, (self.global_step + 1) / self.kl_warmup_steps)

    def resolve_estimate(self, estimate: Estimate | None = None) -> Estimate:
        estimate = estimate or Estimate()
        return Estimate(k=self.iw_samples if estimate.k is None else int(estimate.k), seed=estimate.seed,
                        chunk=self.iw_chunk_size if estimate.chunk is None else int(estimate.chunk))

    def likelihood_protocol(self, estimate: Estimate | None = None) -> str:
        return f"importance-weighted k={self.resolve_estimate(estimate).k}"

    @torch.no_grad()
    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        """Importance-weighted estimate of ``log p(x)`` in nats, ``(N,)`` float64, with ``estimate.k`` samples from
        ``q(z | x)`` (default ``iw_samples``) [2]: a stochastic lower bound whose bias shrinks as ``k`` grows.

        An image's samples are keyed on ``(estimate.seed, the image)`` (:func:`image_keys`, :class:`KeyedNormal`):
        for a given seed its estimate does not depend on the batch, the rank or ``estimate.chunk`` (default
        ``iw_chunk_size``), which caps the decoder evaluations made at once (samples times images). Without a
        seed one is drawn from the global RNG: a fresh estimate per call. The benchmark and the test step pass
        their seed. No gradients: this is an evaluation, use :meth:`elbo_terms` to train. ``labels`` are ignored
        (the model is unconditional).
        """
        estimate = self.resolve_estimate(estimate)
        seed = int(torch.randint(0, 2**62, ()).item()) if estimate.seed is None else estimate.seed
        k, chunk_size = estimate.k, estimate.chunk
        levels = self._levels(x)
        mean, logvar = self._posterior(levels)
        std = torch.exp(0.5 * logvar)
        noise = KeyedNormal(image_keys(x, seed), self.z_dim, device=mean.device, dtype=mean.dtype)

        def q_sample(start: int, m: int) -> Tensor:
            return mean + std * noise(start, m)  # (m, N, D)

        def log_joint(z: Tensor) -> Tensor:
            m, n = z.shape[:2]
            out = self.decoder(z.flatten(0, 1))  # (m, N, D) -> (m * N, D) -> (m * N, C * P, H, W)
            out = out.view(m, n, *out.shape[1:])
            return self.pixel_log_prob(out, levels) + standard_normal_log_prob(z)

        def q_log_prob(z: Tensor) -> Tensor:
            return diagonal_gaussian_log_prob(z, mean, logvar)

        samples_per_chunk = max(1, chunk_size // max(1, x.shape[0]))
        return iw_log_likelihood(log_joint, q_sample, q_log_prob, k, chunk_size=samples_per_chunk)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """Decode ``z ~ N(0, I)`` and draw every pixel from ``p(x | z)`` (not its mean): samples of the model's
        distribution, so Bernoulli samples are speckled where the decoder is unsure."""
        self.check_labels(n, labels)
        z = torch.randn(n, self.z_dim, generator=generator, device=self.device)
        return from_levels(self._draw_pixels(self.decoder(z), generator), self.num_levels)

    # ---- Lightning -----------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, _ = batch
        if self.train_samples > 1:  # the IWAE objective [2]; beta and the KL warm-up apply to the ELBO only
            loss = self.iwae_loss(x, self.train_samples)
            if self.logs_this_step():
                self.log("train/iwae_nats", loss.mean().detach(), prog_bar=True, batch_size=x.shape[0])
            return loss.mean() / self.num_dims
        recon, kl = self.elbo_terms(x)
        weight = self.kl_weight()
        n = x.shape[0]
        if self.logs_this_step():
            self.log("train/recon_nats", recon.mean().detach(), batch_size=n)
            self.log("train/kl_nats", kl.mean().detach(), batch_size=n)
            self.log("train/elbo_nats", (recon + kl).mean().detach(), prog_bar=True, batch_size=n)
            if self.kl_warmup_steps:
                self.log("train/kl_weight", weight, batch_size=n)
        # Per-dimension loss keeps the learning rate independent of the image size.
        return (recon + weight * kl).mean() / self.num_dims

    def _eval_step(self, x: Tensor, stage: str, batch_idx: int, dataloader_idx: int) -> None:
        # float32 with autocast off and each image counted once over all ranks: the benchmark's numbers (see
        # LikelihoodModule); the test NLL uses the benchmark's default seed, so it equals the benchmark's estimate.
        with torch.autocast(self.device.type, enabled=False):
            recon, kl = self.elbo_terms(x)
            values = {"elbo_nats": recon + kl, "recon_nats": recon, "kl_nats": kl}
            if stage == "test":
                values["nll_nats"] = -self.log_prob(x, estimate=Estimate(seed=0))
            elif self.train_samples > 1:  # the training objective, to select checkpoints by
                values["iwae_nats"] = -self.log_prob(x, estimate=Estimate(k=self.train_samples, seed=0))
        self.accumulate_eval(stage, values, batch_idx, dataloader_idx)

    def _log_eval(self, stage: str) -> None:
        names = ["elbo_nats", "recon_nats", "kl_nats"]
        if stage == "test":
            names.append("nll_nats")
        elif self.train_samples > 1:
            names.append("iwae_nats")
        means = self.eval_means(stage, names)
        kwargs = dict(sync_dist=True)  # every rank holds the same global value; this only silences a warning
        self.log(f"{stage}/elbo_nats", means["elbo_nats"], prog_bar=True, **kwargs)
        self.log(f"{stage}/elbo_bpd", bits_per_dim(means["elbo_nats"], self.num_dims), **kwargs)
        self.log(f"{stage}/recon_nats", means["recon_nats"], **kwargs)
        self.log(f"{stage}/kl_nats", means["kl_nats"], **kwargs)
        if stage == "test":
            self.log("test/nll_nats", means["nll_nats"], prog_bar=True, **kwargs)
            self.log("test/nll_bpd", bits_per_dim(means["nll_nats"], self.num_dims), prog_bar=True, **kwargs)
            self.log("test/iw_samples", float(self.iw_samples), **kwargs)
        elif "iwae_nats" in means:
            self.log(f"{stage}/iwae_nats", means["iwae_nats"], prog_bar=True, **kwargs)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self._eval_step(batch[0], "val", batch_idx, dataloader_idx)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self._eval_step(batch[0], "test", batch_idx, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")


class Autoencoder(_LatentModel):
    """Deterministic autoencoder: ``z = encoder(x)``, trained to reconstruct ``x`` in [0, 1] with the mean squared
    error (``train/recon_loss``, ``val/recon_loss``, ``test/recon_loss``: per pixel).

    An autoencoder has no prior, so decoding ``z ~ N(0, I)`` would decode codes it never saw. :meth:`sample`
    instead decodes codes drawn from a full-covariance Gaussian fitted to the training codes: ``code_mean`` and
    ``code_cov`` are running (exponential moving average, ``code_momentum``) mean and covariance of the codes of
    the training batches, buffers saved in the checkpoint, like batch norm's running statistics. The decoder
    gives a value per sub-pixel, not a distribution, so a sample is that output clamped to [0, 1] and rounded to
    the data's levels (binary data: thresholded at 1/2). There is no likelihood (``log_prob`` raises
    :class:`~lightning_gen.models.base.NoLikelihoodError`).

    The decoder's output is linear, not squashed by a sigmoid: under an L2 loss a sigmoid saturates on MNIST's
    black background and training sits at "predict black" for hundreds of steps.

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`.
        z_dim, arch, channels, blocks, hidden_sizes: as for :class:`VAE`.
        code_momentum: weight of each training batch in the running code statistics.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 256,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        z_dim: int = 32,
        arch: str = "conv",
        channels: int = 32,
        blocks: int = 0,
        hidden_sizes: Sequence[int] = (200, 200),
        code_momentum: float = 0.01,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        if not 0 < code_momentum <= 1:
            raise ValueError(f"code_momentum must be in (0, 1], got {code_momentum}")
        self.code_momentum = float(code_momentum)
        self._build(z_dim, self.image_shape[0], z_dim=z_dim, arch=arch, channels=channels, blocks=blocks,
                    hidden_sizes=hidden_sizes)
        self.register_buffer("code_mean", torch.zeros(z_dim))
        self.register_buffer("code_second_moment", torch.eye(z_dim))

    def encode(self, x: Tensor) -> Tensor:
        return self._code(self._levels(x))

    def _code(self, levels: Tensor) -> Tensor:
        return self.encoder(self._inputs(levels))

    def reconstruct(self, z: Tensor) -> Tensor:
        """Codes -> reconstructions ``(N, C, H, W)`` on the [0, 1] scale of the targets (not clamped)."""
        return self.decoder(z)

    @torch.no_grad()
    def decode_mean(self, z: Tensor) -> Tensor:
        return (self.reconstruct(z).clamp(0, 1) * 255).round().to(torch.uint8)

    @property
    def code_cov(self) -> Tensor:
        return self.code_second_moment - torch.outer(self.code_mean, self.code_mean)

    def prior_transform(self, eps: Tensor) -> Tensor:
        # cov = V diag(lam) V^T -> z = mean + V sqrt(lam) eps: works for a singular covariance too.
        lam, vecs = torch.linalg.eigh(self.code_cov.double())
        root = (vecs * lam.clamp(min=0).sqrt()).to(eps.dtype)
        return self.code_mean + eps @ root.T

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        self.check_labels(n, labels)
        eps = torch.randn(n, self.z_dim, generator=generator, device=self.device)
        levels = torch.round(self.reconstruct(self.prior_transform(eps)).clamp(0, 1) * (self.num_levels - 1)).long()
        return from_levels(levels, self.num_levels)

    @torch.no_grad()
    def update_code_statistics(self, z: Tensor) -> None:
        """Move the running code mean and second moment towards those of the codes ``z`` ``(B, z_dim)``."""
        z = z.detach()
        self.code_mean.lerp_(z.mean(0), self.code_momentum)
        self.code_second_moment.lerp_(z.T @ z / z.shape[0], self.code_momentum)

    def _recon_loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        levels = self._levels(x)
        target = levels.float() / (self.num_levels - 1)
        z = self._code(levels)
        return F.mse_loss(self.reconstruct(z), target), z

    def training_step(self, batch, batch_idx):
        x, _ = batch
        loss, z = self._recon_loss(x)
        self.update_code_statistics(z)
        if self.logs_this_step():
            self.log("train/recon_loss", loss.detach(), prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        loss, _ = self._recon_loss(batch[0])
        self.log("val/recon_loss", loss, prog_bar=True, batch_size=batch[0].shape[0], sync_dist=True)

    def test_step(self, batch, batch_idx):
        loss, _ = self._recon_loss(batch[0])
        self.log("test/recon_loss", loss, batch_size=batch[0].shape[0], sync_dist=True)
