"""Annealed importance sampling (AIS) of a binary RBM's partition function, from a base-rate RBM.

[1] Salakhutdinov & Murray 2008, *On the Quantitative Analysis of Deep Belief Networks*, ICML (no arXiv id):
    AIS for RBMs, the base-rate starting model, the 14,500-temperature schedule.
[2] Neal 2001, *Annealed Importance Sampling*, Statistics and Computing 11: the estimator.

The intermediate distributions interpolate the energies of the base-rate model A (visible biases ``a``, no
weights, the ``H`` hidden units free) and the target RBM B (``W, b, c``) at inverse temperatures
``0 = beta_0 < beta_1 < ... < beta_K = 1`` ([1] eq. 15, hidden units summed out)::

    log p*_k(v) = (1 - beta_k) a.v + beta_k b.v + sum_j softplus(beta_k (c_j + (v W)_j))
    log Z_0     = sum_i softplus(a_i) + H log 2

A run draws ``v_0 ~ p_0`` exactly, then ``v_k ~ T_k(v_{k-1})`` by one Gibbs sweep that leaves ``p_k`` invariant
(``h ~ sigmoid(beta_k (c + v W))``, ``v ~ sigmoid((1 - beta_k) a + beta_k (b + W h))``), and carries the log weight
``log w = sum_{k=1..K} [log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1})]``. With ``M`` runs,
``Z_hat = Z_0 * mean(w)`` is unbiased for ``Z``; so ``E[log Z_hat] <= log Z`` (Jensen): **log Z is biased low,
and a log-likelihood ``-F(x) - log Z_hat`` biased high** (an optimistic NLL), the more so the larger the spread of
the weights. The reported uncertainty is the delta-method standard error of ``log mean(w)`` over the runs,
``sd(w) / (sqrt(M) mean(w))``: the spread over AIS runs, which says nothing of a bias the runs share.

The temperatures: ``"linear"`` spaces ``K`` of them evenly; ``"paper"`` is [1]'s schedule scaled to ``K``
(500 evenly in [0, 0.5], 4,000 in [0.5, 0.9], 10,000 in [0.9, 1] for ``K = 14,500``), denser where the
distributions change fastest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_gen.nn.rbm import bernoulli

SCHEDULES = ("paper", "linear")
#: [1]'s schedule: (end of the segment, share of the temperatures in it).
PAPER_SEGMENTS = ((0.5, 500 / 14500), (0.9, 4000 / 14500), (1.0, 10000 / 14500))


def betas(temperatures: int, schedule: str = "paper", *, device=None) -> Tensor:
    """``temperatures`` inverse temperatures from 0 to 1 inclusive, float64 ``(K,)``, increasing."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown AIS schedule {schedule!r}; expected one of {SCHEDULES}")
    if temperatures < 2:
        raise ValueError(f"AIS needs at least 2 temperatures (0 and 1), got {temperatures}")
    if schedule == "linear" or temperatures < 2 * len(PAPER_SEGMENTS):
        return torch.linspace(0, 1, temperatures, dtype=torch.float64, device=device)
    parts, start, left = [], 0.0, temperatures - 1  # beta_0 = 0, then the segments
    for i, (end, share) in enumerate(PAPER_SEGMENTS):
        n = left if i == len(PAPER_SEGMENTS) - 1 else max(1, round(share * temperatures))
        parts.append(torch.linspace(start, end, n + 1, dtype=torch.float64, device=device)[1:])
        start, left = end, left - n
    return torch.cat([torch.zeros(1, dtype=torch.float64, device=device), *parts])


@dataclass(frozen=True)
class AISResult:
    """An AIS estimate of ``log Z``: ``log_z = log Z_0 + log mean(w)`` and its delta-method standard error over
    ``runs`` runs, with the settings that produced it. ``ess`` is the runs' effective sample size
    ``(sum w)^2 / sum w^2``: near ``runs`` when the weights are even, near 1 when one run carries the estimate. Then
    the standard error means nothing (it is about 1 whatever the truth) and log Z is most likely too low."""

    log_z: float
    log_z_se: float
    runs: int
    temperatures: int
    schedule: str
    log_weights: Tensor
    ess: float = math.nan

    def converged(self) -> bool:
        """Whether the weights are even enough for the standard error to mean something: an effective sample
        size of at least a tenth of the runs (and 2)."""
        return self.ess >= max(2.0, 0.1 * self.runs)

    @classmethod
    def from_log_weights(cls, log_z0: float, log_w: Tensor, temperatures: int, schedule: str) -> AISResult:
        log_w = log_w.double()
        runs = log_w.numel()
        log_mean = torch.logsumexp(log_w, 0) - math.log(runs)
        rel = torch.exp(log_w - log_mean)  # w / mean(w): mean 1
        se = (rel.std() / math.sqrt(runs)).item() if runs > 1 else math.nan
        ess = math.exp((2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)).item())
        return cls(log_z0 + log_mean.item(), se, runs, temperatures, schedule, log_w.cpu(), ess)


@torch.no_grad()
def ais_log_partition(W: Tensor, b: Tensor, c: Tensor, base_bias: Tensor, *, runs: int, temperatures: int,
                      schedule: str = "paper", generator: torch.Generator | None = None) -> AISResult:
    """AIS estimate of the log partition function of the RBM ``(W, b, c)`` (see the module), from the base-rate
    model with visible biases ``base_bias`` ``(D,)``, ``runs`` independent runs through ``temperatures`` inverse
    temperatures of ``schedule``; every draw from ``generator``."""
    if runs < 1:
        raise ValueError(f"AIS needs at least one run, got {runs}")
    beta = betas(temperatures, schedule).tolist()
    a = base_bias.to(W.dtype)
    log_z0 = (F.softplus(a.double()).sum() + W.shape[1] * math.log(2.0)).item()
    v = bernoulli(torch.sigmoid(a).expand(runs, -1), generator)  # (M, D): v_0 ~ p_0 exactly
    log_w = torch.zeros(runs, dtype=torch.float64, device=W.device)
    for k in range(1, len(beta)):
        act = v @ W + c  # (M, H)
        log_w += ((beta[k] - beta[k - 1]) * (v @ (b - a))
                  + F.softplus(beta[k] * act).sum(-1) - F.softplus(beta[k - 1] * act).sum(-1)).double()
        if k < len(beta) - 1:  # T_k, leaving p_k invariant; the last weight needs no further draw
            h = bernoulli(torch.sigmoid(beta[k] * act), generator)
            v = bernoulli(torch.sigmoid((1 - beta[k]) * a + beta[k] * (b + h @ W.T)), generator)
    return AISResult.from_log_weights(log_z0, log_w, temperatures, schedule)
