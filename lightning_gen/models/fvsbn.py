"""Fully visible belief network: the simplest autoregressive model over pixels, the reference model of the suite.

[1] Frey 1998, *Graphical Models for Machine Learning and Digital Communication* (FVSBN, logistic conditionals);
    Neal 1992, *Connectionist learning of belief networks*.

``p(x) = prod_i p(x_i | x_<i)`` in raster order (rows, then columns, then channels), each conditional a linear
function of the previous pixels through one masked linear layer:

- binary data (``num_levels=2``): ``p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j<i} W_ij x_j)`` (the FVSBN);
- ``L``-level data: an ``L``-way softmax per pixel, ``logits_i = b_i + sum_{j<i} W_ij x_j`` with ``W_ij`` in
  R^L. This has ``D^2 L`` weights: 1.0M for 8x8 digits but 157M for 28x28 8-bit MNIST, so for 8-bit data of that
  size use the PixelCNN family instead.

Inputs enter as ``level / (L - 1)`` in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from lightning_gen.models.base import Estimate, LikelihoodModule
from lightning_gen.nn.masked import MaskedLinear
from lightning_gen.nn.pixels import default_head, from_levels, raster_flatten, raster_unflatten, to_levels


class FVSBN(LikelihoodModule):
    """Logistic (binary) or softmax (multi-level) fully visible belief network.

    Args: see :class:`~lightning_gen.models.base.GenerativeModule`; the model has no options of its own.
    """

    family: ClassVar[str] = "baseline"

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 8, 8),
        num_levels: int = 2,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        self.head = default_head(self.num_levels)
        self.outputs_per_pixel = self.head.params_per_subpixel
        self.net = MaskedLinear(MaskedLinear.autoregressive_mask(self.num_dims, self.outputs_per_pixel))

    def _inputs(self, levels: Tensor) -> Tensor:
        return levels.float() / (self.num_levels - 1)

    def log_conditionals(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``log p(x_i | x_<i)`` of every sub-pixel of the uint8 images ``x``, ``(B, C, H, W)``: the factors of the
        likelihood in the model's ordering (:meth:`log_prob` is their sum)."""
        levels = raster_flatten(to_levels(self.check_images(x), self.num_levels))  # (B, D)
        logits = self.net(self._inputs(levels)).view(-1, self.num_dims, self.outputs_per_pixel)  # (B, D, P)
        return raster_unflatten(self.head.log_prob(logits, levels), self.image_shape)

    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        return self.log_conditionals(x, labels).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        self.check_labels(n, labels)
        weight = self.net.weight * self.net.mask  # (D * P, D), P outputs per pixel
        levels = torch.zeros(n, self.num_dims, dtype=torch.long, device=self.device)
        inputs = torch.zeros(n, self.num_dims, device=self.device)
        p = self.outputs_per_pixel
        for i in range(self.num_dims):
            # Only the block of output rows for pixel i is needed: O(D) work per pixel instead of O(D^2).
            logits = inputs @ weight[i * p : (i + 1) * p].T + self.net.bias[i * p : (i + 1) * p]  # (n, P)
            if self.num_levels == 2:
                u = torch.rand(n, generator=generator, device=self.device, dtype=logits.dtype)
                levels[:, i] = self.head.sample(logits, u)
            else:  # torch.multinomial (an exponential race), not the head's inverse CDF: keeps the published samples
                levels[:, i] = torch.multinomial(self.head.probs(logits), 1, generator=generator).squeeze(1)
            inputs[:, i] = levels[:, i].float() / (self.num_levels - 1)
        return from_levels(raster_unflatten(levels, self.image_shape), self.num_levels)
