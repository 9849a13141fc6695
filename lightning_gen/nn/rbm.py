"""The binary restricted Boltzmann machine's energy, free energy, Gibbs steps and exact partition function, in plain
torch (the annealed importance sampling of its partition function is :mod:`lightning_gen.nn.ais`).

Visible units ``v in {0, 1}^D``, hidden units ``h in {0, 1}^H``, weights ``W (D, H)``, visible biases ``b (D,)``,
hidden biases ``c (H,)``::

    E(v, h) = -b.v - c.h - v.W.h                p(v, h) = exp(-E(v, h)) / Z
    F(v)    = -b.v - sum_j softplus(c_j + (v W)_j)          (free energy: p(v) = exp(-F(v)) / Z)
    p(h_j = 1 | v) = sigmoid(c_j + (v W)_j)     p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)

``Z`` sums over ``2^min(D, H)`` states of the smaller layer once the other is summed out in closed form
(:func:`log_partition_exact`), so it is exact for tiny models and estimated by AIS otherwise.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

#: States of the enumerated layer evaluated at once by :func:`log_partition_exact` (memory only).
ENUMERATION_CHUNK = 4096


def free_energy(v: Tensor, W: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """``F(v)`` of 0/1 float visible vectors ``v`` ``(N, D)``: ``(N,)``, so that ``log p(v) = -F(v) - log Z``."""
    return -(v @ b) - F.softplus(v @ W + c).sum(-1)


def energy(v: Tensor, h: Tensor, W: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """``E(v, h)`` of 0/1 float ``v`` ``(N, D)`` and ``h`` ``(N, H)``: ``(N,)``."""
    return -(v @ b) - (h @ c) - ((v @ W) * h).sum(-1)


def bernoulli(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """0/1 draws of ``probs`` (float, same dtype) from one ``torch.rand`` per unit: ``1`` iff ``u < p``."""
    u = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
    return (u < probs).to(probs.dtype)


def gibbs_step(v: Tensor, W: Tensor, b: Tensor, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One block Gibbs sweep ``v -> h ~ p(h | v) -> v' ~ p(v | h)``: the new 0/1 visible states ``(N, D)``."""
    h = bernoulli(torch.sigmoid(v @ W + c), generator)
    return bernoulli(torch.sigmoid(h @ W.T + b), generator)


def gibbs_chain(v: Tensor, W: Tensor, b: Tensor, c: Tensor, steps: int,
                generator: torch.Generator | None = None) -> Tensor:
    """``steps`` Gibbs sweeps from visible states ``v`` ``(N, D)`` (no gradient): the final visible states."""
    with torch.no_grad():
        for _ in range(steps):
            v = gibbs_step(v, W, b, c, generator)
    return v


def all_binary(n: int, *, device=None, dtype=torch.float32) -> Tensor:
    """Every 0/1 vector of length ``n``: ``(2^n, n)``, vector ``k`` the binary digits of ``k``, most significant
    first."""
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), device=device, dtype=dtype).view(-1, n)


def log_partition_exact(W: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """``log Z`` by enumerating the smaller layer (``2^min(D, H)`` states), the other summed out in closed form;
    a float64 scalar. Costs ``2^min(D, H) * max(D, H)``: meant for tiny models and tests."""
    d, h = W.shape
    W64, b64, c64 = W.double(), b.double(), c.double()
    if d <= h:  # log Z = logsumexp_v -F(v)
        states, term = all_binary(d, device=W.device, dtype=torch.float64), lambda v: -free_energy(v, W64, b64, c64)
    else:  # symmetric in the layers: log Z = logsumexp_h [c.h + sum_i softplus(b_i + (W h)_i)]
        states, term = all_binary(h, device=W.device, dtype=torch.float64), lambda s: -free_energy(s, W64.T, c64, b64)
    return torch.logsumexp(torch.cat([term(chunk) for chunk in states.split(ENUMERATION_CHUNK)]), 0)
