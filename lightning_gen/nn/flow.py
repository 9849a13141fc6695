"""Layers of a change-of-variables flow: RealNVP's affine couplings, squeezing and multi-scale factoring [1], and
the dequantizing logit that puts discrete images into the flow's space.

[1] arXiv 1605.08803 (Dinh, Sohl-Dickstein & Bengio 2017, RealNVP).
[2] arXiv 1807.03039 (Kingma & Dhariwal 2018, Glow: actnorm and invertible 1x1 convolutions), optional.

An :class:`AffineCoupling` keeps the sub-pixels a mask selects (``b = 1``) and maps the others by an affine
function of them, ``y = b x + (1 - b) (x exp(s(b x)) + t(b x))``, so its log-determinant is ``sum (1 - b) s``.
Two masks, as in [1]::

    checkerboard, parity 0      channel, parity 0 (C = 4)
      1 0 1 0                     channels 0, 1: kept (b = 1)
      0 1 0 1                     channels 2, 3: transformed
      1 0 1 0
      0 1 0 1

Parity 1 swaps the roles. :class:`MultiScaleFlow` is [1]'s architecture: at each scale but the last, couplings with
alternating checkerboard masks, a squeeze (``(C, H, W) -> (4C, H/2, W/2)``), couplings with alternating channel
masks, then half the channels leave the flow (they are Gaussian latents); the last scale has checkerboard
couplings only (channel ones where it is down to one pixel). The latents of all scales are concatenated into one
``(B, D)`` vector with an ``N(0, I)`` prior.

Deliberate differences from [1]: no batch normalisation (an image's density would depend on its batch, and eval
mode on running statistics) and no weight normalisation; ``s = scale * tanh(raw)`` with a learned scale per
channel; the coupling nets' last convolution starts at zero, so a new flow is the identity.

The dequantizing logit (:func:`dequantize`): an image of integer levels ``x`` in ``0..L-1`` becomes
``y = (x + u) / L`` in the unit cube, ``u ~ U[0, 1)^D``, and then ``s = logit(y)`` in ``R^D``, the flow's input.
[1] uses ``logit(a + (1 - 2a) y)`` with ``a = 0.05``, which maps the cube onto a bounded box: a density on ``R^D``
then gives the cube less than probability one (the mass outside the box is lost), and the "likelihood" of the
discrete data is not a probability. Here ``a = 0``: the logit is a bijection of the open cube onto ``R^D``, so the
flow's density on ``R^D`` is a proper density on the cube, and ``P(x) = L^-D E_u[p(y)]`` sums to one over the
images. The cube's edges need care in float arithmetic (``x = 0`` with ``u -> 0`` gives ``s -> -inf``; ``1 - y``
rounds to 0 near the top): ``u = Phi(n)`` is drawn from a standard normal ``n`` and the logit is computed from
``log u = log Phi(n)`` and ``log(1 - u) = log Phi(-n)`` in float64, which are exact at both ends. ``u`` is then
exactly uniform (no clamping), and ``s`` finite for every normal draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASKS = ("checkerboard", "channel")


# ---- dequantization ----------------------------------------------------------------------------------------
def dequantize(levels: Tensor, noise: Tensor, num_levels: int) -> tuple[Tensor, Tensor]:
    """Integer ``levels`` ``(B, ...)`` in ``0..L-1`` and standard normal ``noise`` of the same shape -> the flow's
    input ``s = logit((x + u) / L)``, ``u = Phi(noise)``, in float64, and ``log |det ds/dy|`` per image ``(B,)``.

    ``log |ds/dy| = -log y - log(1 - y)`` per sub-pixel, with ``y = a / L`` and ``1 - y = b / L``,
    ``a = x + u`` and ``b = L - 1 - x + (1 - u)``; ``log a`` at ``x = 0`` and ``log b`` at ``x = L - 1`` come from
    ``log Phi``, exact however close ``u`` is to 0 or 1.
    """
    x, n = levels.double(), noise.double()
    log_a = torch.where(levels == 0, torch.special.log_ndtr(n), torch.log(x + torch.special.ndtr(n)))
    log_b = torch.where(levels == num_levels - 1, torch.special.log_ndtr(-n),
                        torch.log(num_levels - 1 - x + torch.special.ndtr(-n)))
    log_det = (2 * math.log(num_levels) - log_a - log_b).flatten(1).sum(1)
    return log_a - log_b, log_det


def quantize(s: Tensor, num_levels: int) -> Tensor:
    """The flow's space -> integer levels: ``x = floor(L sigmoid(s))``, the level whose cube holds ``y``."""
    y = torch.sigmoid(s.double())
    return (y * num_levels).floor().clamp_(0, num_levels - 1).long()


# ---- reshapes and masks --------------------------------------------------------------------------------------
def squeeze(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, 4C, H/2, W/2)``: each 2x2 block of a channel becomes 4 channels."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2)  # (B, C, H/2, 2, W/2, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """The inverse of :func:`squeeze`: ``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""
    b, c4, h, w = x.shape
    x = x.view(b, c4 // 4, 2, 2, h, w)  # (B, C, 2, 2, H, W)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, 2 * h, 2 * w)


def checkerboard(h: int, w: int, parity: int) -> Tensor:
    """``(1, 1, H, W)`` float mask, 1 where ``(row + column) % 2 == parity`` (the sub-pixels kept)."""
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    return ((rows + cols) % 2 == parity).float().view(1, 1, h, w)


# ---- couplings -------------------------------------------------------------------------------------------------
class CouplingNet(nn.Module):
    """A small ResNet of 3x3 convolutions, ``in_channels -> out_channels`` at the same resolution; the output
    convolution starts at zero."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(hidden, hidden, 3, padding=1)) for _ in range(blocks))
        self.conv_out = nn.Conv2d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for block in self.blocks:
            h = h + block(h)
        return self.conv_out(F.relu(h))


class AffineCoupling(nn.Module):
    """One affine coupling layer of [1] on ``(B, C, H, W)`` tensors (see the module docstring for the masks)."""

    def __init__(self, shape: Sequence[int], mask: str, parity: int, hidden: int, blocks: int) -> None:
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"unknown mask {mask!r}; expected one of {MASKS}")
        c, h, w = shape
        self.shape, self.mask_type, self.parity = (c, h, w), mask, int(parity)
        if mask == "checkerboard":
            self.register_buffer("mask", checkerboard(h, w, parity), persistent=False)
            # The net sees the kept sub-pixels and the mask (so it knows which positions those are).
            self.net = CouplingNet(c + 1, 2 * c, hidden, blocks)
            out_channels = c
        else:
            kept = c // 2 if parity == 0 else c - c // 2
            self.split = (kept, c - kept) if parity == 0 else (c - kept, kept)
            self.net = CouplingNet(kept, 2 * (c - kept), hidden, blocks)
            out_channels = c - kept
        self.scale = nn.Parameter(torch.ones(1, out_channels, 1, 1))

    def _params(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        raw_s, t = self.net(kept).chunk(2, dim=1)
        return self.scale * torch.tanh(raw_s), t

    def _halves(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Channel mask: ``(kept, transformed)`` halves of ``x``."""
        first, second = x.split(self.split, dim=1)
        return (first, second) if self.parity == 0 else (second, first)

    def _join(self, kept: Tensor, changed: Tensor) -> Tensor:
        return torch.cat((kept, changed) if self.parity == 0 else (changed, kept), dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x -> (y, log |det dy/dx|)``, the latter ``(B,)``."""
        if self.mask_type == "checkerboard":
            b = self.mask
            s, t = self._params(torch.cat([x * b, b.expand(x.shape[0], 1, -1, -1)], dim=1))
            s, t = s * (1 - b), t * (1 - b)
            return x * torch.exp(s) + t, s.flatten(1).sum(1)
        kept, other = self._halves(x)
        s, t = self._params(kept)
        return self._join(kept, other * torch.exp(s) + t), s.flatten(1).sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        if self.mask_type == "checkerboard":
            b = self.mask
            s, t = self._params(torch.cat([y * b, b.expand(y.shape[0], 1, -1, -1)], dim=1))
            s, t = s * (1 - b), t * (1 - b)
            return (y - t) * torch.exp(-s)
        kept, other = self._halves(y)
        s, t = self._params(kept)
        return self._join(kept, (other - t) * torch.exp(-s))


# ---- Glow's steps [2] ---------------------------------------------------------------------------------------------
class ActNorm(nn.Module):
    """``y = (x + bias) exp(log_scale)`` per channel [2], starting at the identity (not [2]'s data-dependent
    initialisation, which would make a model's first batch special)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_det = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return (x + self.bias) * torch.exp(self.log_scale), log_det.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvConv1x1(nn.Module):
    """An invertible 1x1 convolution [2], a learned mixing of the channels: ``y = W x`` at every pixel, starting
    from a random rotation. ``W``'s log-determinant comes from ``slogdet`` ([2]'s LU form saves nothing at these
    channel counts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(channels, channels))[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_det = torch.linalg.slogdet(self.weight)[1] * x.shape[2] * x.shape[3]
        return F.conv2d(x, self.weight[:, :, None, None]), log_det.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return F.conv2d(y, torch.linalg.inv(self.weight)[:, :, None, None])


def glow_step(shape: Sequence[int], coupling: AffineCoupling, glow: bool) -> list[nn.Module]:
    """``coupling``, preceded by an actnorm and an invertible 1x1 convolution where ``glow``."""
    return [ActNorm(shape[0]), InvConv1x1(shape[0]), coupling] if glow else [coupling]


# ---- the multi-scale architecture ------------------------------------------------------------------------------
class MultiScaleFlow(nn.Module):
    """RealNVP's multi-scale flow [1]: ``(B, C, H, W) -> (B, D)`` latents, invertible.

    Args:
        image_shape: ``(C, H, W)``; ``H`` and ``W`` must be divisible by ``2 ** (num_scales - 1)``.
        num_scales: scales; every scale but the last squeezes and factors out half its channels.
        couplings: checkerboard couplings before each squeeze, and channel couplings after it (the last scale has
            ``couplings + 1`` checkerboard ones, as [1]'s 3 and 4).
        hidden, blocks: width and residual blocks of each coupling's net.
        glow: put [2]'s actnorm and invertible 1x1 convolution before every coupling.
    """

    def __init__(self, image_shape: Sequence[int], num_scales: int = 2, couplings: int = 3, hidden: int = 32,
                 blocks: int = 1, glow: bool = False) -> None:
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        if num_scales < 1 or couplings < 1 or hidden < 1 or blocks < 0:
            raise ValueError(f"num_scales, couplings and hidden must be positive and blocks non-negative, got "
                             f"{num_scales}, {couplings}, {hidden}, {blocks}")
        factor = 2 ** (num_scales - 1)
        if h % factor or w % factor:
            raise ValueError(f"{num_scales} scales squeeze the image {num_scales - 1} times, so its height and width "
                             f"must be divisible by {factor}; got {h}x{w}: use fewer scales (num_scales)")
        self.image_shape = (c, h, w)
        # Per scale: the couplings before the squeeze, and the channel couplings after it (none at the last scale).
        self.before, self.after = nn.ModuleList(), nn.ModuleList()
        for scale in range(num_scales):
            last = scale == num_scales - 1
            if h * w > 1:
                before = [AffineCoupling((c, h, w), "checkerboard", i % 2, hidden, blocks)
                          for i in range(couplings + last)]
            elif c > 1:  # a checkerboard on one pixel would keep it all or change it all
                before = [AffineCoupling((c, h, w), "channel", i % 2, hidden, blocks) for i in range(couplings + 1)]
            else:
                raise ValueError("a flow needs at least two sub-pixels at its last scale; got a one-pixel, "
                                 "one-channel image: use fewer scales (num_scales) or larger images")
            after = []
            if not last:
                c, h, w = 4 * c, h // 2, w // 2
                after = [AffineCoupling((c, h, w), "channel", i % 2, hidden, blocks) for i in range(couplings)]
                c = c - c // 2  # half the channels leave the flow
            self.before.append(nn.ModuleList(m for layer in before for m in glow_step(layer.shape, layer, glow)))
            self.after.append(nn.ModuleList(m for layer in after for m in glow_step(layer.shape, layer, glow)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, H, W) -> (z (B, D), log |det dz/dx| (B,))``."""
        log_det = x.new_zeros(x.shape[0])
        factored = []
        last = len(self.before) - 1
        for scale, (before, after) in enumerate(zip(self.before, self.after)):
            for layer in before:
                x, ld = layer(x)
                log_det = log_det + ld
            if scale == last:
                break
            x = squeeze(x)
            for layer in after:
                x, ld = layer(x)
                log_det = log_det + ld
            out = x.shape[1] // 2
            factored.append(x[:, :out].flatten(1))
            x = x[:, out:]
        factored.append(x.flatten(1))
        return torch.cat(factored, dim=1), log_det

    def inverse(self, z: Tensor) -> Tensor:
        """``z (B, D) -> x (B, C, H, W)``, the inverse of :meth:`forward`."""
        shapes = self._latent_shapes()
        parts = z.split([math.prod(s) for s in shapes], dim=1)
        last = len(self.before) - 1
        x = parts[last].reshape(-1, *shapes[last])
        for scale in range(last, -1, -1):
            if scale < last:
                x = torch.cat([parts[scale].reshape(-1, *shapes[scale]), x], dim=1)
                for layer in reversed(self.after[scale]):
                    x = layer.inverse(x)
                x = unsqueeze(x)
            for layer in reversed(self.before[scale]):
                x = layer.inverse(x)
        return x

    def _latent_shapes(self) -> list[tuple[int, int, int]]:
        """The shape of each scale's factored-out latents, and the last scale's."""
        c, h, w = self.image_shape
        shapes = []
        for _ in range(len(self.before) - 1):
            c, h, w = 4 * c, h // 2, w // 2
            shapes.append((c // 2, h, w))
            c = c - c // 2
        return shapes + [(c, h, w)]
