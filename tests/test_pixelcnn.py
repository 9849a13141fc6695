"""PixelCNN and Gated PixelCNN: causality, receptive fields, exact normalisation, fast == naive sampling, DDP."""

from __future__ import annotations

import itertools
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_ddp_fit_in_sync

from lightning_gen.models.base import from_levels
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


def input_jacobian_support(model, labels=None, leaky: bool = True) -> torch.Tensor:
    """``dep[o, i]``: whether sub-pixel ``o``'s logits depend on input sub-pixel ``i`` (raster, channels innermost),
    from input gradients at 8 random points.

    ``leaky``: measure with the ReLUs made leaky, so that units that happen to be inactive at the random points
    (common in tiny random nets) do not hide a connection; the masks make the forbidden gradients exactly zero
    either way, and a ReLU can only remove dependencies, never add them.
    """
    c, h, w = model.image_shape
    x = torch.randn(8, c, h, w, dtype=torch.float64, requires_grad=True)
    if labels is not None:
        labels = labels.expand(8)
    relu = (lambda t, inplace=False: F.leaky_relu(t, 0.1)) if leaky else F.relu
    with mock.patch.object(F, "relu", relu):
        logits = model.net(x, labels) if model.conditional else model.net(x)  # (8, C, P, H, W)
    proj = torch.randn(logits.shape[2], dtype=torch.float64)  # a random mix of the P logits of a sub-pixel
    out = torch.einsum("bcphw,p->chw", logits, proj)  # summed over the batch: images are independent
    dep = torch.zeros(c * h * w, c * h * w, dtype=torch.bool)
    for i, j, k in itertools.product(range(h), range(w), range(c)):
        (grad,) = torch.autograd.grad(out[k, i, j], x, retain_graph=True)
        dep[(i * w + j) * c + k] = (grad != 0).any(0).permute(1, 2, 0).reshape(-1)  # (C, H, W) -> (H, W, C)
    return dep


# ---- causality and receptive fields ---------------------------------------------------------------------------
UNEVEN = {PixelCNN: dict(hidden_channels=5, head_channels=10), GatedPixelCNN: dict(channels=7, head_channels=10)}


@pytest.mark.parametrize("data", [*DATA, "rgb-uneven-groups"], ids=str)
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_logits_depend_only_on_earlier_subpixels(cls, data):
    """Every sub-pixel (all positions, corners included, every channel) sees nothing at or after itself in
    raster/channel order, and sees some earlier sub-pixel. "uneven": feature maps not a multiple of 3."""
    model = make(cls, *DATA["rgb8bit"], **UNEVEN[cls]) if data == "rgb-uneven-groups" else make(cls, *DATA[data])
    dep = input_jacobian_support(model)
    order = torch.arange(dep.shape[0])
    future = order[:, None] <= order[None, :]
    assert not dep[future].any(), "a sub-pixel sees itself or a later one"
    assert not input_jacobian_support(model, leaky=False)[future].any(), "the model as it is sees the future"
    assert dep[1:].any(1).all(), "a sub-pixel sees no earlier sub-pixel"
    if data != "binary":  # R, G, B of a pixel: G sees R, B sees R and G
        c, h, w = model.image_shape
        for p in (0, h * w // 2, h * w - 1):
            r, g, b = 3 * p, 3 * p + 1, 3 * p + 2
            assert dep[g, r] and dep[b, r] and dep[b, g]


def pixel_support(model, i, j, labels=None) -> torch.Tensor:
    """(H, W) bool: the input pixels that the logits of pixel (i, j) (first channel) depend on."""
    c, h, w = model.image_shape
    dep = input_jacobian_support(model, labels)[(i * w + j) * c]
    return dep.view(h, w, c).any(-1)


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
    dep = input_jacobian_support(model, torch.tensor([3]))
    order = torch.arange(dep.shape[0])
    assert not dep[order[:, None] <= order[None, :]].any()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    a, b = model.net(x, torch.tensor([1, 1])), model.net(x, torch.tensor([1, 2]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


# ---- exact normalisation -----------------------------------------------------------------------------------------
def all_images(shape, num_levels) -> torch.Tensor:
    c, h, w = shape
    grid = torch.cartesian_prod(*[torch.arange(num_levels)] * (c * h * w)).view(-1, c, h, w)
    return from_levels(grid, num_levels)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_probabilities_of_all_binary_3x3_images_sum_to_one(cls):
    torch.manual_seed(0)
    model = cls((1, 3, 3), 2, 0, **SMALL[cls])  # float32, as trained
    x = all_images((1, 3, 3), 2)
    assert x.shape[0] == 512
    with torch.no_grad():
        total = model.log_prob(x).exp().sum().item()
    assert abs(total - 1.0) < 1e-5, total


def test_conditional_probabilities_sum_to_one_for_each_label():
    torch.manual_seed(0)
    model = GatedPixelCNN((1, 3, 3), 2, 10, **SMALL[GatedPixelCNN], conditional=True)
    x = all_images((1, 3, 3), 2)
    with torch.no_grad():
        totals = [model.log_prob(x, torch.full((512,), y)).exp().sum().item() for y in (0, 7)]
        p0, p7 = (model.log_prob(x[:16], torch.full((16,), y)) for y in (0, 7))
    assert all(abs(t - 1.0) < 1e-5 for t in totals), totals
    assert not torch.allclose(p0, p7), "the label changes nothing"


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_probabilities_of_all_rgb_images_sum_to_one(cls):
    """A 2x1 RGB image with 4 levels per sub-pixel: 4^6 images, softmax outputs and colour ordering included."""
    torch.manual_seed(0)
    model = cls((3, 2, 1), 4, 0, **SMALL[cls])
    x = all_images((3, 2, 1), 4)
    with torch.no_grad():
        total = model.log_prob(x).exp().sum().item()
    assert abs(total - 1.0) < 1e-5, total


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
    model = cls(shape, levels, classes, **{**SMALL[cls], **options})
    with torch.no_grad():  # larger weights than the default init give sharper, more varied conditionals
        for p in model.parameters():
            p.mul_(2.0)
    return model


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


@pytest.mark.parametrize("naive", [False, True], ids=["fast", "naive"])
def test_a_fixed_generator_gives_identical_samples(naive):
    model = sampling_model("gated-binary")
    a = model.sample(4, generator=torch.Generator().manual_seed(5), naive=naive)
    b = model.sample(4, generator=torch.Generator().manual_seed(5), naive=naive)
    c = model.sample(4, generator=torch.Generator().manual_seed(6), naive=naive)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(torch.unique(a).tolist()) <= {0, 255}


def test_conditional_sampling_uses_and_checks_labels():
    model = sampling_model("gated-conditional")
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = model.sample(6, labels=torch.full((6,), 0), generator=gen())
    b = model.sample(6, labels=torch.full((6,), 9), generator=gen())
    assert not torch.equal(a, b), "the label changes nothing"
    # Without labels the classes are drawn from the generator too, so the draw stays reproducible.
    assert torch.equal(model.sample(3, generator=gen()), model.sample(3, generator=gen()))
    with pytest.raises(ValueError, match="labels must have shape"):
        model.sample(2, labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must lie in"):
        model.sample(2, labels=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="not class-conditional"):
        sampling_model("binary").sample(2, labels=torch.zeros(2, dtype=torch.long))


# ---- DDP ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("config", ["pixelcnn_digits", "gated_pixelcnn_digits"])
def test_ddp_two_processes_keep_identical_parameters(config, tmp_path):
    assert_ddp_fit_in_sync(config, tmp_path)
