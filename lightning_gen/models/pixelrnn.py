"""PixelRNN: Row LSTM and Diagonal BiLSTM autoregressive models of binary or multi-level images.

[1] arXiv 1601.06759 (van den Oord, Kalchbrenner, Kavukcuoglu 2016, *Pixel Recurrent Neural Networks*).

``p(x) = prod_i p(x_i | x_<i)`` over sub-pixels in raster order, colours innermost (R, G, B). The net
(:class:`~lightning_gen.nn.pixelrnn.PixelRNNNet`) is [1] Table 1: 7x7 mask-A convolution, LSTM layers of ``h``
units with residual connections, two ReLU + 1x1 mask-B convolutions; per sub-pixel a Bernoulli logit for binary
data (``num_levels=2``) or a ``num_levels``-way softmax. Inputs enter as ``level / (num_levels - 1)``.

Sampling (``sample(n, naive=False)``) carries the recurrent state forward and computes each new pixel from
cached neighbours: O(layers) work per sub-pixel instead of a pass over the whole image.

- Row LSTM: a pixel's state needs its own column of the row above (``c``, and the state-to-state gates,
  computed once per finished row) and its input on this row at ``col - 1`` and ``col`` (cached as the row
  fills). [1]'s row-at-a-time scheme, restricted to the one column that changed.
- Diagonal BiLSTM: the left-to-right stream's state at ``(r, col)`` needs only the states above and to the
  left, so it advances pixel by pixel, diagonal by diagonal. The right-to-left stream enters a row shifted down
  by one, so it depends on finished rows only: it is run along each row, right to left, once the row is done.

``naive=True`` reruns the whole net on the whole image for each sub-pixel. Both paths draw from the same
uniforms (one per sub-pixel, drawn up front) by the inverse CDF of :mod:`lightning_gen.nn.pixels`, in float64, so
with the same generator they return identical images: their float64 logits differ by ~1e-15, far below where a draw
could flip.

Deliberate differences from [1]: see :mod:`lightning_gen.nn.pixelrnn` (the Diagonal LSTM's states left of the
image are zero, forget-gate bias 1). No class conditioning.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import ClassVar

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from lightning_gen.models.base import Estimate, LikelihoodModule
from lightning_gen.nn.pixelrnn import PixelRNNNet
from lightning_gen.nn.pixels import default_head, from_levels, to_levels


class _PixelRNN(LikelihoodModule):
    """Shared likelihood and sampling; subclasses choose the LSTM layer."""

    family: ClassVar[str] = "autoregressive"
    layer_type: str = ""

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 2,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        hidden_channels: int = 16,
        num_layers: int = 7,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        if hidden_channels < self.image_shape[0]:
            raise ValueError(f"hidden_channels must be at least the number of colours ({self.image_shape[0]}), "
                             f"got {hidden_channels}")
        self.head = default_head(self.num_levels)
        self.net = PixelRNNNet(self.image_shape[0], self.head.params_per_subpixel, hidden_channels, num_layers,
                               self.layer_type)

    def _inputs(self, levels: Tensor, dtype: torch.dtype) -> Tensor:
        return levels.to(dtype) / (self.num_levels - 1)

    def log_conditionals(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``log p(x_i | x_<i)`` of every sub-pixel of the uint8 images ``x``, ``(B, C, H, W)``: the factors of the
        likelihood in the model's ordering (:meth:`log_prob` is their sum)."""
        levels = to_levels(self.check_images(x), self.num_levels)  # (B, C, H, W)
        logits = self.net(self._inputs(levels, self.dtype))  # (B, C, P, H, W)
        return self.head.log_prob(logits, levels, dim=2)

    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        return self.log_conditionals(x, labels).sum((1, 2, 3))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               naive: bool = False) -> Tensor:
        """Draw ``n`` images, uint8 ``(n, C, H, W)``; ``naive=True`` reruns the whole net per sub-pixel (slow,
        same images for the same generator state)."""
        self.check_labels(n, labels)
        net = copy.deepcopy(self.net).to(torch.float64).eval()
        c, h, w = self.image_shape
        # One uniform per sub-pixel, in raster order, drawn before anything else: both paths read the same ones.
        u = torch.rand(n, h, w, c, generator=generator, device=self.device, dtype=torch.float64)
        levels = torch.zeros(n, c, h, w, dtype=torch.long, device=self.device)
        if naive:
            self._sample_naive(net, levels, u)
        else:
            self._sample_fast(net, levels, u)
        return from_levels(levels, self.num_levels)

    def _sample_naive(self, net: PixelRNNNet, levels: Tensor, u: Tensor) -> None:
        _, c, height, width = levels.shape
        x = self._zeros(*levels.shape)
        for i in range(height):
            for j in range(width):
                for ch in range(c):
                    levels[:, ch, i, j] = self.head.sample(net(x)[:, ch, :, i, j], u[:, i, j, ch])
                    x[:, ch, i, j] = levels[:, ch, i, j] / (self.num_levels - 1)

    def _sample_fast(self, net: PixelRNNNet, levels: Tensor, u: Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no fast sampler")

    def _zeros(self, *shape: int) -> Tensor:
        return torch.zeros(*shape, dtype=torch.float64, device=self.device)

    def _input_features(self, net: PixelRNNNet, x: Tensor, i: int, j: int) -> Tensor:
        """The input convolution at pixel ``(i, j)`` of ``x``, which is zero-padded by the kernel's half-width."""
        k = net.input_conv.kernel_size[0]
        return net.input_conv.at(x[:, :, i : i + k, j : j + k])  # (n, 2h)

    def _padded_inputs(self, net: PixelRNNNet, levels: Tensor) -> Tensor:
        p = net.input_conv.kernel_size[0] // 2
        n, c, height, width = levels.shape
        return self._zeros(n, c, height + 2 * p, width + 2 * p)

    def _set_level(self, levels: Tensor, x: Tensor, pad: int, ch: int, i: int, j: int, level: Tensor) -> None:
        levels[:, ch, i, j] = level
        x[:, ch, i + pad, j + pad] = level / (self.num_levels - 1)


class RowLSTM(_PixelRNN):
    """PixelRNN with Row LSTM layers ([1] sec. 3.1): a triangular dependency field; all pixels of a row at once.

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`.
        hidden_channels: ``h``, the LSTM state size (features between layers are ``2h``).
        num_layers: Row LSTM layers.
    """

    layer_type = "row"

    def _sample_fast(self, net: PixelRNNNet, levels: Tensor, u: Tensor) -> None:
        n, c, height, width = levels.shape
        pad = net.input_conv.kernel_size[0] // 2
        x = self._padded_inputs(net, levels)
        hidden = net.layers[0].hidden_channels
        k = net.layers[0].input_to_state.kernel_size[1]
        num_layers = len(net.layers)
        # Per layer: its input on the current row (padded by k // 2 on both sides), the state-to-state gates and
        # cell state of the row above, and the states of the current row as they are computed.
        row_inputs = [self._zeros(n, 2 * hidden, 1, width + k - 1) for _ in range(num_layers)]
        gates_above = [layer.state_gates(self._zeros(n, hidden, width)) for layer in net.layers]
        c_above = [self._zeros(n, hidden, width) for _ in range(num_layers)]
        h_row = [self._zeros(n, hidden, width) for _ in range(num_layers)]
        c_row = [self._zeros(n, hidden, width) for _ in range(num_layers)]
        for i in range(height):
            for j in range(width):
                # Once per colour: the pixel's features depend on its earlier colours. After the last colour
                # they are final (no feature of a pixel sees its last colour), so the caches hold them.
                for ch in range(c):
                    f = self._input_features(net, x, i, j)
                    for idx, (layer, residual) in enumerate(zip(net.layers, net.residuals)):
                        row_inputs[idx][:, :, 0, j + k // 2] = f
                        h, c_new = layer.step(row_inputs[idx][..., j : j + k], gates_above[idx][..., j], c_above[idx][..., j])
                        h_row[idx][..., j], c_row[idx][..., j] = h, c_new
                        f = f + residual.at(h)
                    level = self.head.sample(net.logits_at(f)[:, ch], u[:, i, j, ch])
                    self._set_level(levels, x, pad, ch, i, j, level)
            for idx, layer in enumerate(net.layers):
                gates_above[idx] = layer.state_gates(h_row[idx])
                c_above[idx], c_row[idx] = c_row[idx], c_above[idx]  # the old buffer is overwritten column by column


class DiagonalBiLSTM(_PixelRNN):
    """PixelRNN with Diagonal BiLSTM layers ([1] sec. 3.2): the dependency field holds every earlier pixel (but
    one, see :class:`~lightning_gen.nn.pixelrnn.DiagonalBiLSTMLayer`).

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`.
        hidden_channels: ``h``, the LSTM state size of each direction (features between layers are ``2h``).
        num_layers: Diagonal BiLSTM layers.
    """

    layer_type = "diagonal"

    def _sample_fast(self, net: PixelRNNNet, levels: Tensor, u: Tensor) -> None:
        n, c, height, width = levels.shape
        pad = net.input_conv.kernel_size[0] // 2
        x = self._padded_inputs(net, levels)
        hidden = net.layers[0].hidden_channels
        num_layers = len(net.layers)
        none = self._zeros(n, hidden)  # the state outside the image
        # Per layer: its input on the current row (for the right-to-left pass at the row's end); the
        # left-to-right states of the row above and of the current row; the right-to-left hidden state of the
        # row above, which shifted down one row is the layer's right stream on the current row.
        row_inputs = [self._zeros(n, 2 * hidden, width) for _ in range(num_layers)]
        h_above = [self._zeros(n, hidden, width) for _ in range(num_layers)]
        h_row = [self._zeros(n, hidden, width) for _ in range(num_layers)]
        c_row = [self._zeros(n, hidden, width) for _ in range(num_layers)]
        right_above = [self._zeros(n, hidden, width) for _ in range(num_layers)]
        for i in range(height):
            for j in range(width):
                for ch in range(c):  # see RowLSTM._sample_fast: after the last colour the caches are final
                    f = self._input_features(net, x, i, j)
                    for idx, (layer, residual) in enumerate(zip(net.layers, net.residuals)):
                        row_inputs[idx][..., j] = f
                        h_left, c_left = (h_row[idx][..., j - 1], c_row[idx][..., j - 1]) if j else (none, none)
                        h, c_new = layer.left_to_right.step(f, h_above[idx][..., j], h_left, c_left)
                        h_row[idx][..., j], c_row[idx][..., j] = h, c_new
                        f = f + residual.at(h + right_above[idx][..., j])
                    level = self.head.sample(net.logits_at(f)[:, ch], u[:, i, j, ch])
                    self._set_level(levels, x, pad, ch, i, j, level)
            for idx, layer in enumerate(net.layers):
                right = self._zeros(n, hidden, width)
                h, c_right = none, none
                for j in reversed(range(width)):
                    h, c_right = layer.right_to_left.step(row_inputs[idx][..., j], right_above[idx][..., j], h, c_right)
                    right[..., j] = h
                right_above[idx] = right
                h_above[idx], h_row[idx] = h_row[idx], h_above[idx]  # the old buffer is overwritten column by column
