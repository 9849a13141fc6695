"""The denoising diffusion probabilistic model, trained on L_simple, scored by its variational bound on the discrete
data, sampled ancestrally or by deterministic DDIM (the schedule, bound and samplers:
:mod:`lightning_gen.nn.diffusion`; the network: :mod:`lightning_gen.nn.unet`).

[1] arXiv 2006.11239 (Ho, Jain & Abbeel 2020, DDPM: epsilon prediction, L_simple, the bound of eq. 5 with the
    discretized Gaussian decoder, ancestral sampling; CIFAR-10 <= 3.70 bits/dim, FID 3.17).
[2] arXiv 2010.02502 (Song, Meng & Ermon 2021, DDIM: the deterministic sampler on S of the T timesteps).

The likelihood is the bound, a lower bound on ``log p(x)`` (``likelihood_kind = "bound"``). Its ``T - 1`` KL terms
each cost a network evaluation, so :meth:`DDPM.log_prob` estimates their sum from ``k`` of them per image, drawn
without replacement (``Estimate.k``, default ``bound_timesteps``): ``(T - 1) / k`` times their sum is unbiased for
the full sum, and ``k >= T - 1`` sums every term. ``L_T`` (closed form) and ``L_0`` (the decoder) are always
included. Each term is evaluated at one draw of ``x_t ~ q(x_t | x_0)``, as in [1]'s code, so even the full sum is a
one-sample estimate of the bound, unbiased. An image's timesteps and noise are keyed on ``(seed, the image)``
(:func:`~lightning_gen.nn.latent.image_keys`), so for a seed its estimate does not depend on the batch, rank or
chunk size; the standard error over test images then contains this Monte Carlo noise.

Where the code differs from [1]: a CPU-sized U-Net (:class:`~lightning_gen.nn.unet.UNet`); for T other than 1000
the linear schedule is scaled by 1000 / T (Nichol & Dhariwal 2021); an optional EMA of the weights (``ema_decay``;
[1] uses 0.9999 over 800k steps) which sampling and the bound use.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from lightning_gen.models.base import Estimate, LikelihoodModule
from lightning_gen.nn.diffusion import Schedule, ancestral_sample, check_ddim_steps, ddim_sample, to_nearest_level
from lightning_gen.nn.latent import KeyedNormal, image_keys
from lightning_gen.nn.pixels import from_levels, to_levels
from lightning_gen.nn.unet import UNet

SAMPLERS = ("ddim", "ancestral")


class DDPM(LikelihoodModule):
    """DDPM [1] with an epsilon-predicting U-Net.

    Logged: ``train/loss`` (L_simple, the mean squared error of the predicted noise); ``{val,test}/nll_nats`` and
    ``{val,test}/nll_bpd``, the negative bound (an upper bound on the NLL) estimated from ``bound_timesteps``
    timesteps per image under seed 0.

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`.
        timesteps: T.
        beta_start, beta_end: the linear schedule's ends (None: [1]'s 1e-4 and 0.02, scaled by 1000 / T).
        variance: the reverse process's variance, ``"large"`` (``beta_t``, [1]'s CIFAR-10 choice) or ``"small"``.
        channels, channel_mults, blocks, attention, dropout: the U-Net (:class:`~lightning_gen.nn.unet.UNet`).
        sampler: what :meth:`sample` runs: ``"ddim"`` (deterministic, ``sample_steps`` network evaluations) or
            ``"ancestral"`` (T evaluations).
        sample_steps: DDIM's step count S; it must divide T.
        bound_timesteps: ``k``, the KL terms per image of the bound's estimate (``>= T - 1``: all of them).
        bound_chunk: images times terms evaluated at once by :meth:`log_prob` (memory only).
        ema_decay: if > 0, sampling and the bound use an exponential moving average of the weights (with a
            warm-up, :meth:`update_ema`).
    """

    family = "diffusion"
    likelihood_kind = "bound"

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 256,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        timesteps: int = 1000,
        beta_start: float | None = None,
        beta_end: float | None = None,
        variance: str = "large",
        channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        blocks: int = 1,
        attention: bool = False,
        dropout: float = 0.0,
        sampler: str = "ddim",
        sample_steps: int = 50,
        bound_timesteps: int = 4,
        bound_chunk: int = 1024,
        ema_decay: float = 0.0,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        self.schedule = Schedule(timesteps, beta_start, beta_end, variance)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
        if sampler == "ddim":
            check_ddim_steps(sample_steps, timesteps)
        if bound_timesteps < 1 or bound_chunk < 1:
            raise ValueError(f"bound_timesteps and bound_chunk must be positive, got {bound_timesteps} and "
                             f"{bound_chunk}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.timesteps, self.sampler, self.sample_steps = int(timesteps), sampler, int(sample_steps)
        self.bound_timesteps, self.bound_chunk = int(bound_timesteps), int(bound_chunk)
        self.ema_decay = float(ema_decay)
        self.net = UNet(self.image_shape[0], channels, channel_mults, blocks, attention, dropout)
        self.net.check_side(*self.image_shape[1:])
        self.net_ema = copy.deepcopy(self.net).requires_grad_(False) if ema_decay > 0 else None

    # ---- the network ---------------------------------------------------------------------------------------------
    def eps(self, xt: Tensor, t: Tensor) -> Tensor:
        """The predicted noise of the evaluation network (the EMA where there is one) at integer timesteps ``t``."""
        net = self.net_ema if self.net_ema is not None else self.net
        return net(xt.float(), t.float())

    def _x0(self, x: Tensor) -> Tensor:
        """uint8 images -> the level centres in [-1, 1], float64."""
        return to_levels(self.check_images(x), self.num_levels).double() * (2.0 / (self.num_levels - 1)) - 1

    # ---- the bound -------------------------------------------------------------------------------------------------
    def resolve_estimate(self, estimate: Estimate | None = None) -> Estimate:
        estimate = estimate or Estimate()
        k = self.bound_timesteps if estimate.k is None else int(estimate.k)
        return Estimate(k=min(k, self.timesteps - 1), seed=estimate.seed,
                        chunk=self.bound_chunk if estimate.chunk is None else int(estimate.chunk))

    def likelihood_protocol(self, estimate: Estimate | None = None) -> str:
        k, t = self.resolve_estimate(estimate).k, self.timesteps
        if k >= t - 1:
            return f"bound (T={t}; all {t - 1} KL terms summed, each at one draw of x_t; unbiased)"
        return (f"bound (T={t}; Monte Carlo over k={k} timesteps per image, unbiased; its noise is inside the "
                f"per-image SE)")

    @torch.no_grad()
    def bound_terms(self, x: Tensor, estimate: Estimate | None = None) -> dict[str, Tensor]:
        """The terms of the negative bound of each uint8 image, nats ``(N,)`` float64: ``prior`` (L_T), ``decoder``
        (L_0) and ``diffusion``, the estimate of ``sum_{t=2..T} L_{t-1}`` from ``estimate.k`` terms (see the module
        docstring). Their sum is ``-log_prob``."""
        estimate = self.resolve_estimate(estimate)
        seed = int(torch.randint(0, 2**62, ()).item()) if estimate.seed is None else estimate.seed
        x0 = self._x0(x).to(self.device)
        n, k = x0.shape[0], estimate.k
        keys = image_keys(x, seed)
        noise = KeyedNormal(keys, self.num_dims, device=self.device)  # draw 0: L_0's x_1; draws 1..k: the KL terms'
        order = torch.stack([torch.randperm(self.timesteps - 1, generator=torch.Generator().manual_seed(key))[:k]
                             for key in keys]).to(self.device) + 2  # (N, k) timesteps in 2..T
        decoder = self.schedule.decoder_nll(x0, noise(0, 1)[0].double().view_as(x0), self.eps, self.num_levels)
        total = torch.zeros(n, dtype=torch.float64, device=self.device)
        per_chunk = max(1, estimate.chunk // max(1, n))
        for start in range(0, k, per_chunk):
            m = min(per_chunk, k - start)
            eps = noise(1 + start, m).double().view(m * n, *x0.shape[1:])  # (m, N, D) -> (m * N, C, H, W)
            t = order[:, start:start + m].T.reshape(-1)  # (N, m) -> (m * N,), term-major like the noise
            terms = self.schedule.kl_term(x0.repeat(m, 1, 1, 1), t, eps, self.eps)
            total += terms.view(m, n).sum(0)
        return {"prior": self.schedule.prior_kl(x0), "decoder": decoder,
                "diffusion": total * ((self.timesteps - 1) / k)}

    @torch.no_grad()
    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        """The variational bound on ``log p(x)`` in nats, ``(N,)`` float64 (eq. 5 of [1]), estimated as the module
        docstring says. ``labels`` are ignored (the model is unconditional)."""
        return -sum(self.bound_terms(x, estimate).values())

    # ---- sampling ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sampling_protocol(self) -> str:
        steps = self.sample_steps if self.sampler == "ddim" else self.timesteps
        return f"{'DDIM (eta = 0)' if self.sampler == 'ddim' else 'ancestral'}, {steps} steps of T = {self.timesteps}"

    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """``sampler``: DDIM over ``sample_steps`` steps (deterministic given ``x_T``, its output rounded to the nearest
        level) or ancestral sampling over all T steps ending in a draw from the discretized decoder."""
        self.check_labels(n, labels)
        x_T = torch.randn((n, *self.image_shape), generator=generator, device=self.device)
        if self.sampler == "ddim":
            levels = to_nearest_level(ddim_sample(self.schedule, self.eps, x_T, self.sample_steps), self.num_levels)
        else:
            levels = ancestral_sample(self.schedule, self.eps, x_T, generator, self.num_levels)
        return from_levels(levels, self.num_levels)

    # ---- Lightning ---------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, _ = batch
        x0 = self._x0(x).float()
        t = torch.randint(1, self.timesteps + 1, (x0.shape[0],), device=self.device)
        noise = torch.randn(x0.shape, device=self.device)
        loss = F.mse_loss(self.net(self.schedule.q_sample(x0, t, noise), t.float()), noise)  # L_simple, eq. 14
        if self.logs_this_step():
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=x0.shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.update_ema(self.global_step)

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """Move the EMA towards the weights after optimizer step ``step`` (1, 2, ..), with decay
        ``min(ema_decay, (1 + step) / (10 + step))``: the warm-up keeps a short run's average off the initial
        weights (at 0.999 alone, 13% of it would still be the initialisation after 2,000 steps)."""
        if self.net_ema is not None:
            decay = min(self.ema_decay, (1 + step) / (10 + step))
            for averaged, current in zip(self.net_ema.parameters(), self.net.parameters()):
                averaged.lerp_(current, 1.0 - decay)

    def eval_values(self, x: Tensor, y: Tensor, stage: str) -> dict[str, Tensor]:
        """The negative bound under seed 0, the same estimate as the benchmark's default."""
        return {"nll_nats": -self.log_prob(x, estimate=Estimate(seed=0))}
