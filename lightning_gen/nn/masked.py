"""Masked layers for autoregressive models. Masks are buffers applied functionally, never written into weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedLinear(nn.Linear):
    """``y = x @ (W * M).T + b`` with a fixed 0/1 mask ``M`` of the weight's shape ``(out, in)``.

    For a fully visible belief network over D inputs in a fixed order, output block ``i`` may only see inputs
    ``j < i``: with ``L`` outputs per input (one logit per level)::

        in ->  0 1 2
        out 0  . . .      (". " = masked, "x" = connected)
        out 1  x . .
        out 2  x x .
    """

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    @staticmethod
    def autoregressive_mask(num_inputs: int, outputs_per_input: int = 1) -> Tensor:
        """Mask of shape ``(num_inputs * outputs_per_input, num_inputs)``: output block i sees inputs 0..i-1."""
        block = torch.arange(num_inputs).repeat_interleave(outputs_per_input)  # output row -> its input index
        return (torch.arange(num_inputs)[None, :] < block[:, None]).float()
