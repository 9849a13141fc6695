"""The variational autoencoder, with an importance-weighted likelihood estimate (the deterministic autoencoder and
the family's shared networks: :mod:`lightning_gen.models.autoencoder`; pictures: :mod:`lightning_gen.pictures`).

[1] arXiv 1312.6114 (Kingma & Welling 2013, auto-encoding variational Bayes: the VAE, the reparameterisation
    trick, the analytic Gaussian KL, the 2-D latent manifold figure).
[2] arXiv 1509.00519 (Burda, Grosse & Salakhutdinov 2015, IWAE: the k-sample importance-weighted bound used as
    the NLL estimate, k = 5000, and the 784-200-200-50 networks of ``arch="mlp"``).
[3] arXiv 1701.05517 (Salimans et al. 2017, PixelCNN++: the discretised logistic with open edge bins).

The VAE's pixel distribution ``p(x | z)`` is chosen by ``likelihood`` so that its numbers compare with the
autoregressive models' (nats of *discrete* images, bits/dim over the data's levels):

- ``"bernoulli"``: one logit per sub-pixel, binary data only (``num_levels=2``);
- ``"categorical"``: a ``num_levels``-way softmax per sub-pixel;
- ``"logistic"``: a discretised logistic per sub-pixel (one mean and log-scale) with open edge bins, as in [3]
  but one component instead of a mixture.

The heads are those of :mod:`lightning_gen.nn.pixels`; the Gaussians, the keyed noise and the importance-weighted
estimator are in :mod:`lightning_gen.nn.latent`.

Where the code differs from [1]/[2]: the default networks are convolutional (``arch="conv"``, see
:mod:`lightning_gen.nn.conv`); ``arch="mlp"`` gives the networks of [2]. Validation reports the one-sample ELBO
(cheap); only the test step and :meth:`VAE.log_prob` pay for the k-sample estimate. Training maximises the
ELBO (k = 1), optionally with a KL weight ``beta`` [beta-VAE, Higgins et al. 2017] and a linear KL warm-up.

The importance samples of an image are keyed on ``(seed, the image)`` (:class:`~lightning_gen.nn.latent.KeyedNormal`),
so an image's estimate is the same in any batch, on any rank, with any chunk size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from lightning_gen.models.autoencoder import Autoencoder, _LatentModel  # noqa: F401  (configs name vae.Autoencoder)
from lightning_gen.models.base import Estimate, LikelihoodModule
from lightning_gen.nn.latent import (KeyedNormal, diagonal_gaussian_log_prob, gaussian_kl_to_standard, image_keys,
                                     iw_log_likelihood, standard_normal_log_prob)
from lightning_gen.nn.pixels import Categorical, from_levels, pixel_head


class VAE(_LatentModel, LikelihoodModule):
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
    bpd_names = ("nll_nats", "elbo_nats")

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
        if likelihood == "bernoulli" and self.num_levels != 2:
            raise ValueError(f"likelihood 'bernoulli' needs binary data (num_levels=2), but the data has "
                             f"{self.num_levels} levels; use 'categorical' or 'logistic', or binarized data")
        self.head = pixel_head(likelihood, self.num_levels)
        if beta < 0 or kl_warmup_steps < 0:
            raise ValueError(f"beta and kl_warmup_steps must be non-negative, got {beta} and {kl_warmup_steps}")
        if iw_samples < 1 or iw_chunk_size < 1:
            raise ValueError(f"iw_samples and iw_chunk_size must be positive, got {iw_samples} and {iw_chunk_size}")
        self.likelihood = likelihood
        self.params_per_subpixel = self.head.params_per_subpixel
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
        logp = self.head.log_prob(self._pixel_params(out), levels)
        return logp.flatten(-3).sum(-1)

    @torch.no_grad()
    def _draw_pixels(self, out: Tensor, generator: torch.Generator | None) -> Tensor:
        """A draw of integer levels ``(N, C, H, W)`` from ``p(x | z)``, decoder output ``out``."""
        params = self._pixel_params(out)
        u = torch.rand(params.shape if isinstance(self.head, Categorical) else params.shape[:-1],
                       generator=generator, device=out.device)
        if isinstance(self.head, Categorical):
            # Gumbel-max from one uniform per level, not the head's inverse CDF: the published samples (and FIDs)
            # were drawn this way.
            u = u.clamp(1e-6, 1 - 1e-6)
            return (params - torch.log(-torch.log(u))).argmax(-1)
        return self.head.sample(params, u)

    @torch.no_grad()
    def decode_mean(self, z: Tensor) -> Tensor:
        """The mean of ``p(x | z)`` as an 8-bit grey image (Bernoulli: the probabilities; logistic: the location,
        clamped to the pixel range), for reconstructions, interpolations and the manifold picture."""
        mean01 = self.head.mean(self._pixel_params(self.decoder(z)))
        return (mean01 * 255).round().to(torch.uint8)

    def prior_transform(self, eps: Tensor) -> Tensor:
        return eps  # the prior is N(0, I)

    # ---- the objective -------------------------------------------------------------------------------------
    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One-sample ``-log p(x | z)`` (``z ~ q(z | x)`` reparameterised) and the analytic KL, each ``(N,)`` nats.

        Their sum is the negative ELBO, computed in the weights' dtype (float32) under any autocast
        (:meth:`_full_precision`).
        """
        with self._full_precision():
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
        grows, in expectation. Computed in float32 under any autocast, as :meth:`elbo_terms`."""
        with self._full_precision():
            levels = self._levels(x)
            mean, logvar = self._posterior(levels)
            eps = torch.randn((k, *mean.shape), generator=generator, device=self.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * eps  # (k, N, D)
            out = self.decoder(z.flatten(0, 1))
            out = out.view(k, x.shape[0], *out.shape[1:])
            log_w = (self.pixel_log_prob(out, levels) + standard_normal_log_prob(z)
                     - diagonal_gaussian_log_prob(z, mean, logvar))  # (k, N)
            return -(torch.logsumexp(log_w, dim=0) - math.log(k))

    def _full_precision(self) -> torch.autocast:
        """Autocast off: the losses run the networks and sum hundreds of per-pixel log-likelihoods in the weights'
        dtype. Under bf16 autocast a 784-200-200-50 net's IWAE loss is off by about 1.6 nats an image (issue 25),
        which reweights the importance samples; in float32 it agrees with the unautocast loss to 1e-4 nats."""
        return torch.autocast(self.device.type, enabled=False)

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

    def eval_names(self, stage: str) -> tuple[str, ...]:
        if stage == "test":
            return ("elbo_nats", "recon_nats", "kl_nats", "nll_nats")
        return ("elbo_nats", "recon_nats", "kl_nats") + (("iwae_nats",) if self.train_samples > 1 else ())

    def eval_values(self, x: Tensor, y: Tensor, stage: str) -> dict[str, Tensor]:
        """The one-sample negative ELBO and its terms; at test the ``iw_samples`` estimate of the NLL under the
        benchmark's default seed (so it equals the benchmark's), in validation for ``train_samples > 1`` the
        training objective (``iwae_nats``, fixed seed), to select checkpoints by."""
        recon, kl = self.elbo_terms(x)
        values = {"elbo_nats": recon + kl, "recon_nats": recon, "kl_nats": kl}
        if stage == "test":
            values["nll_nats"] = -self.log_prob(x, estimate=Estimate(seed=0))
        elif self.train_samples > 1:
            values["iwae_nats"] = -self.log_prob(x, estimate=Estimate(k=self.train_samples, seed=0))
        return values

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log("test/iw_samples", float(self.iw_samples), sync_dist=True)
