"""PixelRNN building blocks: causally masked convolutions, the Row LSTM layer and the Diagonal BiLSTM layer.

[1] arXiv 1601.06759 (van den Oord, Kalchbrenner, Kavukcuoglu 2016, *Pixel Recurrent Neural Networks*).

Plain torch. Pixels are generated in raster order and, within a pixel, colour by colour (R, then G, then B).
Every feature channel belongs to one colour group (:func:`channel_groups`); a mask-A connection at the kernel
centre links an output group only to *earlier* input groups, a mask-B one to earlier or equal groups, so a
feature at pixel ``p`` in group ``g`` sees only pixels before ``p`` and the colours of ``p`` before ``g``.

Each layer also has a per-pixel ``step`` that computes its state at one position from cached neighbours; the
samplers in :mod:`lightning_gen.models.pixelrnn` use it to generate without rerunning whole images.

Deliberate differences from [1]:

- The Diagonal LSTM applies its 1x1 input-to-state convolution (and its bias) before skewing, so the skewed
  map's padding has zero gates and the states left of the image stay exactly zero; convolving the skewed map,
  as [1] describes, gives those positions data-independent bias-driven states. Either way no dependency
  changes; this way the raster-order sampler starts each row from a zero state.
- The forget-gate bias starts at 1 (a common LSTM initialisation; [1] does not say).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASK_TYPES = ("A", "B")


def channel_groups(num_features: int, image_channels: int) -> Tensor:
    """Colour group (``0..image_channels-1``) of each of ``num_features`` channels: contiguous, near-equal blocks."""
    if num_features < image_channels:
        raise ValueError(f"need at least one feature per colour: {num_features} features for {image_channels} colours")
    return torch.arange(num_features) * image_channels // num_features


def causal_conv_mask(in_groups: Tensor, out_groups: Tensor, kernel_size: Sequence[int], mask_type: str) -> Tensor:
    """0/1 mask ``(out, in, kh, kw)`` of a convolution that sees only earlier pixels in raster order.

    For a 5x5 kernel (``x`` connected, ``.`` masked, ``c`` the centre)::

        x x x x x
        x x x x x
        x x c . .
        . . . . .
        . . . . .

    At the centre, output channel ``o`` connects to input channel ``i`` when ``group(o) > group(i)`` (mask A, the
    first layer, which must not see the colour it predicts) or ``group(o) >= group(i)`` (mask B, later layers).
    A ``(1, 3)`` kernel is the 1-D row case: ``x c .``.
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"unknown mask type {mask_type!r}; expected one of {MASK_TYPES}")
    kh, kw = kernel_size
    ch, cw = kh // 2, kw // 2
    mask = torch.zeros(len(out_groups), len(in_groups), kh, kw)
    mask[:, :, :ch, :] = 1
    mask[:, :, ch, :cw] = 1
    later = out_groups[:, None] > in_groups[None, :]
    mask[:, :, ch, cw] = (later if mask_type == "A" else later | (out_groups[:, None] == in_groups[None, :])).float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """``conv2d(x, W * M)`` with a fixed 0/1 mask buffer ``M`` (see :func:`causal_conv_mask`), "same" padding."""

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        out_channels, in_channels, kh, kw = mask.shape
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def at(self, window: Tensor) -> Tensor:
        """The output at one position, ``(B, out)``, from the input window around it, ``(B, in, kh, kw)``.

        A matrix product: per-pixel sampling calls this thousands of times on tiny inputs, where a convolution
        call costs far more than its arithmetic.
        """
        return F.linear(window.flatten(1), (self.weight * self.mask).flatten(1), self.bias)


def lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """LSTM update of [1] eq. 3: ``gates`` ``(B, 4h, ...)`` ordered (o, f, i, g), previous cell ``c`` ``(B, h, ...)``."""
    o, f, i, g = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gate_groups(hidden_channels: int, image_channels: int) -> Tensor:
    # The four gates of hidden unit j share j's colour group: gates are laid out (o, f, i, g) x hidden.
    return channel_groups(hidden_channels, image_channels).repeat(4)


def _init_forget_bias(conv: nn.Conv2d, hidden_channels: int) -> None:
    with torch.no_grad():
        conv.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)


class RowLSTMLayer(nn.Module):
    """Row LSTM ([1] sec. 3.1): rows are processed top to bottom, a whole row at a time.

    Input-to-state: a 1-D ``(1, k)`` mask-B convolution along the row (``x c .`` for k=3), computed for all rows
    at once. State-to-state: a 1-D convolution of width ``k`` over the previous row's hidden state. The cell
    state passes straight down a column. The dependency field is a triangle widening upwards.

    Args:
        in_channels: input features (colour-grouped).
        hidden_channels: ``h``, the LSTM state size; the layer returns ``(B, h, H, W)``.
        image_channels: colours of the image (sets the channel groups).
        kernel_size: ``k``, odd.
    """

    def __init__(self, in_channels: int, hidden_channels: int, image_channels: int = 1, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.input_to_state = MaskedConv2d(causal_conv_mask(
            channel_groups(in_channels, image_channels), _gate_groups(hidden_channels, image_channels),
            (1, kernel_size), "B"))
        # Rows above are entirely in the past, so the state-to-state convolution needs no mask.
        self.state_to_state = nn.Conv1d(hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2,
                                        bias=False)
        _init_forget_bias(self.input_to_state, hidden_channels)

    def forward(self, x: Tensor) -> Tensor:
        b, _, _, width = x.shape
        h = c = x.new_zeros(b, self.hidden_channels, width)
        rows = []
        # unbind, not indexing in the loop: one backward of an index op would write a full-size zero gradient.
        for gates_in in self.input_to_state(x).unbind(2):  # H x (B, 4h, W)
            h, c = lstm_cell(gates_in + self.state_to_state(h), c)
            rows.append(h)
        return torch.stack(rows, dim=2)  # H x (B, h, W) -> (B, h, H, W)

    def step(self, window: Tensor, state_gates: Tensor, c_above: Tensor) -> tuple[Tensor, Tensor]:
        """``(h, c)`` ``(B, h)`` at one pixel ``(r, col)``.

        ``window``: ``(B, F, 1, k)``, this layer's input on row ``r`` at columns ``col - k//2 .. col + k//2``
        (zeros outside the image; the columns right of ``col`` are masked and may hold anything);
        ``state_gates``: ``(B, 4h)``, :meth:`state_gates` of row ``r - 1`` at ``col``; ``c_above``: ``(B, h)``.
        """
        return lstm_cell(self.input_to_state.at(window) + state_gates, c_above)

    def state_gates(self, h_row: Tensor) -> Tensor:
        """State-to-state contribution of a finished row's hidden state: ``(B, h, W) -> (B, 4h, W)``."""
        return self.state_to_state(h_row)


def skew(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, C, H, W + H - 1)``: row ``r`` shifted right by ``r``, zeros elsewhere.

    Diagonals of the image become columns, so a column-by-column recurrence walks the diagonals.
    """
    b, c, h, w = x.shape
    # Pad each row to W + H, then read the flat buffer in rows one shorter: each row starts one later.
    flat = F.pad(x, (0, h)).reshape(b, c, h * (w + h))
    return flat[:, :, : h * (w + h - 1)].reshape(b, c, h, w + h - 1)


def unskew(x: Tensor, width: int) -> Tensor:
    """Inverse of :func:`skew`: ``(B, C, H, W + H - 1) -> (B, C, H, W)``."""
    b, c, h, skewed_width = x.shape
    flat = F.pad(x.reshape(b, c, h * skewed_width), (0, h))  # rows one longer: each row starts one later
    return flat.reshape(b, c, h, skewed_width + 1)[..., :width]


class DiagonalLSTM(nn.Module):
    """One direction of the Diagonal BiLSTM ([1] sec. 3.2): an LSTM over the columns of the skewed map.

    Input-to-state: a 1x1 mask-B convolution. State-to-state: a convolution of width 2 along the previous column
    of the skewed map, which in image coordinates is the state of the pixel above and of the pixel to the left:
    ``gates(r, col) = is(r, col) + K_0 h(r - 1, col) + K_1 h(r, col - 1)``; the cell state comes from the left.
    The states above and left of the image are zero.
    """

    def __init__(self, in_channels: int, hidden_channels: int, image_channels: int = 1) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.input_to_state = MaskedConv2d(causal_conv_mask(
            channel_groups(in_channels, image_channels), _gate_groups(hidden_channels, image_channels), (1, 1), "B"))
        self.state_to_state = nn.Conv1d(hidden_channels, 4 * hidden_channels, 2, bias=False)
        _init_forget_bias(self.input_to_state, hidden_channels)

    def forward(self, x: Tensor) -> Tensor:
        b, _, height, width = x.shape
        # Convolve, then skew: the padding gets zero gates, so the states left of the image stay zero (the
        # states right of it are not zero, but no state on the image depends on them).
        gates_in = skew(self.input_to_state(x)).unbind(-1)  # W + H - 1 columns (B, 4h, H); unbind: see RowLSTMLayer
        h = c = x.new_zeros(b, self.hidden_channels, height)
        columns = []
        for gates_column in gates_in:
            # Pad one row on top: output row r sees rows r - 1 and r of the previous column.
            h, c = lstm_cell(gates_column + self.state_to_state(F.pad(h, (1, 0))), c)
            columns.append(h)
        return unskew(torch.stack(columns, dim=-1), width)

    def step(self, x: Tensor, h_above: Tensor, h_before: Tensor, c_before: Tensor) -> tuple[Tensor, Tensor]:
        """``(h, c)`` ``(B, h)`` at one pixel from its input ``x`` ``(B, F)`` and the states ``(B, h)`` of the pixel
        above and of the previous pixel along the row (zeros outside the image)."""
        k = self.state_to_state.weight  # (4h, h, 2): tap 0 the row above, tap 1 the same row
        gates = self.input_to_state.at(x) + h_above @ k[:, :, 0].T + h_before @ k[:, :, 1].T
        return lstm_cell(gates, c_before)


class DiagonalBiLSTMLayer(nn.Module):
    """Diagonal BiLSTM ([1] sec. 3.2): a left-to-right and a right-to-left :class:`DiagonalLSTM`, summed.

    The right-to-left stream runs on the horizontally flipped input. Its state at ``(r, col)`` has seen the
    pixels to the right on row ``r``, so its output is shifted down one row before the sum; with it the layer's
    dependency field covers every earlier pixel but one: the last pixel of the row above, which no feature on
    that row sees (the input's mask A hides a pixel from its own position), is reached only through the input
    convolution, i.e. from pixels near the right edge. This follows [1]'s design.
    """

    def __init__(self, in_channels: int, hidden_channels: int, image_channels: int = 1) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.left_to_right = DiagonalLSTM(in_channels, hidden_channels, image_channels)
        self.right_to_left = DiagonalLSTM(in_channels, hidden_channels, image_channels)

    def forward(self, x: Tensor) -> Tensor:
        right = self.right_to_left(x.flip(-1)).flip(-1)
        return self.left_to_right(x) + F.pad(right, (0, 0, 1, 0))[:, :, :-1]  # right stream one row down


LAYER_TYPES = ("row", "diagonal")


class PixelRNNNet(nn.Module):
    """The PixelRNN of [1] Table 1: 7x7 mask-A convolution, LSTM layers with residual connections, output head.

    Features are ``2h`` wide between layers; each LSTM layer maps them to ``h`` and a 1x1 mask-B convolution back
    to ``2h``, added to its input (the residual connection of [1] sec. 3.4). The head is ReLU, 1x1 mask-B
    convolution, twice, giving ``outputs_per_subpixel`` logits for each colour.

    Args:
        image_channels: colours ``C``.
        outputs_per_subpixel: ``P``: 1 (a Bernoulli logit) for binary data, else the number of levels.
        hidden_channels: ``h``.
        num_layers: LSTM layers.
        layer: ``"row"`` (Row LSTM) or ``"diagonal"`` (Diagonal BiLSTM).
    """

    def __init__(self, image_channels: int, outputs_per_subpixel: int, hidden_channels: int, num_layers: int,
                 layer: str) -> None:
        super().__init__()
        if layer not in LAYER_TYPES:
            raise ValueError(f"unknown layer {layer!r}; expected one of {LAYER_TYPES}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.image_channels, self.outputs_per_subpixel = image_channels, outputs_per_subpixel
        c, width = image_channels, 2 * hidden_channels
        features, hidden = channel_groups(width, c), channel_groups(hidden_channels, c)
        self.input_conv = MaskedConv2d(causal_conv_mask(torch.arange(c), features, (7, 7), "A"))
        cls = RowLSTMLayer if layer == "row" else DiagonalBiLSTMLayer
        self.layers = nn.ModuleList(cls(width, hidden_channels, c) for _ in range(num_layers))
        self.residuals = nn.ModuleList(
            MaskedConv2d(causal_conv_mask(hidden, features, (1, 1), "B")) for _ in range(num_layers))
        outputs = torch.arange(c).repeat_interleave(outputs_per_subpixel)  # (C * P,) colour of each logit
        self.head = nn.Sequential(
            nn.ReLU(), MaskedConv2d(causal_conv_mask(features, features, (1, 1), "B")),
            nn.ReLU(), MaskedConv2d(causal_conv_mask(features, outputs, (1, 1), "B")))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` inputs -> logits ``(B, C, P, H, W)``."""
        f = self.input_conv(x)
        for layer, residual in zip(self.layers, self.residuals):
            f = f + residual(layer(f))
        return self.logits(f)

    def logits(self, f: Tensor) -> Tensor:
        """Head on features ``(B, 2h, H, W)`` -> logits ``(B, C, P, H, W)``."""
        out = self.head(f)
        b, _, h, w = out.shape
        return out.view(b, self.image_channels, self.outputs_per_subpixel, h, w)

    def logits_at(self, f: Tensor) -> Tensor:
        """Head on the features of one pixel ``(B, 2h)`` -> logits ``(B, C, P)`` (see :meth:`MaskedConv2d.at`)."""
        out = self.head[3].at(torch.relu(self.head[1].at(torch.relu(f))))
        return out.view(-1, self.image_channels, self.outputs_per_subpixel)
