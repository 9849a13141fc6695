"""MADE's incremental sampler draws the images of the naive one (a full forward pass per pixel), bit for bit."""

from __future__ import annotations

import pytest
import torch

from lightning_gen.models.made import MADE

MNIST = (1, 28, 28)


def realistic(model: MADE, seed: int = 0) -> MADE:
    """Weights three times their initial scale: logits up to about 5, confident and unsure pixels both."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


def assert_same_draws(model: MADE, n: int, seeds, monkeypatch) -> int:
    """Asserts that both samplers draw the same images from each seed; returns how many full forward passes
    :meth:`MADE.sample` made (its fallback on draws as close as rounding to the probability)."""
    calls, full = [0], model._logits

    def counted(*args):
        calls[0] += 1
        return full(*args)

    for seed in seeds:
        with monkeypatch.context() as patch:
            patch.setattr(model, "_logits", counted)
            fast = model.sample(n, generator=torch.Generator().manual_seed(seed))
        naive = model._sample_naive(n, generator=torch.Generator().manual_seed(seed))
        assert fast.dtype == torch.uint8 and fast.shape == (n, *model.image_shape)
        assert torch.equal(fast, naive), f"seed {seed}: {(fast != naive).sum().item()} pixels differ"
    return calls[0]


@pytest.mark.parametrize("options, seeds", [
    (dict(hidden_sizes=[500]), [0, 1]),
    (dict(hidden_sizes=[500], direct_connection=True), [2]),
    (dict(hidden_sizes=[500], num_masks=3, order_agnostic=True, direct_connection=True), [0]),
    (dict(hidden_sizes=[200, 150], num_masks=2, order_agnostic=True), [0, 1]),
], ids=["1x500", "1x500_direct", "1x500_3masks_direct", "deep_2masks"])
def test_sampler_draws_the_naive_samplers_images_on_28x28(options, seeds, monkeypatch):
    model = realistic(MADE(MNIST, **options))
    full_passes = assert_same_draws(model, 16, seeds, monkeypatch)
    # Draws within the tie tolerance took the full pass's decision, so that path is covered by the identity too;
    # only a few of them: the sampler is incremental (the naive one makes 784 per seed).
    assert 0 < full_passes < 40


@pytest.mark.slow
def test_sampler_draws_the_naive_samplers_images_with_2000_units(monkeypatch):
    model = realistic(MADE(MNIST, hidden_sizes=[2000], num_masks=2, order_agnostic=True, direct_connection=True))
    assert_same_draws(model, 16, [0, 1, 2], monkeypatch)


def test_sampler_draws_the_naive_samplers_images_in_float64_far_from_uniform(monkeypatch):
    torch.manual_seed(0)
    model = MADE((1, 8, 8), hidden_sizes=[40, 30], num_masks=4, order_agnostic=True, direct_connection=True)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 1.5)
    assert_same_draws(model.eval(), 64, range(3), monkeypatch)
