"""PixelRNN (Row LSTM, Diagonal BiLSTM): causality in raster order and dependency fields, the fast sampler against
the naive one, and DDP training.

Normalisation, the sampler against the likelihood, the sample contract and the checkpoint round trip are the model
contract's (tests/test_contract.py).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from contracts import assert_causal, input_dependencies, raster_order
from helpers import assert_ddp_fit_in_sync

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


def dependencies(model, i: int, j: int, ch: int) -> torch.Tensor:
    """``(C, H, W)`` bool: the input sub-pixels the logits of sub-pixel ``(ch, i, j)`` depend on, from input
    gradients at 16 random points (one point alone can hide a dependency behind inactive ReLUs)."""
    x = 3 * torch.randn(16, *model.image_shape, dtype=torch.float64)
    return input_dependencies(model.net, x, [(ch, i, j)])[(ch, i, j)]


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
    corners_and_centre = [(0, 0), (0, w - 1), (2, 2), (h - 1, 0), (h - 1, w - 1)]
    outputs = [(ch, i, j) for (i, j), ch in itertools.product(corners_and_centre, range(c))]
    deps = input_dependencies(model.net, 3 * torch.randn(16, *shape, dtype=torch.float64), outputs)
    assert_causal(deps)
    for (ch, i, j), seen in deps.items():
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
    order = raster_order(shape)
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


# ---- sampling -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,num_levels", [((1, 6, 5), 2), ((3, 4, 5), 256)], ids=["binary6x5", "rgb8bit4x5"])
@pytest.mark.parametrize("cls", MODELS)
def test_fast_sampler_is_identical_to_naive(cls, shape, num_levels):
    model = make(cls, shape, num_levels)
    fast = model.sample(6, generator=torch.Generator().manual_seed(7))
    assert torch.equal(fast, model.sample(6, generator=torch.Generator().manual_seed(7), naive=True))
    assert len(fast.unique()) > 1 and not torch.equal(fast[0], fast[1]), "degenerate samples prove nothing"


# ---- DDP ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("config", ["row_lstm_digits", "diagonal_bilstm_digits"])
def test_ddp_two_processes_keep_identical_parameters(config, tmp_path):
    assert_ddp_fit_in_sync(config, tmp_path)
