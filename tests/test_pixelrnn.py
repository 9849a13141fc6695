"""PixelRNN (Row LSTM, Diagonal BiLSTM): causality and dependency fields, exact normalisation, the fast sampler
against the naive one and against the likelihood, and DDP training."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import assert_ddp_fit_in_sync

from lightning_gen.models.base import from_levels, to_levels
from lightning_gen.models.pixelrnn import DiagonalBiLSTM, RowLSTM
from lightning_gen.nn.pixelrnn import skew, unskew

MODELS = [RowLSTM, DiagonalBiLSTM]
DATA = {"binary": ((1, 5, 5), 2), "rgb8bit": ((3, 5, 5), 256)}


def make(cls, shape, num_levels, *, hidden_channels=6, num_layers=2, seed=0, weight_std=0.5):
    """A small model with weights redrawn far from the initialisation, so that its conditionals are far from
    uniform and a wrong mask or a misplaced state shows in every check."""
    torch.manual_seed(seed)
    model = cls(shape, num_levels, 0, hidden_channels=hidden_channels, num_layers=num_layers)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, weight_std)
    return model.eval()


def raster_index(shape) -> torch.Tensor:
    """``(C, H, W)``: the position of each sub-pixel in the generation order (raster, colours innermost)."""
    c, h, w = shape
    return torch.arange(c * h * w).view(h, w, c).permute(2, 0, 1)


def dependencies(model, i: int, j: int, ch: int) -> torch.Tensor:
    """``(C, H, W)`` bool: the input sub-pixels the logits of sub-pixel ``(ch, i, j)`` depend on, from input
    gradients at 16 random points (one point alone can hide a dependency behind inactive ReLUs)."""
    x = (3 * torch.randn(16, *model.image_shape, dtype=torch.float64)).requires_grad_()
    (grad,) = torch.autograd.grad(model.net(x)[:, ch, :, i, j].sum(), x)
    return grad.abs().sum(0) > 0


def all_images(shape, num_levels) -> torch.Tensor:
    """Every uint8 image of ``shape`` with ``num_levels`` levels, ``(num_levels ** D, C, H, W)``."""
    d = shape[0] * shape[1] * shape[2]
    levels = torch.tensor(list(itertools.product(range(num_levels), repeat=d)))  # (L^D, D), first dim slowest
    return from_levels(levels.view(-1, *shape), num_levels)


# ---- building blocks -----------------------------------------------------------------------------------------
def test_skew_shifts_row_r_right_by_r_and_unskew_inverts_it():
    x = torch.randn(2, 3, 4, 6)
    skewed = skew(x)
    assert skewed.shape == (2, 3, 4, 9)
    for r in range(4):
        assert torch.equal(skewed[:, :, r, r : r + 6], x[:, :, r])
        assert not skewed[:, :, r, :r].any() and not skewed[:, :, r, r + 6 :].any()
    assert torch.equal(unskew(skewed, 6), x)


# ---- causality ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("cls", MODELS)
def test_logits_depend_only_on_earlier_subpixels(cls, data):
    shape, num_levels = DATA[data]
    model = make(cls, shape, num_levels).double()
    c, h, w = shape
    order = raster_index(shape)
    for (i, j), ch in itertools.product([(0, 0), (0, w - 1), (2, 2), (h - 1, 0), (h - 1, w - 1)], range(c)):
        seen = dependencies(model, i, j, ch)
        now = order[ch, i, j]
        assert not seen[order >= now].any(), f"sub-pixel {(ch, i, j)} sees itself or a later one"
        if now > 0:
            assert seen[order < now].any(), f"sub-pixel {(ch, i, j)} sees nothing"
        # The channel masks: colour ch sees the earlier colours of its own pixel; and every pixel sees its
        # neighbours to the left and above.
        assert seen[:ch, i, j].all()
        if j > 0:
            assert seen[:, i, j - 1].all()
        if i > 0:
            assert seen[:, i - 1, j].all()


@pytest.mark.parametrize("num_layers", [1, 3])
def test_dependency_fields_row_lstm_triangle_diagonal_bilstm_complete(num_layers):
    """[1] Figure 4: the Row LSTM sees a triangle above the pixel, the Diagonal BiLSTM everything before it.

    The triangle does not widen with depth: every layer's state at (r, c) sees states (r - d, c + d) at most.

    One exception, as in [1]'s design: the right-to-left stream reaches a row one row late, and nothing on
    the row above sees that row's last pixel (the first layer's mask A hides each pixel from its own position),
    so it is seen only through the 7x7 input convolution, i.e. from within 3 columns of the right edge.
    """
    shape = (1, 6, 12)
    order = raster_index(shape)
    row = make(RowLSTM, shape, 2, hidden_channels=8, num_layers=num_layers).double()
    diagonal = make(DiagonalBiLSTM, shape, 2, hidden_channels=8, num_layers=num_layers).double()
    for i, j in [(5, 0), (5, 5), (3, 2)]:
        earlier = order < order[0, i, j]
        seen = dependencies(row, i, j, 0)
        for d in range(1, i + 1):
            # d rows up: the state-to-state convolution (k=3) reaches d columns right, the 7x7 input one 2 more
            assert torch.equal(seen[0, i - d], torch.arange(12) <= j + d + 2), (i, j, d)
        expected = earlier.clone()
        expected[0, i - 1, -1] = False
        assert torch.equal(dependencies(diagonal, i, j, 0), expected)


# ---- likelihood ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,num_levels", [((1, 3, 3), 2), ((3, 1, 2), 3)], ids=["binary3x3", "rgb3levels"])
@pytest.mark.parametrize("cls", MODELS)
def test_probabilities_of_all_images_sum_to_one(cls, shape, num_levels):
    model = make(cls, shape, num_levels, weight_std=1.0)
    with torch.no_grad():
        logp = model.log_prob(all_images(shape, num_levels))
    assert abs(logp.double().exp().sum().item() - 1) < 1e-5
    assert logp.max() - logp.min() > 2  # far from uniform: a mis-normalised model could not pass by luck


@pytest.mark.parametrize("cls", MODELS)
def test_log_prob_is_per_image_and_batch_independent(cls):
    shape, num_levels = DATA["rgb8bit"]
    model = make(cls, shape, num_levels)
    x = torch.randint(0, 256, (5, *shape), dtype=torch.uint8)
    with torch.no_grad():
        together = model.log_prob(x)
        alone = torch.cat([model.log_prob(x[k : k + 1]) for k in range(5)])
    assert together.shape == (5,)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-4)


# ---- sampling -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,num_levels", [((1, 6, 5), 2), ((3, 4, 5), 256)], ids=["binary6x5", "rgb8bit4x5"])
@pytest.mark.parametrize("cls", MODELS)
def test_fast_sampler_is_deterministic_and_identical_to_naive(cls, shape, num_levels):
    model = make(cls, shape, num_levels)

    def generator(seed=7):
        return torch.Generator().manual_seed(seed)

    fast = model.sample(6, generator=generator())
    assert fast.dtype == torch.uint8 and fast.shape == (6, *shape)
    if num_levels == 2:
        assert set(fast.unique().tolist()) <= {0, 255}
    assert torch.equal(fast, model.sample(6, generator=generator()))
    assert torch.equal(fast, model.sample(6, generator=generator(), naive=True))
    assert not torch.equal(fast, model.sample(6, generator=generator(8)))


@pytest.mark.parametrize("shape,num_levels", [((1, 2, 2), 2), ((3, 1, 1), 4)], ids=["binary2x2", "rgb4levels"])
@pytest.mark.parametrize("cls", MODELS)
def test_samples_follow_the_likelihood(cls, shape, num_levels):
    """The sampler and log_prob describe the same distribution: total variation of 20,000 samples < 0.03
    (the sampling noise alone gives about 0.01 on 16 images, 0.02 on 64)."""
    model = make(cls, shape, num_levels, weight_std=1.0)
    images = all_images(shape, num_levels)
    with torch.no_grad():
        p = model.log_prob(images).double().exp()
    samples = to_levels(model.sample(20_000, generator=torch.Generator().manual_seed(0)), num_levels)
    digits = samples.flatten(1)  # (N, D) in the order of all_images: first sub-pixel most significant
    index = (digits * num_levels ** torch.arange(digits.shape[1] - 1, -1, -1)).sum(1)
    freq = torch.bincount(index, minlength=len(images)).double() / len(samples)
    assert 0.5 * (freq - p).abs().sum().item() < 0.03


def test_sample_refuses_labels():
    model = make(RowLSTM, *DATA["binary"])
    with pytest.raises(ValueError, match="not class-conditional"):
        model.sample(2, labels=torch.zeros(2, dtype=torch.long))


# ---- DDP ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("config", ["row_lstm_digits", "diagonal_bilstm_digits"])
def test_ddp_two_processes_keep_identical_parameters(config, tmp_path):
    assert_ddp_fit_in_sync(config, tmp_path)
