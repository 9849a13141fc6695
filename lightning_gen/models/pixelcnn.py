"""PixelCNN and Gated PixelCNN: convolutional autoregressive models over sub-pixels, with fast cached sampling.

[1] arXiv 1601.06759 (van den Oord, Kalchbrenner, Kavukcuoglu 2016): PixelCNN, masked convolutions.
[2] arXiv 1606.05328 (van den Oord et al. 2016): Gated PixelCNN, vertical and horizontal stacks, class conditioning.
[3] arXiv 1704.06001 (Ramachandran et al. 2017): fast generation by caching.

``p(x) = prod_i p(x_i | x_<i)`` over sub-pixels in raster order (rows, columns, then R, G, B within a pixel).
Each conditional is a ``num_levels``-way softmax (256 for 8-bit data), or a Bernoulli with one logit for binary
data (``num_levels=2``), as in [1]. Inputs enter the network as ``2 * level / (num_levels - 1) - 1`` in [-1, 1].

Sampling. ``sample(n, naive=True)`` reruns the whole network on the full image for each sub-pixel (``C * H * W``
full passes). The default evaluates each layer once per position from cached inputs (``lightning_gen.nn.pixelcnn``:
:class:`~lightning_gen.nn.pixelcnn.ConvCache`), which computes the same function at a fraction of the cost.
Both samplers run in float64 on a copy of the network and draw the same random numbers in the same order (one
``torch.rand`` of shape ``(n,)`` per sub-pixel, turned into a level by the inverse CDF of
:mod:`lightning_gen.nn.pixels`), so they return the same images for the same generator state: the two paths' logits
agree to ~1e-15, and a draw could only differ if a uniform fell within that distance of a CDF step.

Where this differs from the papers: conditioning is on class labels only (one learned embedding per layer added to
both stacks' gate pre-activations); Gated PixelCNN has no skip connections to the output; the output layers are
the two ReLU + 1x1 layers of [1] for both models.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import ClassVar

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from lightning_gen.models.base import Estimate, LikelihoodModule
from lightning_gen.nn.pixelcnn import GatedPixelCNNNet, PixelCNNNet
from lightning_gen.nn.pixels import PixelHead, default_head, from_levels, to_levels

#: The samplers' precision; see the module docstring.
SAMPLE_DTYPE = torch.float64


class _ConvAutoregressive(LikelihoodModule):
    """Shared likelihood and samplers of the PixelCNN family; subclasses build ``self.net``."""

    family: ClassVar[str] = "autoregressive"
    net: PixelCNNNet | GatedPixelCNNNet

    @property
    def head(self) -> PixelHead:
        return default_head(self.num_levels)

    @property
    def outputs_per_subpixel(self) -> int:
        return self.head.params_per_subpixel

    def _inputs(self, levels: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        return levels.to(dtype or self.dtype) * (2.0 / (self.num_levels - 1)) - 1.0

    def _net_labels(self, labels: Tensor | None, n: int) -> Tensor | None:
        if not self.conditional:
            return None
        if labels is None:
            raise ValueError(f"{type(self).__name__} is class-conditional: pass labels of shape ({n},)")
        return self.check_labels(n, labels)

    def _run(self, net, x: Tensor, labels: Tensor | None) -> Tensor:
        return net(x, labels) if self.conditional else net(x)

    def logits(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits ``(N, C, P, H, W)`` of every sub-pixel of the uint8 images ``x`` given the previous ones."""
        levels = to_levels(self.check_images(x), self.num_levels)
        return self._run(self.net, self._inputs(levels), self._net_labels(labels, x.shape[0]))

    def log_conditionals(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``log p(x_i | x_<i)`` of every sub-pixel of the uint8 images ``x``, ``(B, C, H, W)``: the factors of the
        likelihood in the model's ordering (:meth:`log_prob` is their sum)."""
        levels = to_levels(self.check_images(x), self.num_levels)  # (B, C, H, W)
        logits = self._run(self.net, self._inputs(levels), self._net_labels(labels, x.shape[0]))  # (B, C, P, H, W)
        return self.head.log_prob(logits, levels, dim=2)

    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        return self.log_conditionals(x, labels).flatten(1).sum(1)

    def _draw(self, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        """One level per row of ``logits`` ``(n, P)``, by the head's inverse CDF from one uniform per row."""
        u = torch.rand(logits.shape[0], generator=generator, device=self.device, dtype=logits.dtype)
        return self.head.sample(logits, u)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None,
               naive: bool = False) -> Tensor:
        """Draw ``n`` images (uint8 ``(n, C, H, W)``), one sub-pixel at a time.

        ``naive=True`` reruns the network on the full image for every sub-pixel; the default evaluates each layer
        once per position from cached inputs. Both give the same images for the same ``generator`` state. A
        class-conditional model draws ``labels`` uniformly (from ``generator``) when none are given.
        """
        labels = self.check_labels(n, labels)
        if self.conditional and labels is None:
            labels = torch.randint(self.num_classes, (n,), generator=generator, device=self.device)
        with torch.autocast(self.device.type, enabled=False):  # float64 throughout, even inside a bf16/fp16 run
            return self._sample(n, generator, labels, naive)

    def _sample(self, n: int, generator: torch.Generator | None, labels: Tensor | None, naive: bool) -> Tensor:
        net = copy.deepcopy(self.net).to(SAMPLE_DTYPE).eval()
        c, h, w = self.image_shape
        levels = torch.zeros(n, c, h, w, dtype=torch.long, device=self.device)
        x = torch.zeros(n, c, h, w, dtype=SAMPLE_DTYPE, device=self.device)  # unknown sub-pixels stay 0
        fast = None if naive else net.sampler(n, h, w, labels, self.device, SAMPLE_DTYPE)
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    if fast is None:
                        logits = self._run(net, x, labels)[:, k, :, i, j]  # (n, P)
                    else:
                        logits = fast.logits(x[:, :, i : i + 1, j : j + 1], i, j)[:, k]
                    levels[:, k, i, j] = self._draw(logits, generator)
                    x[:, k, i, j] = self._inputs(levels[:, k, i, j], SAMPLE_DTYPE)
                if fast is not None:
                    fast.end_pixel(x[:, :, i : i + 1, j : j + 1], i, j)
            if fast is not None:
                fast.end_row(x[:, :, i : i + 1], i)
        return from_levels(levels, self.num_levels)


class PixelCNN(_ConvAutoregressive):
    """PixelCNN [1]: 7x7 mask-A convolution, ``residual_blocks`` residual blocks (1x1, ``kernel_size`` mask B,
    1x1; ``2 * hidden_channels`` maps between blocks), ReLU + 1x1 (``head_channels``), ReLU + 1x1 to the logits.

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`
            (PixelCNN is unconditional; ``num_classes`` is ignored).
        hidden_channels: ``h`` of [1]: the residual stream has ``2h`` maps, the blocks' inner layers ``h``;
            at least the number of image channels (the maps are split into colour groups).
        residual_blocks: number of residual blocks.
        head_channels: maps of the hidden output layer.
        input_kernel_size: size of the first, mask-A convolution (7 in [1]).
        kernel_size: size of the blocks' mask-B convolutions (3 in [1]).
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 2,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        hidden_channels: int = 32,
        residual_blocks: int = 7,
        head_channels: int = 64,
        input_kernel_size: int = 7,
        kernel_size: int = 3,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        self.net = PixelCNNNet(self.image_shape[0], self.outputs_per_subpixel, hidden=hidden_channels,
                               blocks=residual_blocks, head=head_channels, input_kernel_size=input_kernel_size,
                               kernel_size=kernel_size)


class GatedPixelCNN(_ConvAutoregressive):
    """Gated PixelCNN [2]: ``layers`` gated layers with vertical and horizontal stacks (no blind spot), then
    ReLU + 1x1 (``head_channels``), ReLU + 1x1 to the logits; optionally class-conditional.

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`.
        channels: feature maps per stack (``p`` of [2]); at least the number of image channels (the maps are split
            into colour groups).
        layers: number of gated layers.
        head_channels: maps of the hidden output layer.
        input_kernel_size: kernel size of the first layer (its vertical kernel is ``(k // 2 + 1) x k``).
        kernel_size: kernel size of the other layers.
        conditional: condition on the data's class labels (needs ``num_classes > 0``): a learned embedding of the
            label is added to the gates of every layer, and ``sample(n, labels=...)`` chooses the classes.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 2,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        channels: int = 64,
        layers: int = 7,
        head_channels: int = 64,
        input_kernel_size: int = 7,
        kernel_size: int = 3,
        conditional: bool = False,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        if conditional and self.num_classes < 1:
            raise ValueError("conditional=True needs labelled data (num_classes > 0); this data has no classes")
        self.conditional = bool(conditional)
        self.net = GatedPixelCNNNet(self.image_shape[0], self.outputs_per_subpixel, channels=channels, layers=layers,
                                    head=head_channels, input_kernel_size=input_kernel_size, kernel_size=kernel_size,
                                    num_classes=self.num_classes if conditional else 0)
