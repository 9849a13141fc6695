"""A compact U-Net for epsilon-prediction: the network of Ho et al. [1] (itself PixelCNN++'s U-Net with a sinusoidal
time embedding), cut down to run on a CPU.

[1] arXiv 2006.11239 (Ho, Jain & Abbeel 2020, DDPM: Appendix B, the U-Net with GroupNorm, residual blocks at each
    resolution, self-attention at 16x16, the Transformer's sinusoidal position embedding of the timestep).

Deliberate differences from [1]: one or two resolutions instead of four (28x28 MNIST: 28 and 14), a width of 32
instead of 128, one residual block per resolution instead of two, and self-attention only where asked
(``attention=True``: one block in the middle, at the lowest resolution). diffusers' ``UNet2DModel`` was measured
against this network (see the docs' DDPM section): at a comparable size (164k against 160k parameters, two
resolutions at 28x28) it took 1.7 times as long per training step on one CPU thread, and its default four
resolutions need 28x28 padded to 32x32; its schedulers sample but give none of the bound's terms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding ``(N,) -> (N, dim)`` of (float) timesteps, as in the Transformer and [1]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(1, half - 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    return F.pad(emb, (0, dim % 2))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv; plus the time embedding's projection; GroupNorm, SiLU, dropout, 3x3 conv; and a
    1x1 skip where the width changes."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(in_channels), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2, self.conv2 = _norm(out_channels), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """One-head self-attention over the pixels, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm, self.qkv = _norm(channels), nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # each (B, H * W, C)
        a = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(a.transpose(1, 2).reshape(b, c, h, w))


class UNet(nn.Module):
    """``eps(x_t, t)``: images ``(N, C, H, W)`` and timesteps ``(N,)`` -> a tensor of the images' shape.

    Args:
        in_channels: image channels.
        channels: width at full resolution.
        channel_mults: width multiplier of each resolution; each after the first halves the sides (so the sides must
            be divisible by ``2 ** (len(channel_mults) - 1)``).
        blocks: residual blocks per resolution on the way down (one more on the way up, as in [1]).
        attention: one self-attention block in the middle, at the lowest resolution.
        dropout: dropout in the residual blocks.
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, channel_mults: Sequence[int] = (1, 2),
                 blocks: int = 1, attention: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if channels < 1 or blocks < 1 or not channel_mults or min(channel_mults) < 1:
            raise ValueError(f"channels, blocks and channel_mults must be positive, got {channels}, {blocks}, "
                             f"{tuple(channel_mults)}")
        self.channels, self.downsamplings = int(channels), len(channel_mults) - 1
        emb_dim = 4 * channels
        self.time = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        widths, skips = [channels], [channels]
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mults):
            for _ in range(blocks):
                self.down.append(ResBlock(widths[-1], channels * mult, emb_dim, dropout))
                widths.append(channels * mult)
                skips.append(widths[-1])
            if level < self.downsamplings:
                self.down.append(nn.Conv2d(widths[-1], widths[-1], 3, stride=2, padding=1))
                skips.append(widths[-1])
        mid = widths[-1]
        self.mid1 = ResBlock(mid, mid, emb_dim, dropout)
        self.attn = Attention(mid) if attention else nn.Identity()
        self.mid2 = ResBlock(mid, mid, emb_dim, dropout)
        self.up = nn.ModuleList()
        width = mid
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(blocks + 1):
                self.up.append(ResBlock(width + skips.pop(), channels * mult, emb_dim, dropout))
                width = channels * mult
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                             nn.Conv2d(width, width, 3, padding=1)))
        self.out = nn.Sequential(_norm(width), nn.SiLU(), nn.Conv2d(width, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def check_side(self, height: int, width: int) -> None:
        """Refuse image sides the downsamplings cannot halve exactly."""
        factor = 2 ** self.downsamplings
        if height % factor or width % factor:
            raise ValueError(f"the U-Net halves the image {self.downsamplings} time(s), so its sides must be "
                             f"divisible by {factor}; got {height}x{width}: use fewer channel_mults")

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.time(timestep_embedding(t, self.channels))
        h = self.inp(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], dim=1), emb) if isinstance(layer, ResBlock) else layer(h)
        return self.out(h)
