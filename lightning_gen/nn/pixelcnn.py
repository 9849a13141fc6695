"""Causal convolutions for PixelCNN [1] and Gated PixelCNN [2], plus the caches that evaluate them one position
(or one row) at a time for fast sampling in the spirit of [3].

[1] arXiv 1601.06759 (van den Oord, Kalchbrenner, Kavukcuoglu 2016, *Pixel Recurrent Neural Networks*)
[2] arXiv 1606.05328 (van den Oord et al. 2016, *Conditional Image Generation with PixelCNN Decoders*)
[3] arXiv 1704.06001 (Ramachandran et al. 2017, *Fast Generation for Convolutional Autoregressive Models*)

Conventions. Pixels are generated in raster order (rows top to bottom, columns left to right) and, within a pixel,
sub-pixels in channel order (R, then G, then B). Feature maps of a hidden layer are split into ``C`` contiguous
colour groups (``C`` = data channels; group 0 belongs to R): a feature of group ``g`` at a pixel may see the
sub-pixels of colour ``< g`` at that pixel (mask A, the first layer) or the features of groups ``<= g`` (mask B,
every later layer). The output layer's ``C * P`` maps are the ``C`` groups of ``P`` logits each.

Where this code deliberately differs from the papers: a causal kernel stores only the rows it may use (a
``k x k`` mask-B kernel is stored as its ``(k // 2 + 1) x k`` top part, a horizontal one as ``1 x (k // 2 + 1)``)
instead of a full kernel with zeroed rows, so parameter counts are those of the taps actually used.

Everything here is plain torch (no Lightning).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASK_TYPES = ("A", "B")

#: How a network applies a spatial (k > 1) causal convolution: ``conv(x)`` on whole maps, or through a cache
#: (:class:`ConvCache`) on one position or one row.
ApplyConv = Callable[["CausalConv2d", Tensor], Tensor]


def apply_full(conv: CausalConv2d, x: Tensor) -> Tensor:
    return conv(x)


def channel_groups(num_channels: int, data_channels: int) -> Tensor:
    """Colour group (0 = R, 1 = G, 2 = B) of each of ``num_channels`` feature maps: ``C`` contiguous blocks of
    (nearly) equal size, e.g. 8 maps over 3 colours: ``0 0 0 1 1 1 2 2``."""
    if num_channels < data_channels:
        raise ValueError(f"{num_channels} feature maps cannot be split into {data_channels} colour groups; "
                         f"use at least {data_channels}")
    return torch.arange(num_channels) * data_channels // num_channels


class CausalConv2d(nn.Conv2d):
    """A convolution that only looks up and to the left: output ``(i, j)`` reads input rows ``i - top .. i`` and
    columns ``j - left .. j + right``, with zero padding outside the image (no rows below ``i`` are read).

    Subclasses restrict the taps further with :meth:`kernel`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], pads: tuple[int, int, int],
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=bias)
        left, right, top = pads
        if kernel_size != (top + 1, left + right + 1):
            raise ValueError(f"kernel {kernel_size} does not match pads (left, right, top) = {pads}")
        self.pads = pads

    def kernel(self) -> Tensor:
        return self.weight

    def forward(self, x: Tensor) -> Tensor:
        left, right, top = self.pads
        return F.conv2d(F.pad(x, (left, right, top, 0)), self.kernel(), self.bias)


class VerticalConv2d(CausalConv2d):
    """Gated PixelCNN's vertical-stack convolution: a ``(k // 2 + 1) x k`` kernel over the rows above and the
    current row, all columns of the window. Output row ``i`` depends on input rows ``<= i``; the stack's output
    is shifted down one row before it reaches the horizontal stack, so no pixel ever sees its own row there::

        1 1 1 1 1
        1 1 1 1 1
        1 1 1 1 1     <- current row (k = 5)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        k = _odd(kernel_size)
        super().__init__(in_channels, out_channels, (k // 2 + 1, k), (k // 2, k // 2, k // 2))


class MaskedConv2d(CausalConv2d):
    """PixelCNN's masked convolution, the mask a buffer applied as ``F.conv2d(x, weight * mask)``.

    A ``k x k`` kernel (``horizontal=False``) is stored as its top ``k // 2 + 1`` rows; ``k = 5``::

        1 1 1 1 1
        1 1 1 1 1
        1 1 c 0 0     <- current row; the rows below are all 0 and not stored

    A horizontal-stack kernel (``horizontal=True``) is the current row's left part only: ``1 1 c``.

    ``c`` is the centre tap, masked between colour groups (see the module docstring): with ``C = 3`` data
    channels, output group ``g`` (rows) sees input group ``h`` (columns) where::

        mask A (first layer)      mask B (later layers)
            R G B                     R G B
        R   0 0 0                 R   1 0 0
        G   1 0 0                 G   1 1 0
        B   1 1 0                 B   1 1 1

    For one data channel mask A's centre is 0 and mask B's is 1. ``out_blocks > 1`` splits the outputs into that
    many equal blocks with their own colour groups (the tanh and sigmoid halves of a gated unit).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, mask_type: str,
                 data_channels: int = 1, horizontal: bool = False, out_blocks: int = 1, bias: bool = True) -> None:
        if mask_type not in MASK_TYPES:
            raise ValueError(f"unknown mask_type {mask_type!r}; expected one of {MASK_TYPES}")
        k = _odd(kernel_size)
        if horizontal:
            super().__init__(in_channels, out_channels, (1, k // 2 + 1), (k // 2, 0, 0), bias=bias)
        else:
            super().__init__(in_channels, out_channels, (k // 2 + 1, k), (k // 2, k // 2, k // 2), bias=bias)
        if out_channels % out_blocks:
            raise ValueError(f"out_channels {out_channels} is not a multiple of out_blocks {out_blocks}")
        self.mask_type = mask_type
        out_groups = channel_groups(out_channels // out_blocks, data_channels).repeat(out_blocks)
        in_groups = channel_groups(in_channels, data_channels)
        if mask_type == "A":
            centre = out_groups[:, None] > in_groups[None, :]
        else:
            centre = out_groups[:, None] >= in_groups[None, :]
        mask = torch.ones_like(self.weight)
        row, col = self.kernel_size[0] - 1, k // 2  # the centre tap
        mask[:, :, row, col + 1 :] = 0
        mask[:, :, row, col] = centre.to(mask.dtype)
        self.register_buffer("mask", mask, persistent=False)

    def kernel(self) -> Tensor:
        return self.weight * self.mask


def _odd(kernel_size: int) -> int:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    return kernel_size


def gate(x: Tensor) -> Tensor:
    """Gated activation unit ``tanh(a) * sigmoid(b)`` of [2], ``x = [a; b]`` along channels."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class ConvCache:
    """Zero-padded copies of causal convolutions' inputs, filled in as sampling proceeds, so a convolution can
    be evaluated at a single position (:meth:`at`) or on a single row (:meth:`row`) from the inputs written so far.

    This is the fast sampler's core: a causal convolution's output at ``(i, j)`` reads only inputs at earlier
    positions and at ``(i, j)`` itself, so evaluating each layer at ``(i, j)`` right after its input there is
    known reproduces exactly what the layer computes on the whole image, at the cost of one output position.
    """

    def __init__(self, batch: int, height: int, width: int, device: torch.device, dtype: torch.dtype) -> None:
        self.batch, self.height, self.width, self.device, self.dtype = batch, height, width, device, dtype
        self.buffers: dict[CausalConv2d, Tensor] = {}

    def buffer(self, conv: CausalConv2d) -> Tensor:
        if conv not in self.buffers:
            left, right, top = conv.pads
            self.buffers[conv] = torch.zeros(self.batch, conv.in_channels, self.height + top, self.width + left + right,
                                             device=self.device, dtype=self.dtype)
        return self.buffers[conv]

    def write(self, conv: CausalConv2d, x: Tensor, i: int, j: int = 0) -> Tensor:
        """Store ``x`` ``(B, C_in, 1, w)`` as the input of ``conv`` at row ``i``, columns ``j .. j + w - 1``."""
        buf = self.buffer(conv)
        left, _, top = conv.pads
        buf[:, :, top + i, left + j : left + j + x.shape[-1]] = x[:, :, 0]
        return buf

    def at(self, conv: CausalConv2d, x: Tensor, i: int, j: int) -> Tensor:
        """``conv``'s output at ``(i, j)``, ``(B, C_out, 1, 1)``, after writing its input ``x`` ``(B, C_in, 1, 1)``."""
        buf = self.write(conv, x, i, j)
        kh, kw = conv.kernel_size
        return F.conv2d(buf[:, :, i : i + kh, j : j + kw], conv.kernel(), conv.bias)

    def row(self, conv: CausalConv2d, x: Tensor, i: int) -> Tensor:
        """``conv``'s output on row ``i``, ``(B, C_out, 1, W)``, after writing input row ``x`` ``(B, C_in, 1, W)``."""
        buf = self.write(conv, x, i)
        return F.conv2d(buf[:, :, i : i + conv.kernel_size[0]], conv.kernel(), conv.bias)


# ---- PixelCNN ---------------------------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """PixelCNN's residual block (Figure 5 of [1]): ReLU, 1x1 (2h -> h), ReLU, k x k mask B (h -> h), ReLU,
    1x1 (h -> 2h), added to the input. The 1x1 convolutions are masked between colour groups too."""

    def __init__(self, hidden: int, kernel_size: int, data_channels: int) -> None:
        super().__init__()
        self.reduce = MaskedConv2d(2 * hidden, hidden, 1, mask_type="B", data_channels=data_channels)
        self.conv = MaskedConv2d(hidden, hidden, kernel_size, mask_type="B", data_channels=data_channels)
        self.expand = MaskedConv2d(hidden, 2 * hidden, 1, mask_type="B", data_channels=data_channels)

    def forward(self, x: Tensor, apply: ApplyConv = apply_full) -> Tensor:
        t = self.reduce(F.relu(x))
        t = apply(self.conv, F.relu(t))
        return x + self.expand(F.relu(t))


class PixelCNNNet(nn.Module):
    """PixelCNN [1]: a 7x7 mask-A convolution, residual mask-B blocks, two ReLU + 1x1 mask-B output layers.

    Input ``(B, C, H, W)`` floats (unknown sub-pixels may hold anything: they are never read); output
    ``(B, C, P, H, W)`` logits, ``P`` per sub-pixel. Its receptive field has the blind spot of [2], Figure 1.
    """

    def __init__(self, data_channels: int, outputs: int, *, hidden: int, blocks: int, head: int,
                 input_kernel_size: int = 7, kernel_size: int = 3) -> None:
        super().__init__()
        c = data_channels
        self.data_channels, self.outputs = c, outputs
        self.input_conv = MaskedConv2d(c, 2 * hidden, input_kernel_size, mask_type="A", data_channels=c)
        self.blocks = nn.ModuleList(ResidualBlock(hidden, kernel_size, c) for _ in range(blocks))
        self.head = nn.ModuleList([MaskedConv2d(2 * hidden, head, 1, mask_type="B", data_channels=c),
                                   MaskedConv2d(head, c * outputs, 1, mask_type="B", data_channels=c)])

    def forward(self, x: Tensor, apply: ApplyConv = apply_full) -> Tensor:
        h = apply(self.input_conv, x)
        for block in self.blocks:
            h = block(h, apply)
        out = self.head[1](F.relu(self.head[0](F.relu(h))))
        b, _, height, width = out.shape
        return out.view(b, self.data_channels, self.outputs, height, width)

    def sampler(self, batch: int, height: int, width: int, labels: Tensor | None, device, dtype) -> PixelCNNSampler:
        return PixelCNNSampler(self, ConvCache(batch, height, width, device, dtype))


class PixelCNNSampler:
    """Incremental evaluation of a :class:`PixelCNNNet`: every layer once per position, from cached inputs."""

    def __init__(self, net: PixelCNNNet, cache: ConvCache) -> None:
        self.net, self.cache = net, cache

    def logits(self, x: Tensor, i: int, j: int) -> Tensor:
        """Logits ``(B, C, P)`` at ``(i, j)`` given that pixel's known sub-pixels ``x`` ``(B, C, 1, 1)``."""
        return self.net(x, lambda conv, t: self.cache.at(conv, t, i, j))[:, :, :, 0, 0]

    def end_pixel(self, x: Tensor, i: int, j: int) -> None:
        # The last sub-pixel reaches later positions only through the input convolution.
        self.cache.write(self.net.input_conv, x, i, j)

    def end_row(self, x: Tensor, i: int) -> None:
        pass


# ---- Gated PixelCNN ---------------------------------------------------------------------------------------------
class GatedLayer(nn.Module):
    """One layer of Gated PixelCNN (Figure 2 of [2]): a vertical and a horizontal stack with gated units.

    vertical:   v_pre = VerticalConv(v) + cond;   v' = gate(v_pre)
    horizontal: h_pre = MaskedConv_h(h) + 1x1(down_shift(v_pre)) + cond;   h' = h + 1x1(gate(h_pre))
    (no residual in the first layer, whose input is the image). ``cond`` is the layer's class embedding.
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, data_channels: int, *, first: bool,
                 num_classes: int) -> None:
        super().__init__()
        self.first = first
        self.v_conv = VerticalConv2d(in_channels, 2 * channels, kernel_size)
        self.h_conv = MaskedConv2d(in_channels, 2 * channels, kernel_size, mask_type="A" if first else "B",
                                   data_channels=data_channels, horizontal=True, out_blocks=2)
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = MaskedConv2d(channels, channels, 1, mask_type="B", data_channels=data_channels)
        self.embedding = nn.Embedding(num_classes, 2 * channels) if num_classes else None

    def condition(self, labels: Tensor | None) -> Tensor | float:
        if self.embedding is None:
            return 0.0
        return self.embedding(labels)[:, :, None, None]  # (B, 2p) -> (B, 2p, 1, 1)

    def vertical(self, v: Tensor, cond: Tensor | float, apply: ApplyConv) -> Tensor:
        """The vertical pre-activation ``v_pre`` (before the gate)."""
        return apply(self.v_conv, v) + cond

    def horizontal(self, h: Tensor, v_pre_above: Tensor, cond: Tensor | float, apply: ApplyConv) -> Tensor:
        """``v_pre_above``: the vertical pre-activation of the row above, already shifted down to this row."""
        out = self.h_out(gate(apply(self.h_conv, h) + self.link(v_pre_above) + cond))
        return out if self.first else h + out


class GatedPixelCNNNet(nn.Module):
    """Gated PixelCNN [2]: ``layers`` gated layers (the first with ``input_kernel_size``), then ReLU + 1x1 mask B
    (``head`` maps), ReLU + 1x1 mask B to ``C * P`` logits. No blind spot: the vertical stack covers every row
    above within the field, the horizontal stack the current row to the left.

    Input ``(B, C, H, W)`` floats, output ``(B, C, P, H, W)`` logits; ``labels`` ``(B,)`` when ``num_classes > 0``.
    """

    def __init__(self, data_channels: int, outputs: int, *, channels: int, layers: int, head: int,
                 input_kernel_size: int = 7, kernel_size: int = 3, num_classes: int = 0) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        c = data_channels
        self.data_channels, self.outputs, self.num_classes = c, outputs, num_classes
        self.layers = nn.ModuleList(
            GatedLayer(c if k == 0 else channels, channels, input_kernel_size if k == 0 else kernel_size, c,
                       first=k == 0, num_classes=num_classes)
            for k in range(layers))
        self.head = nn.ModuleList([MaskedConv2d(channels, head, 1, mask_type="B", data_channels=c),
                                   MaskedConv2d(head, c * outputs, 1, mask_type="B", data_channels=c)])

    def conditions(self, labels: Tensor | None) -> list[Tensor | float]:
        if self.num_classes and labels is None:
            raise ValueError("this network is class-conditional: pass labels")
        return [layer.condition(labels) for layer in self.layers]

    def vertical(self, x: Tensor, conds: Sequence[Tensor | float], apply: ApplyConv = apply_full) -> list[Tensor]:
        """Vertical pre-activations of every layer; row ``i`` depends on input rows ``<= i``."""
        v, pres = x, []
        for layer, cond in zip(self.layers, conds):
            pre = layer.vertical(v, cond, apply)
            pres.append(pre)
            v = gate(pre)
        return pres

    def horizontal(self, x: Tensor, v_above: Sequence[Tensor], conds: Sequence[Tensor | float],
                   apply: ApplyConv = apply_full) -> Tensor:
        """Logits ``(B, C, P, H, W)`` from the horizontal stack, given the shifted vertical pre-activations."""
        h = x
        for layer, v, cond in zip(self.layers, v_above, conds):
            h = layer.horizontal(h, v, cond, apply)
        out = self.head[1](F.relu(self.head[0](F.relu(h))))
        b, _, height, width = out.shape
        return out.view(b, self.data_channels, self.outputs, height, width)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        conds = self.conditions(labels)
        v_above = [F.pad(v, (0, 0, 1, 0))[:, :, :-1] for v in self.vertical(x, conds)]  # shift down one row
        return self.horizontal(x, v_above, conds)

    def sampler(self, batch: int, height: int, width: int, labels: Tensor | None, device,
                dtype) -> GatedPixelCNNSampler:
        return GatedPixelCNNSampler(self, ConvCache(batch, height, width, device, dtype), labels)


class GatedPixelCNNSampler:
    """Incremental evaluation of a :class:`GatedPixelCNNNet`.

    The horizontal stack is evaluated once per position, as in :class:`PixelCNNSampler`. The vertical stack's
    row ``i`` reads the whole of input row ``i`` but is only used from row ``i + 1`` on, so it is evaluated one
    row at a time, when row ``i`` is complete, and its pre-activations are kept for the next row.
    """

    def __init__(self, net: GatedPixelCNNNet, cache: ConvCache, labels: Tensor | None) -> None:
        self.net, self.cache = net, cache
        self.conds = net.conditions(labels)
        shape = (cache.batch, 2 * net.layers[0].h_out.in_channels, 1, cache.width)
        self.zero_row = torch.zeros(shape, device=cache.device, dtype=cache.dtype)
        self.v_above = [self.zero_row] * len(net.layers)  # vertical pre-activations of the previous row

    def logits(self, x: Tensor, i: int, j: int) -> Tensor:
        """Logits ``(B, C, P)`` at ``(i, j)`` given that pixel's known sub-pixels ``x`` ``(B, C, 1, 1)``."""
        v = [row[:, :, :, j : j + 1] for row in self.v_above]
        return self.net.horizontal(x, v, self.conds, lambda conv, t: self.cache.at(conv, t, i, j))[:, :, :, 0, 0]

    def end_pixel(self, x: Tensor, i: int, j: int) -> None:
        self.cache.write(self.net.layers[0].h_conv, x, i, j)

    def end_row(self, x: Tensor, i: int) -> None:
        """Row ``i`` of the input ``x`` ``(B, C, 1, W)`` is complete: advance the vertical stack by one row."""
        self.v_above = self.net.vertical(x, self.conds, lambda conv, t: self.cache.row(conv, t, i))
