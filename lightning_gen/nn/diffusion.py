"""The Gaussian diffusion of DDPM [1]: the noise schedule, the forward process, the terms of the variational bound
on the discrete data, and the two samplers (ancestral [1], deterministic DDIM [2]). Plain torch, no networks: every
function takes the noise prediction ``eps(x_t, t)`` as a callable.

[1] arXiv 2006.11239 (Ho, Jain & Abbeel 2020, DDPM: the linear schedule 1e-4..0.02 at T = 1000, eq. 4 for
    ``q(x_t | x_0)``, eqs. 6-7 for the posterior ``q(x_{t-1} | x_t, x_0)``, eq. 5 for the bound, eq. 11 for the
    epsilon parameterisation of the mean, eq. 13 for the discretized Gaussian decoder, eq. 14 for L_simple).
[2] arXiv 2010.02502 (Song, Meng & Ermon 2021, DDIM: eq. 12 with sigma = 0 on a sub-sequence of the timesteps).
[3] arXiv 2102.09672 (Nichol & Dhariwal 2021: the linear schedule scaled by 1000 / T for other T).

Timesteps count from 1 as in [1]: ``x_0`` is the data in [-1, 1], ``x_t ~ N(sqrt(abar_t) x_0, (1 - abar_t) I)`` with
``abar_t = prod_{s <= t} (1 - beta_s)``, ``t = 1..T``. The reverse process is ``p(x_{t-1} | x_t) = N(mu(x_t, t),
sigma_t^2 I)`` with ``sigma_t^2 = beta_t`` ("large") or the posterior's ``beta~_t`` ("small"); at ``t = 1`` both use
``beta~_2``, as [1]'s code does (``beta~_1 = 0``). The bound (eq. 5), in nats of the discrete image::

    -log p(x_0) <= L_T + sum_{t=2..T} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))                          closed form
    L_{t-1} = E_{x_t ~ q(x_t | x_0)} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))   Gaussian KL at one draw of x_t
    L_0     = E_{x_1 ~ q(x_1 | x_0)} -log p(x_0 | x_1)              discretized Gaussian, one draw of x_1

The schedule's numbers are float64; the terms are computed in float64 from the network's float32 output.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from lightning_gen.nn.pixels import _log1mexp

#: ``eps(x_t, t)``: noisy images ``(N, C, H, W)`` and integer timesteps ``(N,)`` in 1..T -> predicted noise.
EpsFn = Callable[[Tensor, Tensor], Tensor]
VARIANCES = ("large", "small")


class Schedule:
    """A linear beta schedule of ``timesteps`` steps and the quantities derived from it, indexed by ``t = 0..T``
    (entry 0: ``abar_0 = 1``, no noise).

    Args:
        timesteps: T.
        beta_start, beta_end: the first and last beta; None: [1]'s 1e-4 and 0.02 scaled by 1000 / T [3].
        variance: the reverse process's variance, ``"large"`` (``beta_t``) or ``"small"`` (``beta~_t``).
    """

    def __init__(self, timesteps: int = 1000, beta_start: float | None = None, beta_end: float | None = None,
                 variance: str = "large") -> None:
        if timesteps < 2:
            raise ValueError(f"timesteps must be at least 2, got {timesteps}")
        if variance not in VARIANCES:
            raise ValueError(f"unknown variance {variance!r}; expected one of {VARIANCES}")
        scale = 1000.0 / timesteps
        beta_start = 1e-4 * scale if beta_start is None else beta_start
        beta_end = 0.02 * scale if beta_end is None else beta_end
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"betas must satisfy 0 < beta_start <= beta_end < 1, got {beta_start} and {beta_end}: "
                             f"with T={timesteps} the default scaled schedule needs T >= 21")
        self.timesteps, self.variance = int(timesteps), variance
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])  # (T + 1,), betas[0] unused
        self.alphas = 1 - self.betas
        self.abar = torch.cumprod(self.alphas, 0)  # abar[0] = 1
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.abar[:-1]])
        # beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, t >= 1 (beta~_1 = 0).
        self.posterior_var = torch.cat([torch.zeros(1, dtype=torch.float64),
                                        (1 - abar_prev[1:]) / (1 - self.abar[1:]) * self.betas[1:]])
        model_var = self.betas.clone() if variance == "large" else self.posterior_var.clone()
        model_var[1] = self.posterior_var[2]
        self.model_var = model_var

    def at(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``values[t]`` shaped to broadcast against ``like`` ``(N, ...)``, on its device and in its dtype."""
        out = values.to(t.device)[t].to(like.dtype)
        return out.view(-1, *([1] * (like.dim() - 1)))

    # ---- the forward process and its posterior -----------------------------------------------------------------
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """A draw of ``x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` from standard normal ``noise``
        (eq. 4)."""
        abar = self.at(self.abar, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of ``q(x_{t-1} | x_t, x_0)`` (eqs. 6-7), ``t >= 2``."""
        abar, abar_prev = self.at(self.abar, t, x0), self.at(self.abar, t - 1, x0)
        beta, alpha = self.at(self.betas, t, x0), self.at(self.alphas, t, x0)
        mean = abar_prev.sqrt() * beta / (1 - abar) * x0 + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * xt
        return mean, self.at(self.posterior_var, t, x0)

    def model_mean(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """``mu(x_t, t) = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)`` (eq. 11)."""
        abar, beta, alpha = (self.at(v, t, xt) for v in (self.abar, self.betas, self.alphas))
        return (xt - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()

    def predict_x0(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """``x_0`` implied by ``x_t`` and the predicted noise."""
        abar = self.at(self.abar, t, xt)
        return (xt - (1 - abar).sqrt() * eps) / abar.sqrt()

    # ---- the terms of the bound (nats per image, summed over the sub-pixels) -------------------------------------
    def prior_kl(self, x0: Tensor) -> Tensor:
        """``L_T = KL(N(sqrt(abar_T) x_0, (1 - abar_T) I) || N(0, I))``, ``(N,)``."""
        t = torch.full((x0.shape[0],), self.timesteps, device=x0.device)
        mean, var = self.at(self.abar, t, x0).sqrt() * x0, 1 - self.at(self.abar, t, x0)
        return gaussian_kl(mean, var, torch.zeros_like(x0), torch.ones_like(var)).flatten(1).sum(1)

    def kl_term(self, x0: Tensor, t: Tensor, noise: Tensor, eps: EpsFn) -> Tensor:
        """``L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))`` at ``x_t = q_sample(x0, t, noise)``, ``t >= 2``:
        ``(N,)``."""
        xt = self.q_sample(x0, t, noise)
        mean, var = self.posterior(x0, xt, t)
        model_mean = self.model_mean(xt, t, eps(xt.float(), t).to(x0.dtype))
        return gaussian_kl(mean, var, model_mean, self.at(self.model_var, t, x0)).flatten(1).sum(1)

    def decoder_nll(self, x0: Tensor, noise: Tensor, eps: EpsFn, num_levels: int) -> Tensor:
        """``L_0 = -log p(x_0 | x_1)`` at ``x_1 = q_sample(x0, 1, noise)``: the discretized Gaussian decoder (eq. 13)
        with mean ``mu(x_1, 1)`` and variance ``sigma_1^2``, ``(N,)``. ``x0`` must lie on the levels' centres."""
        t = torch.ones(x0.shape[0], dtype=torch.long, device=x0.device)
        x1 = self.q_sample(x0, t, noise)
        mean = self.model_mean(x1, t, eps(x1.float(), t).to(x0.dtype))
        log_std = 0.5 * self.at(self.model_var, t, x0).log()
        return -discretized_gaussian_log_prob(x0, mean, log_std.expand_as(mean), num_levels).flatten(1).sum(1)


def gaussian_kl(mean1: Tensor, var1: Tensor, mean2: Tensor, var2: Tensor) -> Tensor:
    """Elementwise ``KL(N(mean1, var1) || N(mean2, var2))`` in nats."""
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1)


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, log_std: Tensor, num_levels: int) -> Tensor:
    """Elementwise ``log P(level)`` of values ``x`` on the level centres ``2k / (L - 1) - 1`` in [-1, 1], under a
    Gaussian cut into bins of width ``2 / (L - 1)`` around the centres, the edge bins open (eq. 13 of [1]).

    ``log(Phi(b) - Phi(a))`` is computed in whichever tail keeps it accurate: ``Phi(-a) - Phi(-b)`` above the mean.
    """
    half = 1.0 / (num_levels - 1)
    inv_std = torch.exp(-log_std)
    upper, lower = (x + half - mean) * inv_std, (x - half - mean) * inv_std
    first, last = x < -1 + half, x > 1 - half
    upper = torch.where(last, torch.full_like(upper, math.inf), upper)
    lower = torch.where(first, torch.full_like(lower, -math.inf), lower)
    flip = lower > 0  # the bin lies above the mean: use the upper tail
    hi, lo = torch.where(flip, -lower, upper), torch.where(flip, -upper, lower)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    gap = (log_hi - log_lo).clamp(min=1e-300)  # log Phi(hi) - log Phi(lo) > 0
    return log_hi + _log1mexp(gap)


# ---- samplers ----------------------------------------------------------------------------------------------------
def ddim_valid_steps(timesteps: int) -> list[int]:
    """The DDIM step counts that divide T."""
    return [s for s in range(1, timesteps + 1) if timesteps % s == 0]


def check_ddim_steps(steps: int, timesteps: int) -> None:
    if steps < 1 or timesteps % steps:
        raise ValueError(f"DDIM takes every (T / steps)-th timestep, so its step count must divide T={timesteps}; "
                         f"got {steps}. Valid counts: {ddim_valid_steps(timesteps)}")


@torch.no_grad()
def ddim_sample(schedule: Schedule, eps: EpsFn, x_T: Tensor, steps: int) -> Tensor:
    """Deterministic DDIM (eq. 12 of [2] with sigma = 0) from ``x_T`` over the timesteps ``T/S, 2T/S, .., T``: the
    final ``x_0`` in [-1, 1] (each predicted ``x_0`` clipped to [-1, 1], as [1]'s sampler does)."""
    check_ddim_steps(steps, schedule.timesteps)
    stride = schedule.timesteps // steps
    x = x_T
    for t_now in range(schedule.timesteps, 0, -stride):
        t = torch.full((x.shape[0],), t_now, dtype=torch.long, device=x.device)
        e = eps(x, t)
        x0 = schedule.predict_x0(x, t, e).clamp(-1, 1)
        abar_prev = float(schedule.abar[t_now - stride])
        x = math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * e
    return x


@torch.no_grad()
def ancestral_sample(schedule: Schedule, eps: EpsFn, x_T: Tensor, generator: torch.Generator | None,
                     num_levels: int) -> Tensor:
    """Ancestral sampling [1] (Algorithm 2), T network evaluations, ``x_{t-1} ~ p(x_{t-1} | x_t)`` with the mean
    computed from the clipped predicted ``x_0`` through the posterior (as [1]'s code does), ending with a draw from
    the discretized decoder ``p(x_0 | x_1)``: level indices ``(N, C, H, W)``."""
    x = x_T
    for t_now in range(schedule.timesteps, 0, -1):
        t = torch.full((x.shape[0],), t_now, dtype=torch.long, device=x.device)
        e = eps(x, t)
        if t_now > 1:
            x0 = schedule.predict_x0(x, t, e).clamp(-1, 1)
            mean, _ = schedule.posterior(x0, x, t)
        else:
            mean = schedule.model_mean(x, t, e)
        std = math.sqrt(float(schedule.model_var[t_now]))
        x = mean + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return to_nearest_level(x, num_levels)


def to_nearest_level(x: Tensor, num_levels: int) -> Tensor:
    """Values in (or beyond) [-1, 1] -> the index of the nearest level centre (the bin they fall in), int64."""
    return ((x.clamp(-1, 1) + 1) * (num_levels - 1) / 2).round().long()
