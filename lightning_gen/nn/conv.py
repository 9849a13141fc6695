"""Encoder and decoder stacks for latent-variable models: convolutional ones for square images (8x8 digits, 28x28
MNIST, 32x32 CIFAR-10, ...) and the fully connected ones of the IWAE paper.

Plain torch, no Lightning. The encoder halves the resolution with stride-2 4x4 convolutions while the side is even
and at least 8 (8 -> 4, 28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 64 -> ... -> 4), doubling the channels each time, then
maps the flattened feature map to a vector with one linear layer. The decoder mirrors it with stride-2 4x4
transposed convolutions, which double the side exactly, so the output has the input's size::

    encoder  (C, 28, 28) -conv3-> (w, 28, 28) -down-> (2w, 14, 14) -down-> (4w, 7, 7) -linear-> out_features
    decoder  in_features -linear-> (4w, 7, 7) -up-> (2w, 14, 14) -up-> (w, 28, 28) -conv3-> (out_channels, 28, 28)

``blocks`` extra 3x3 convolutions per scale add depth without changing the resolution. There is no
normalisation layer: batch statistics would make a latent-variable model's likelihood depend on the batch
it is evaluated in, and under DDP they would need syncing.

:class:`MLPEncoder` / :class:`MLPDecoder` are the one-stochastic-layer networks of Burda et al. 2015 (IWAE,
arXiv 1509.00519): 784-200-200-50 with tanh units. They cost a twentieth of the conv decoder per evaluation,
which matters for a 5,000-sample importance-weighted NLL on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn


def downsampling_steps(size: int) -> int:
    """How many stride-2 halvings the stacks apply to a side of ``size`` pixels (halve while even and >= 8)."""
    steps = 0
    while size % 2 == 0 and size >= 8:
        size //= 2
        steps += 1
    return steps


def _check_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    c, h, w = (int(s) for s in image_shape)
    if h != w:
        raise ValueError(f"the conv stacks take square images, got {h}x{w}")
    base = h >> downsampling_steps(h)
    if base > 8:
        raise ValueError(f"a {h}x{h} image halves down to {base}x{base} only; use a side of the form 2^k * (4..8), "
                         "e.g. 8, 28, 32 or 64")
    return c, h, w


def _widths(steps: int, channels: int, max_channels: int) -> list[int]:
    return [min(channels * 2**i, max_channels) for i in range(steps + 1)]


class ConvEncoder(nn.Module):
    """Image encoder: float ``(B, C, H, W)`` -> ``(B, out_features)``.

    Args:
        image_shape: ``(C, H, W)`` with ``H == W``.
        out_features: size of the output vector (e.g. ``2 * z_dim`` for a Gaussian's mean and log-variance).
        channels: width at full resolution; doubled at each halving, capped at ``max_channels``.
        blocks: extra 3x3 convolutions at each resolution.
    """

    def __init__(self, image_shape: Sequence[int], out_features: int, *, channels: int = 32, blocks: int = 0,
                 max_channels: int = 256) -> None:
        super().__init__()
        c, h, _ = _check_shape(image_shape)
        steps = downsampling_steps(h)
        widths = _widths(steps, channels, max_channels)
        layers: list[nn.Module] = [nn.Conv2d(c, widths[0], 3, padding=1), nn.SiLU()]
        for _ in range(blocks):
            layers += [nn.Conv2d(widths[0], widths[0], 3, padding=1), nn.SiLU()]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, stride=2, padding=1), nn.SiLU()]
            for _ in range(blocks):
                layers += [nn.Conv2d(w_out, w_out, 3, padding=1), nn.SiLU()]
        base = h >> steps
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1] * base * base, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))  # (B, W, b, b) -> (B, W * b * b) -> (B, out)


class ConvDecoder(nn.Module):
    """Vector -> feature map of the image's size: ``(B, in_features)`` -> ``(B, out_channels, H, W)``.

    Args:
        in_features: size of the input vector (the latent code).
        image_shape: ``(C, H, W)`` of the images; only ``H == W`` sets the output size.
        out_channels: output channels, e.g. ``C`` times the number of distribution parameters per sub-pixel.
        channels, blocks, max_channels: as for :class:`ConvEncoder` (the widths mirror it).
    """

    def __init__(self, in_features: int, image_shape: Sequence[int], out_channels: int, *, channels: int = 32,
                 blocks: int = 0, max_channels: int = 256) -> None:
        super().__init__()
        _, h, _ = _check_shape(image_shape)
        steps = downsampling_steps(h)
        widths = _widths(steps, channels, max_channels)
        self.base_shape = (widths[-1], h >> steps, h >> steps)
        self.head = nn.Linear(in_features, widths[-1] * (h >> steps) ** 2)
        layers: list[nn.Module] = [nn.SiLU()]
        for w_in, w_out in zip(widths[:0:-1], widths[-2::-1]):
            for _ in range(blocks):
                layers += [nn.Conv2d(w_in, w_in, 3, padding=1), nn.SiLU()]
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1), nn.SiLU()]
        for _ in range(blocks):
            layers += [nn.Conv2d(widths[0], widths[0], 3, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(widths[0], out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.head(z).view(-1, *self.base_shape))  # (B, W * b * b) -> (B, W, b, b) -> (B, C', H, W)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Fully connected encoder: float ``(B, C, H, W)`` -> ``(B, out_features)``, tanh hidden layers."""

    def __init__(self, image_shape: Sequence[int], out_features: int, *,
                 hidden_sizes: Sequence[int] = (200, 200)) -> None:
        super().__init__()
        self.net = _mlp([math.prod(image_shape), *hidden_sizes, out_features])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))  # (B, C, H, W) -> (B, C * H * W)


class MLPDecoder(nn.Module):
    """Fully connected decoder: ``(B, in_features)`` -> ``(B, out_channels, H, W)``, tanh hidden layers."""

    def __init__(self, in_features: int, image_shape: Sequence[int], out_channels: int, *,
                 hidden_sizes: Sequence[int] = (200, 200)) -> None:
        super().__init__()
        self.out_shape = (out_channels, int(image_shape[1]), int(image_shape[2]))
        self.net = _mlp([in_features, *hidden_sizes, math.prod(self.out_shape)])

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.out_shape)  # (B, C' * H * W) -> (B, C', H, W)
