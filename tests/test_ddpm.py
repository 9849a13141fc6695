"""DDPM: the forward process, each term of the bound against an independent formula, the bound on a tiny space, the
Monte Carlo estimate over timesteps, and the samplers (the contract tests cover sampling and checkpoints too).

The exact NLL of a diffusion model is intractable, so the bound is checked where it can be: on a tiny image space its
probabilities ``exp(bound)`` sum to at most one (a bound on a normalised model cannot exceed it), and with the
Bayes-optimal denoiser of a known distribution they sum nearly to one (so the check is not passed by a loose bound).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from contracts import all_levels
from lightning_gen.models import DDPM, Estimate
from lightning_gen.nn.diffusion import (Schedule, ddim_sample, ddim_valid_steps, discretized_gaussian_log_prob,
                                        gaussian_kl)
from lightning_gen.nn.pixels import from_levels


def oracle(schedule: Schedule, points: torch.Tensor, weights: torch.Tensor):
    """The Bayes-optimal ``eps(x_t, t)`` for data drawn from ``points`` ``(K, C, H, W)`` in [-1, 1] with
    probabilities ``weights``: ``(x_t - sqrt(abar_t) E[x_0 | x_t]) / sqrt(1 - abar_t)``."""
    flat = points.flatten(1).double()

    def eps(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = schedule.abar[t.cpu()].to(torch.float64)[:, None]
        x = xt.double().flatten(1)
        sq = ((x[:, None, :] - abar.sqrt()[:, :, None] * flat[None]) ** 2).sum(-1)  # (N, K)
        post = (weights.double().log()[None] - sq / (2 * (1 - abar))).softmax(1)
        return ((x - abar.sqrt() * (post @ flat)) / (1 - abar).sqrt()).view_as(xt).to(xt.dtype)

    return eps


def tiny_model(num_levels: int, timesteps: int, **options) -> tuple[DDPM, torch.Tensor, torch.Tensor]:
    """A 1x2x2 DDPM whose denoiser is the oracle of a fixed, far from uniform distribution over every image."""
    torch.manual_seed(0)
    model = DDPM(image_shape=(1, 2, 2), num_levels=num_levels, timesteps=timesteps, channels=8,
                 bound_timesteps=timesteps - 1, sample_steps=timesteps, **options).eval()
    levels = all_levels((1, 2, 2), num_levels)
    weights = torch.softmax(2 * torch.randn(levels.shape[0], generator=torch.Generator().manual_seed(1)), 0)
    model.eps = oracle(model.schedule, levels.double() * 2 / (num_levels - 1) - 1, weights)
    return model, from_levels(levels, num_levels), weights


# ---- the forward process -----------------------------------------------------------------------------------------
def test_forward_marginals_match_the_chain_of_single_steps():
    """``q(x_t | x_0)`` in closed form (eq. 4) against 200,000 chains of ``q(x_t | x_{t-1})``."""
    schedule = Schedule(50)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([-1.0, 0.3, 1.0], dtype=torch.float64)
    x = x0.expand(200_000, 3).clone()
    for t in range(1, 51):
        beta = schedule.betas[t]
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
        if t in (1, 10, 50):
            abar = schedule.abar[t]
            se = ((1 - abar) / x.shape[0]).sqrt()
            assert (x.mean(0) - abar.sqrt() * x0).abs().max() < 5 * se
            assert (x.var(0) - (1 - abar)).abs().max() < 5 * (1 - abar) * math.sqrt(2 / x.shape[0])
            sampled = schedule.q_sample(x0[None], torch.tensor([t]), torch.zeros(1, 3, dtype=torch.float64))
            torch.testing.assert_close(sampled[0], abar.sqrt() * x0)


def test_default_schedule_is_ho_et_al():
    schedule = Schedule(1000)
    assert schedule.betas[1].item() == pytest.approx(1e-4) and schedule.betas[1000].item() == pytest.approx(0.02)
    assert schedule.abar[1000].item() == pytest.approx(4.04e-5, rel=0.01)  # so L_T is small


# ---- the terms of the bound --------------------------------------------------------------------------------------
def test_gaussian_kl_against_monte_carlo():
    g = torch.Generator().manual_seed(0)
    m1, v1, m2, v2 = torch.tensor(0.3), torch.tensor(0.5), torch.tensor(-0.2), torch.tensor(0.8)
    z = m1 + v1.sqrt() * torch.randn(400_000, generator=g, dtype=torch.float64)
    log_ratio = Normal(m1, v1.sqrt()).log_prob(z) - Normal(m2, v2.sqrt()).log_prob(z)
    se = log_ratio.std() / math.sqrt(z.numel())
    assert abs(log_ratio.mean() - gaussian_kl(m1, v1, m2, v2)) < 4 * se


def test_prior_term_is_the_closed_form_kl():
    schedule = Schedule(100)
    x0 = torch.rand(3, 1, 2, 2, dtype=torch.float64) * 2 - 1
    abar = schedule.abar[100]
    expected = kl_divergence(Normal(abar.sqrt() * x0, (1 - abar).sqrt()), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(schedule.prior_kl(x0), expected)


@pytest.mark.parametrize("t", [2, 3, 37, 100])
def test_kl_term_with_the_posterior_variance_is_ho_et_al_eq_12(t):
    """With ``sigma_t^2 = beta~_t`` the KL is ``beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) ||eps - eps_hat||^2``
    (eq. 12): an independent check of the posterior mean (eq. 7) and the model mean (eq. 11)."""
    schedule = Schedule(100, variance="small")
    g = torch.Generator().manual_seed(t)
    x0 = torch.rand(4, 1, 3, 3, generator=g, dtype=torch.float64) * 2 - 1
    noise, eps_hat = torch.randn(2, *x0.shape, generator=g, dtype=torch.float64)
    tt = torch.full((4,), t)
    got = schedule.kl_term(x0, tt, noise, lambda x, s: eps_hat.float())
    beta, alpha, abar = schedule.betas[t], schedule.alphas[t], schedule.abar[t]
    weight = beta ** 2 / (2 * schedule.posterior_var[t] * alpha * (1 - abar))
    expected = weight * ((noise - eps_hat.float().double()) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_levels", [2, 4, 17, 256])
def test_discretized_decoder_is_normalised_and_matches_the_cdf(num_levels):
    g = torch.Generator().manual_seed(num_levels)
    centres = torch.arange(num_levels, dtype=torch.float64) * 2 / (num_levels - 1) - 1
    mean = torch.cat([torch.rand(20, generator=g, dtype=torch.float64) * 4 - 2, torch.tensor([30.0, -30.0])])
    log_std = torch.cat([torch.rand(20, generator=g, dtype=torch.float64) * 6 - 7, torch.tensor([-3.0, -3.0])])
    logp = discretized_gaussian_log_prob(centres[None], mean[:, None], log_std[:, None], num_levels)  # (22, L)
    assert torch.isfinite(logp).all()
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(22, dtype=torch.float64))
    half = 1 / (num_levels - 1)
    normal = Normal(mean[:, None], log_std.exp()[:, None])
    cdf_hi = torch.where(centres < 1 - half, normal.cdf(centres + half), torch.ones(1, dtype=torch.float64))
    cdf_lo = torch.where(centres > -1 + half, normal.cdf(centres - half), torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(logp.exp()[:20], (cdf_hi - cdf_lo)[:20], rtol=1e-6, atol=1e-9)


# ---- the bound on a tiny space -----------------------------------------------------------------------------------
@pytest.mark.parametrize("num_levels", [2, 3])
def test_bound_probabilities_over_a_tiny_space_sum_to_at_most_one(num_levels):
    """Every 1x2x2 image, the full sum over T = 200 timesteps averaged over 16 seeds (each image's bound within
    its standard error): the probabilities sum to at most one, and with the oracle denoiser of a known distribution
    (and the posterior's variance, the tighter choice) nearly to one."""
    model, images, weights = tiny_model(num_levels, 200, variance="small")
    estimates = torch.stack([model.log_prob(images, estimate=Estimate(seed=s)) for s in range(16)])
    bound, se = estimates.mean(0), estimates.std(0) / math.sqrt(16)
    assert (bound - 4 * se).exp().sum() <= 1, "the probabilities sum to more than one: this is no bound"
    assert (bound + 4 * se).exp().sum() > 0.8, "the bound is loose: the check would prove little"
    # The denoiser's distribution is the model's only in the limit of small steps, so no image's bound need be
    # below its log-probability there; on average they are close.
    assert (weights.log() - bound).mean().abs() < 0.5


def test_monte_carlo_over_timesteps_is_unbiased_for_the_full_sum():
    model, images, _ = tiny_model(2, 30)
    x = images[[3, 9]]
    full = torch.stack([model.bound_terms(x, Estimate(seed=s))["diffusion"] for s in range(100)])
    sampled = torch.stack([model.bound_terms(x, Estimate(k=2, seed=s))["diffusion"] for s in range(100, 700)])
    se = (full.var(0) / full.shape[0] + sampled.var(0) / sampled.shape[0]).sqrt()
    assert ((full.mean(0) - sampled.mean(0)).abs() < 4 * se).all(), (full.mean(0), sampled.mean(0), se)
    assert (sampled.std(0) > full.std(0)).all()  # the timesteps' noise is there


def test_estimate_of_an_image_depends_on_the_seed_and_the_image_only():
    model, images, _ = tiny_model(2, 30)
    together = model.log_prob(images, estimate=Estimate(k=3, seed=5, chunk=7))
    alone = torch.cat([model.log_prob(images[i:i + 1], estimate=Estimate(k=3, seed=5)) for i in range(len(images))])
    torch.testing.assert_close(together, alone)
    assert not torch.equal(together, model.log_prob(images, estimate=Estimate(k=3, seed=6)))


def test_likelihood_protocol_names_the_estimate():
    model = DDPM(image_shape=(1, 4, 4), num_levels=2)
    assert model.likelihood_protocol(Estimate(k=4)) == ("bound (T=1000; Monte Carlo over k=4 timesteps per image, "
                                                        "unbiased; its noise is inside the per-image SE)")
    assert model.likelihood_protocol(Estimate(k=5000)).startswith("bound (T=1000; all 999 KL terms summed")


# ---- samplers ----------------------------------------------------------------------------------------------------
def test_ddim_step_counts_must_divide_t():
    valid = r"must divide T=100; got 30\. Valid counts: \[1, 2, 4, 5, 10, 20, 25, 50, 100\]"
    with pytest.raises(ValueError, match=valid):
        DDPM(image_shape=(1, 4, 4), timesteps=100, sample_steps=30)
    assert ddim_valid_steps(12) == [1, 2, 3, 4, 6, 12]
    with pytest.raises(ValueError, match="must divide"):
        ddim_sample(Schedule(40), lambda x, t: x, torch.zeros(1, 1, 2, 2), 3)
    DDPM(image_shape=(1, 4, 4), timesteps=100, sampler="ancestral", sample_steps=30)  # ancestral takes all T


def test_ddim_is_deterministic_and_recovers_a_single_point():
    """eta = 0, S = T: the same x_T gives the same images whatever the global random state; with the oracle of a
    one-point distribution every x_T is carried to that point."""
    schedule = Schedule(40)
    point = torch.tensor([[[[-1.0, 0.5], [0.25, 1.0]]]])
    eps = oracle(schedule, point, torch.ones(1))
    x_T = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    first = ddim_sample(schedule, eps, x_T, 40)
    torch.manual_seed(2)
    assert torch.equal(first, ddim_sample(schedule, eps, x_T, 40))
    torch.testing.assert_close(first, point.expand(5, -1, -1, -1), rtol=0, atol=1e-5)
    torch.testing.assert_close(ddim_sample(schedule, eps, x_T, 4), first, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_samplers_draw_the_oracles_distribution(sampler):
    """With the oracle denoiser both samplers give the known distribution's frequencies (total variation well below
    that of a uniform guess); DDIM's is deterministic given x_T, so only x_T's randomness is left."""
    model, images, weights = tiny_model(2, 50, sampler=sampler)
    model.sample_steps = 10
    samples = model.sample(4000, generator=torch.Generator().manual_seed(0))
    index = (samples.flatten(1).long() // 255 * 2 ** torch.arange(3, -1, -1)).sum(1)
    freq = torch.bincount(index, minlength=16).double() / 4000
    tv = 0.5 * (freq - weights.double()).abs().sum().item()
    assert tv < 0.06, (tv, freq, weights)


def test_ema_warms_up_then_decays_at_its_rate():
    model = DDPM(image_shape=(1, 4, 4), num_levels=2, ema_decay=0.999)
    weight = model.net.inp.weight
    for step, decay in ((1, 2 / 11), (10_000, 0.999)):
        before = model.net_ema.inp.weight.clone()
        with torch.no_grad():
            weight.add_(1.0)
        model.update_ema(step)
        torch.testing.assert_close(model.net_ema.inp.weight, decay * before + (1 - decay) * weight)
