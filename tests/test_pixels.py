"""The pixel-likelihood heads of lightning_gen.nn.pixels: normalisation, inverse-CDF sampling, means, raster order."""

from __future__ import annotations

import pytest
import torch

from lightning_gen.nn.pixels import (Bernoulli, Categorical, DiscretizedLogistic, inverse_cdf, pixel_head,
                                     raster_flatten, raster_unflatten)

HEADS = [Bernoulli(), Categorical(2), Categorical(17), DiscretizedLogistic(2), DiscretizedLogistic(17),
         DiscretizedLogistic(256), DiscretizedLogistic(17, num_components=3)]


def random_params(head, *shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, head.params_per_subpixel, generator=g, dtype=torch.float64) * 2


@pytest.mark.parametrize("head", HEADS, ids=repr)
def test_probabilities_over_all_levels_sum_to_one_and_match_log_prob(head):
    params = random_params(head, 5, 3)
    probs = head.probs(params)  # (5, 3, L)
    assert probs.shape == (5, 3, head.num_levels) and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, 3, dtype=torch.float64), rtol=0, atol=1e-12)
    for level in range(head.num_levels):
        levels = torch.full((5, 3), level)
        torch.testing.assert_close(head.log_prob(params, levels).exp(), probs[..., level], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("head", HEADS, ids=repr)
def test_sample_frequencies_match_the_probabilities(head):
    """One parameter set drawn 40000 times: every level's frequency within 5 standard errors of its probability."""
    n = 40_000
    params = random_params(head, 1, seed=1).expand(n, -1)
    u = torch.rand(n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    draws = head.sample(params, u)
    p = head.probs(params[:1])[0]
    freq = torch.bincount(draws, minlength=head.num_levels).double() / n
    assert (freq - p).abs().max() <= 5 * (p * (1 - p) / n).sqrt().max() + 1e-3


@pytest.mark.parametrize("head", HEADS, ids=repr)
def test_mean_is_the_expected_level_on_the_unit_scale(head):
    params = random_params(head, 4, seed=3)
    if isinstance(head, DiscretizedLogistic):
        # Its mean is the (clamped) location: the mean where the location sits on a level's centre, narrowly.
        k = head.num_components
        centres = torch.randint(head.num_levels, (4, k), generator=torch.Generator().manual_seed(4))
        params[..., -2 * k:-k] = centres * (2.0 / (head.num_levels - 1)) - 1
        params[..., -k:] = -6.0  # log-scales
    grid = torch.arange(head.num_levels, dtype=torch.float64) / (head.num_levels - 1)
    torch.testing.assert_close(head.mean(params), head.probs(params) @ grid, rtol=0, atol=2e-3)


def test_one_inverse_cdf_rule_the_smallest_level_whose_cdf_exceeds_u():
    probs = torch.tensor([[0.25, 0.0, 0.5, 0.25]], dtype=torch.float64)
    u = torch.tensor([0.0, 0.2499, 0.25, 0.7499, 0.75, 0.99999])
    assert inverse_cdf(probs.expand(6, -1), u).tolist() == [0, 0, 2, 2, 3, 3]  # a zero-probability level never drawn
    assert (Bernoulli().sample(torch.zeros(3, 1), torch.tensor([0.0, 0.49, 0.5])) == torch.tensor([1, 1, 0])).all()


def test_the_rule_agrees_with_both_earlier_samplers_except_on_exact_ties():
    """PixelCNN counted ``cdf < u`` (clamped), PixelRNN ``cdf[:-1] <= u``: on random float64 draws they and the one
    rule pick the same level every time; they differ only where ``u`` equals a CDF value exactly."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200_000, 17, generator=g, dtype=torch.float64) * 3
    u = torch.rand(200_000, generator=g, dtype=torch.float64)
    cdf = logits.softmax(-1).cumsum(-1)
    pixelcnn = (cdf < u[:, None]).sum(-1).clamp(max=16)
    pixelrnn = (cdf[:, :-1] <= u[:, None]).sum(-1)
    ours = Categorical(17).sample(logits, u)
    assert torch.equal(ours, pixelrnn) and torch.equal(ours, pixelcnn)
    tie = cdf[:1, 3]  # u exactly on a CDF step: the one rule moves past it, as a uniform on [0, 1) must
    assert Categorical(17).sample(logits[:1], tie).item() == 4


def test_bernoulli_draws_from_torch_rand_are_torch_bernoulli_draws():
    """NADE, MADE and FVSBN draw ``u`` with ``torch.rand`` so their samples stayed those of ``torch.bernoulli``."""
    p = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    logits = torch.logit(p).unsqueeze(-1)
    expected = torch.bernoulli(torch.sigmoid(logits[:, 0]), generator=torch.Generator().manual_seed(1)).long()
    u = torch.rand(10_000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(Bernoulli().sample(logits, u), expected)


def test_log_prob_takes_the_parameter_axis_anywhere_and_broadcasts_levels():
    head = Categorical(5)
    params = torch.randn(2, 3, 5, 4, 4)  # (B, C, P, H, W), as the PixelCNN's logits
    levels = torch.randint(5, (2, 3, 4, 4))
    torch.testing.assert_close(head.log_prob(params, levels, dim=2), head.log_prob(params.movedim(2, -1), levels))
    many = head.log_prob(params.movedim(2, -1)[None].expand(6, -1, -1, -1, -1, -1), levels)  # (k, B, C, H, W)
    assert many.shape == (6, 2, 3, 4, 4)


def test_heads_by_name_and_their_parameter_counts():
    assert [pixel_head(name, 17).params_per_subpixel for name in ("categorical", "logistic")] == [17, 2]
    assert pixel_head("bernoulli", 2).params_per_subpixel == 1
    assert DiscretizedLogistic(256, num_components=5).params_per_subpixel == 15
    with pytest.raises(ValueError, match="bernoulli.*categorical.*logistic"):
        pixel_head("gaussian", 17)
    with pytest.raises(ValueError, match="binary"):
        Bernoulli(17)


def test_raster_order_is_rows_then_columns_then_channels():
    images = torch.arange(2 * 3 * 2 * 2).view(2, 3, 2, 2)  # (B, C, H, W)
    flat = raster_flatten(images)
    assert flat[0, :4].tolist() == [images[0, 0, 0, 0], images[0, 1, 0, 0], images[0, 2, 0, 0], images[0, 0, 0, 1]]
    assert torch.equal(raster_unflatten(flat, (3, 2, 2)), images)
