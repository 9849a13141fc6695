"""PixelCNN and Gated PixelCNN: causality in raster order, receptive fields, fast == naive sampling, DDP.

Normalisation, the sample contract and the checkpoint round trip are the model contract's (tests/test_contract.py).
"""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from contracts import assert_causal, input_dependencies, sharpen
from helpers import assert_ddp_fit_in_sync

from lightning_gen.models.pixelcnn import GatedPixelCNN, PixelCNN

SMALL = {
    PixelCNN: dict(hidden_channels=6, residual_blocks=2, head_channels=12, input_kernel_size=3, kernel_size=3),
    GatedPixelCNN: dict(channels=6, layers=2, head_channels=12, input_kernel_size=3, kernel_size=3),
}
MODELS = [PixelCNN, GatedPixelCNN]
DATA = {"binary": ((1, 5, 5), 2), "rgb8bit": ((3, 5, 5), 256)}


def make(cls, shape, num_levels, num_classes=0, seed=0, **options):
    torch.manual_seed(seed)
    return cls(shape, num_levels, num_classes, **{**SMALL[cls], **options}).double()


def dependencies(model, labels=None, leaky: bool = True, outputs=None) -> dict:
    """:func:`contracts.input_dependencies` of the model's logits at 8 random points: ``{(ch, i, j): (C, H, W)}``.

    ``leaky``: measure with the ReLUs made leaky, so that units that happen to be inactive at the random points
    (common in tiny random nets) do not hide a connection; the masks make the forbidden gradients exactly zero
    either way, and a ReLU can only remove dependencies, never add them.
    """
    c, h, w = model.image_shape
    relu = (lambda t, inplace=False: F.leaky_relu(t, 0.1)) if leaky else F.relu

    def logits(x):  # (8, C, P, H, W)
        with mock.patch.object(F, "relu", relu):
            return model.net(x, labels.expand(8)) if model.conditional else model.net(x)

    return input_dependencies(logits, torch.randn(8, c, h, w, dtype=torch.float64), outputs)


# ---- causality and receptive fields ---------------------------------------------------------------------------
UNEVEN = {PixelCNN: dict(hidden_channels=5, head_channels=10), GatedPixelCNN: dict(channels=7, head_channels=10)}


@pytest.mark.parametrize("data", [*DATA, "rgb-uneven-groups"], ids=str)
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_logits_depend_only_on_earlier_subpixels(cls, data):
    """Every sub-pixel (all positions, corners included, every channel) sees nothing at or after itself in
    raster/channel order, and sees some earlier sub-pixel. "uneven": feature maps not a multiple of 3."""
    model = make(cls, *DATA["rgb8bit"], **UNEVEN[cls]) if data == "rgb-uneven-groups" else make(cls, *DATA[data])
    deps = dependencies(model)
    assert_causal(deps)
    assert_causal(dependencies(model, leaky=False), sees_earlier=False)  # the model as it is, plain ReLUs
    if data != "binary":  # R, G, B of a pixel: G sees R, B sees R and G
        c, h, w = model.image_shape
        for i, j in ((0, 0), (h // 2, w // 2), (h - 1, w - 1)):
            assert deps[(1, i, j)][0, i, j] and deps[(2, i, j)][0, i, j] and deps[(2, i, j)][1, i, j]


def pixel_support(model, i, j, labels=None) -> torch.Tensor:
    """(H, W) bool: the input pixels that the logits of pixel (i, j) (first channel) depend on."""
    return dependencies(model, labels, outputs=[(0, i, j)])[(0, i, j)].any(0)


def test_pixelcnn_has_the_blind_spot():
    """PixelCNN (3x3 mask A, then 3x3 mask B): pixel (i, j) sees row i - a only up to column j + a; the pixels
    further right in the rows above are missed although they lie within the field's extent."""
    model = make(PixelCNN, (1, 7, 7), 2, hidden_channels=6, residual_blocks=3)
    i, j = 4, 2
    seen = pixel_support(model, i, j)
    for a in range(1, i + 1):
        assert seen[i - a, : j + a + 1].any()
        assert seen[i - a, j + a], f"row {i - a}: the field should reach column {j + a}"
        assert not seen[i - a, j + a + 1 :].any(), f"row {i - a}: the blind spot right of column {j + a} is seen"
    assert not seen[i - 1, j + 2 : j + 5].any()  # within the 4-pixel reach of the 4 layers, yet unseen


def test_gated_pixelcnn_has_no_blind_spot():
    """Gated PixelCNN with 4 layers of 3x3 (reach 4): pixel (i, j) sees exactly every pixel of the rows above
    within 4 columns and rows, and the pixels to its left in its own row, no more."""
    model = make(GatedPixelCNN, (1, 7, 7), 2, layers=4)
    reach = 4
    for i, j in [(4, 2), (6, 6), (1, 0), (5, 3)]:
        seen = pixel_support(model, i, j)
        expected = torch.zeros(7, 7, dtype=torch.bool)
        expected[max(0, i - reach - 1) : i, max(0, j - reach) : j + reach + 1] = True
        expected[i, max(0, j - reach) : j] = True
        assert torch.equal(seen, expected), f"pixel {(i, j)}:\n{seen.int()}\nexpected\n{expected.int()}"
    # The pixels PixelCNN is blind to (see above) are seen here.
    seen = pixel_support(model, 4, 2)
    assert seen[3, 4:7].all() and seen[2, 5:7].all()


def test_conditional_gated_pixelcnn_is_causal_and_uses_the_label():
    model = make(GatedPixelCNN, (3, 4, 4), 256, num_classes=10, conditional=True)
    assert_causal(dependencies(model, torch.tensor([3])))
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    a, b = model.net(x, torch.tensor([1, 1])), model.net(x, torch.tensor([1, 2]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


# ---- likelihood --------------------------------------------------------------------------------------------
def test_log_prob_rejects_missing_labels_and_unconditional_data():
    model = make(GatedPixelCNN, (1, 3, 3), 2, num_classes=10, conditional=True)
    with pytest.raises(ValueError, match="pass labels"):
        model.log_prob(torch.zeros(2, 1, 3, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_classes > 0"):
        GatedPixelCNN((1, 28, 28), 2, 0, conditional=True)
    with pytest.raises(ValueError, match="at least 3"):
        GatedPixelCNN((3, 8, 8), 256, 0, channels=2)


# ---- sampling ------------------------------------------------------------------------------------------------
SAMPLING_CASES = {
    "binary": (PixelCNN, (1, 8, 8), 2, 0, dict(residual_blocks=3)),
    "rgb8bit": (PixelCNN, (3, 6, 5), 256, 0, {}),
    "gated-binary": (GatedPixelCNN, (1, 8, 8), 2, 0, dict(layers=3)),
    "gated-rgb8bit": (GatedPixelCNN, (3, 6, 5), 256, 0, dict(input_kernel_size=5)),
    "gated-conditional": (GatedPixelCNN, (1, 7, 6), 256, 10, dict(conditional=True)),
}


def sampling_model(case):
    cls, shape, levels, classes, options = SAMPLING_CASES[case]
    torch.manual_seed(1)
    return sharpen(cls(shape, levels, classes, **{**SMALL[cls], **options}))  # sharper, more varied conditionals


@pytest.mark.parametrize("case", SAMPLING_CASES)
def test_fast_sampler_matches_naive_bit_for_bit(case):
    model = sampling_model(case)
    labels = torch.arange(6) % 10 if model.conditional else None
    fast = model.sample(6, generator=torch.Generator().manual_seed(3), labels=labels)
    naive = model.sample(6, generator=torch.Generator().manual_seed(3), labels=labels, naive=True)
    assert fast.dtype == torch.uint8 and fast.shape == (6, *model.image_shape)
    assert torch.equal(fast, naive)
    assert len(torch.unique(fast)) > 1 and not torch.equal(fast[0], fast[1]), "degenerate samples prove nothing"


@pytest.mark.parametrize("case", ["binary", "gated-rgb8bit", "gated-conditional"])
def test_fast_sampler_logits_are_the_networks_logits_on_the_final_image(case, monkeypatch):
    """The logits the fast sampler draws each sub-pixel from equal the full network's logits on the finished
    image (each conditional sees exactly the earlier sub-pixels)."""
    model = sampling_model(case)
    seen = []
    draw = type(model)._draw

    def recording_draw(self, logits, generator):
        seen.append(logits.clone())
        return draw(self, logits, generator)

    monkeypatch.setattr(type(model), "_draw", recording_draw)
    labels = torch.tensor([2, 5, 9]) if model.conditional else None
    images = model.sample(3, generator=torch.Generator().manual_seed(0), labels=labels)
    with torch.no_grad():
        full = model.double().logits(images, labels)  # (3, C, P, H, W)
    expected = full.permute(3, 4, 1, 0, 2).reshape(-1, 3, full.shape[2])  # raster order, channels innermost
    assert len(seen) == expected.shape[0]
    torch.testing.assert_close(torch.stack(seen), expected, rtol=1e-9, atol=1e-9)


# ---- DDP ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("config", ["pixelcnn_digits", "gated_pixelcnn_digits"])
def test_ddp_two_processes_keep_identical_parameters(config, tmp_path):
    assert_ddp_fit_in_sync(config, tmp_path)
