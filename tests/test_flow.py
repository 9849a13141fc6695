"""RealNVP: the flow is invertible, its log-determinant is the Jacobian's, and the dequantized density gives the
discrete images probabilities that sum to one, bounded below by the reported likelihood."""

from __future__ import annotations

import math

import pytest
import torch

from contracts import all_images, all_levels, image_index
from lightning_gen.models import Estimate, RealNVP
from lightning_gen.nn.flow import MultiScaleFlow, dequantize, quantize
from lightning_gen.nn.latent import standard_normal_log_prob


def perturbed(module: torch.nn.Module, std: float, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (a new flow is the identity: its couplings' last convolutions start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))
    return module


def tiny_model(shape=(1, 2, 2), num_levels=3, std=0.15) -> RealNVP:
    torch.manual_seed(0)
    model = RealNVP(shape, num_levels, num_scales=2, couplings=2, hidden=8).eval()
    return perturbed(model, std)


# ---- the flow ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,scales,glow", [((1, 2, 2), 2, False), ((3, 4, 4), 3, False), ((1, 28, 28), 3, False),
                                              ((1, 8, 8), 1, False), ((1, 8, 8), 2, True), ((1, 28, 28), 3, True)])
def test_the_flow_inverts_to_1e_5(shape, scales, glow):
    torch.manual_seed(0)
    flow = perturbed(MultiScaleFlow(shape, scales, couplings=3, hidden=16, glow=glow), 0.02).eval()  # float32
    x = torch.randn(4, *shape) * 2  # a trained flow's inputs: logits of the data
    with torch.no_grad():
        z, log_det = flow(x)
        assert z.shape == (4, math.prod(shape))
        assert log_det.abs().max() > 0.1  # not volume-preserving: the test proves something
        torch.testing.assert_close(flow.inverse(z), x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape,scales,glow", [((1, 4, 4), 2, False), ((2, 4, 4), 3, False), ((1, 2, 2), 2, False),
                                              ((2, 4, 4), 2, True)])
def test_the_density_of_y_is_the_brute_force_jacobian(shape, scales, glow):
    """``log p(y)`` of the model (flow and logit log-determinants) equals ``log N(z) + log |det dz/dy|`` with the
    Jacobian of ``y -> logit(y) -> z`` computed by autograd, in float64."""
    num_levels = 4
    torch.manual_seed(0)
    model = RealNVP(shape, num_levels, num_scales=scales, couplings=2, hidden=8, glow=glow)
    model = perturbed(model.double().eval(), 0.1)
    levels = torch.randint(num_levels, (1, *shape))
    levels.view(-1)[:2] = torch.tensor([0, num_levels - 1])  # both edges of the cube
    noise = torch.randn(levels.shape, dtype=torch.float64)
    y = (levels + torch.special.ndtr(noise)) / num_levels
    with torch.no_grad():
        log_p_y = model.dequantized_log_prob(levels, noise) + model.num_dims * math.log(num_levels)

    def z_of(y_flat):
        return model.flow(torch.logit(y_flat).view(1, *shape))[0].flatten()

    jacobian = torch.autograd.functional.jacobian(z_of, y.flatten())
    brute = standard_normal_log_prob(z_of(y.flatten())) + torch.linalg.slogdet(jacobian)[1]
    torch.testing.assert_close(log_p_y, brute.view(1).detach(), rtol=0, atol=1e-8)
    assert abs(torch.linalg.slogdet(jacobian)[1].item()) > 1  # far from volume-preserving


def test_dequantize_and_quantize_round_trip_at_the_cube_edges():
    """Every level, with noise out to +-9 standard deviations (u within 1e-19 of 0 or 1): finite logits, and the
    level whose cube holds ``sigmoid(s)`` is the level dequantized."""
    for num_levels in (2, 3, 256):
        levels = torch.arange(num_levels).view(-1, 1, 1, 1).expand(-1, 1, 1, 7)  # (L, 1, 1, 7)
        noise = torch.tensor([-9.0, -5.0, -1.0, 0.0, 1.0, 5.0, 9.0]).expand_as(levels).double()
        s, log_det = dequantize(levels, noise, num_levels)
        assert torch.isfinite(s).all() and torch.isfinite(log_det).all()
        # Within float64 rounding of a cube's edge (|noise| = 9) the level is a coin toss, and drawn with
        # probability ~1e-19; within 3e-7 of it (|noise| = 5) the level must be the one dequantized.
        assert torch.equal(quantize(s, num_levels)[..., 1:-1], levels[..., 1:-1])


# ---- the likelihood of discrete images -------------------------------------------------------------------------
def cube_probabilities(log_bound, levels: torch.Tensor, draws: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo ``P(x) = E_u[exp(bound)]`` for each image of ``levels``, and its standard error: ``log_bound``
    maps (levels, noise) to the one-draw bound ``log p(y) - D log L``."""
    g = torch.Generator().manual_seed(seed)
    rows = levels.repeat_interleave(draws, 0)
    with torch.no_grad():
        p = log_bound(rows, torch.randn(rows.shape, generator=g, dtype=torch.float64)).double().exp().view(-1, draws)
    return p.mean(1), p.std(1) / math.sqrt(draws)


def leaky_log_bound(model: RealNVP, a: float = 0.05):
    """[1]'s preprocessing ``s = logit(a + (1 - 2a) y)``: the density the flow gives ``y`` then integrates to the
    flow's mass inside the box ``[logit(a), logit(1 - a)]^D``, less than one."""
    def log_bound(levels, noise):
        y = (levels + torch.special.ndtr(noise)) / model.num_levels
        q = a + (1 - 2 * a) * y
        z, log_det = model.flow(torch.logit(q).float())
        log_ds_dy = (math.log(1 - 2 * a) - torch.log(q) - torch.log1p(-q)).flatten(1).sum(1)
        log_p_s = (standard_normal_log_prob(z) + log_det).double()
        return log_p_s + log_ds_dy - model.num_dims * math.log(model.num_levels)
    return log_bound


def test_probabilities_of_every_tiny_image_sum_to_one_and_the_bound_is_below_them():
    """81 images of 1x2x2 pixels on 3 levels: the integrals of the density over their cubes (Monte Carlo) sum to
    one within 4 standard errors, where [1]'s logit with a = 0.05 loses mass outside its box; each image's bound
    (the mean of log_prob over seeds) is at most its log-probability, within the estimates' error."""
    model = tiny_model()
    levels = all_levels(model.image_shape, model.num_levels)
    p, se = cube_probabilities(model.dequantized_log_prob, levels, draws=2000, seed=0)
    total, total_se = p.sum().item(), se.square().sum().sqrt().item()
    assert total_se < 0.01, total_se  # precise enough to see a leak
    assert abs(total - 1) < 4 * total_se, f"the images' probabilities sum to {total:.4f} +- {total_se:.4f}"
    assert p.log().max() - p.log().min() > 2  # far from uniform: the sum proves something

    leaky, leaky_se = cube_probabilities(leaky_log_bound(model), levels, draws=2000, seed=0)
    assert leaky.sum().item() < 1 - 4 * leaky_se.square().sum().sqrt().item()

    x = all_images(model.image_shape, model.num_levels)
    bounds = torch.stack([model.log_prob(x, estimate=Estimate(seed=seed)) for seed in range(100)])
    bound, bound_se = bounds.mean(0), bounds.std(0) / math.sqrt(bounds.shape[0])
    assert torch.all(bound <= p.log() + 4 * (bound_se + se / p)), (bound - p.log()).max()
    assert (p.log() - bound).mean() > 0.01  # the dequantization gap is there to see


def test_samples_follow_the_discrete_model():
    """At temperature 1, sample draws images with the probabilities ``P(x)`` of the cubes (total variation within
    sampling and Monte Carlo noise); a low temperature concentrates them."""
    model = tiny_model()
    levels = all_levels(model.image_shape, model.num_levels)
    p, se = cube_probabilities(model.dequantized_log_prob, levels, draws=2000, seed=1)
    n = 20000
    draw = model.sample(n, generator=torch.Generator().manual_seed(0))
    assert draw.dtype == torch.uint8
    freq = torch.bincount(image_index(model.levels(draw), model.num_levels), minlength=levels.shape[0]).double() / n
    tv = 0.5 * (freq - p).abs().sum().item()
    noise = 0.5 * (2 * p * (1 - p) / (math.pi * n)).sqrt().sum().item() + 0.5 * se.sum().item()
    assert tv < 2 * noise, (tv, noise)
    cold = model.sample(n, generator=torch.Generator().manual_seed(0), temperature=0.3)
    cold_freq = torch.bincount(image_index(model.levels(cold), model.num_levels), minlength=levels.shape[0])
    assert cold_freq.max() > 2 * n * freq.max()


def test_an_image_estimate_depends_on_the_seed_and_the_image_only():
    model = tiny_model((1, 4, 4), 256)
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    batch = model.log_prob(x, estimate=Estimate(seed=3))
    alone = torch.cat([model.log_prob(x[i:i + 1], estimate=Estimate(seed=3)) for i in range(5)])
    torch.testing.assert_close(alone, batch, rtol=0, atol=1e-4)  # float32 convolutions
    assert not torch.allclose(model.log_prob(x, estimate=Estimate(seed=4)), batch)
    k4 = model.log_prob(x, estimate=Estimate(k=4, seed=3))
    torch.testing.assert_close(model.log_prob(x[:1], estimate=Estimate(k=4, seed=3)), k4[:1], rtol=0, atol=1e-4)
    assert not torch.allclose(k4, batch)
    assert model.likelihood_protocol() == "bound (uniform dequantization, 1 draw)"
    assert model.likelihood_protocol(Estimate(k=4)).startswith("importance-weighted (uniform dequantization, k=4")


# ---- bad input ---------------------------------------------------------------------------------------------------
def test_images_of_the_wrong_range_or_dtype_are_refused_naming_the_fix():
    model = RealNVP((1, 4, 4), num_levels=4, num_scales=2, hidden=4)
    images = model.sample(2)
    with pytest.raises(TypeError, match=r"uint8.*\(x \* 255\)\.round\(\)\.to\(torch\.uint8\)"):
        model.log_prob(images.float() / 255)
    with pytest.raises(TypeError, match=r"from_levels\(levels, 4\)"):
        model.log_prob(torch.randint(4, (2, 1, 4, 4)))
    grey = torch.full((2, 1, 4, 4), 37, dtype=torch.uint8)  # 8-bit values, not on the model's 4 levels
    with pytest.raises(ValueError, match=r"\[37\] that are not on the 4 levels.*num_levels \(256 for 8-bit"):
        model.log_prob(grey)
    with pytest.raises(ValueError, match="divisible by 4.*fewer scales"):
        RealNVP((1, 6, 6), num_scales=3)
    with pytest.raises(ValueError, match="dequantization_draws"):
        RealNVP((1, 4, 4), dequantization_draws=0)
