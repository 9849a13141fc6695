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
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from lightning_gen.models.base import Estimate, LikelihoodModule, from_levels, to_levels
from lightning_gen.nn.masked import MaskedLinear


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
        self.outputs_per_pixel = 1 if self.num_levels == 2 else self.num_levels
        self.net = MaskedLinear(MaskedLinear.autoregressive_mask(self.num_dims, self.outputs_per_pixel))

    def _flatten(self, levels: Tensor) -> Tensor:
        # (B, C, H, W) -> (B, H, W, C) -> (B, D): raster order, channels innermost
        return levels.permute(0, 2, 3, 1).reshape(levels.shape[0], -1)

    def _unflatten(self, flat: Tensor) -> Tensor:
        c, h, w = self.image_shape
        return flat.reshape(-1, h, w, c).permute(0, 3, 1, 2)

    def _inputs(self, levels: Tensor) -> Tensor:
        return levels.float() / (self.num_levels - 1)

    def log_conditionals(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``log p(x_i | x_<i)`` of every sub-pixel of the uint8 images ``x``, ``(B, C, H, W)``: the factors of the
        likelihood in the model's ordering (:meth:`log_prob` is their sum)."""
        levels = self._flatten(to_levels(self.check_images(x), self.num_levels))  # (B, D)
        logits = self.net(self._inputs(levels))
        if self.num_levels == 2:
            return self._unflatten(-F.binary_cross_entropy_with_logits(logits, levels.float(), reduction="none"))
        logp = logits.view(-1, self.num_dims, self.num_levels).log_softmax(-1)  # (B, D, L)
        return self._unflatten(logp.gather(-1, levels.unsqueeze(-1)).squeeze(-1))

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
                levels[:, i] = torch.bernoulli(torch.sigmoid(logits[:, 0]), generator=generator).long()
            else:
                levels[:, i] = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
            inputs[:, i] = levels[:, i].float() / (self.num_levels - 1)
        return from_levels(self._unflatten(levels), self.num_levels)
