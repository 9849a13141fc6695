"""NADE: neural autoregressive distribution estimator over binary images, in a fixed pixel order.

[1] Larochelle & Murray 2011, *The Neural Autoregressive Distribution Estimator*, AISTATS (JMLR W&CP 15), no arXiv id.

``p(x) = prod_d p(x_d | x_<d)`` in raster order (rows, then columns, then channels), each conditional a one-hidden-
layer network whose input weights are shared between all conditionals::

    a_1 = c,   a_{d+1} = a_d + W_d x_d          (W_d: column d of the input weights, R^H)
    h_d = sigmoid(a_d)
    p(x_d = 1 | x_<d) = sigmoid(b_d + V_d . h_d)

The shared weights make all ``D`` hidden vectors cost ``O(D H)`` (one rank-one update per pixel) instead of
``O(D^2 H)`` for ``D`` separate networks. Equivalently ``a_d = c + (W * M) x`` with the strictly lower-triangular
mask ``M_dj = [j < d]``, one ``H``-vector per ``d``; the recursion computes exactly that without forming ``M``::

    in ->  x1 x2 x3
    a_1    .  .  .      (". " = not seen, "x" = seen)
    a_2    x  .  .
    a_3    x  x  .

The recursion runs as a loop over pixels inside one autograd function with a hand-written backward pass (the
reverse recursion of [1] section 3): on a CPU that is several times faster than a vectorised cumulative sum over a
``(B, D, H)`` tensor, which is memory-bound, and than autograd through the loop, which records ``4 D`` nodes.

Deliberate differences from [1]: Adam instead of plain stochastic gradient descent by default (configs choose);
no other. Binary data only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from lightning_gen.models.base import Estimate, LikelihoodModule
from lightning_gen.models.made import require_binary
from lightning_gen.nn.pixels import Bernoulli, from_levels, raster_flatten, raster_unflatten, to_levels


class _NADELogits(torch.autograd.Function):
    """``logits (B, D)`` of 0/1 ``inputs (B, D)`` given ``W, V (D, H)``, ``b (D,)``, ``c (H,)``; see the module."""

    @staticmethod
    def forward(ctx, inputs: Tensor, W: Tensor, V: Tensor, b: Tensor, c: Tensor) -> Tensor:
        batch, dims = inputs.shape
        a = c.expand(batch, -1).clone()  # (B, H): a_1 = c
        h = inputs.new_empty(dims, batch, c.shape[0])  # (D, B, H): h_d for every pixel
        logits = inputs.new_empty(dims, batch)
        for d in range(dims):
            torch.sigmoid(a, out=h[d])
            torch.mv(h[d], V[d], out=logits[d])
            a.addr_(inputs[:, d], W[d])  # a_{d+1} = a_d + x_d W_d
        ctx.save_for_backward(inputs, W, V, h)
        return (logits + b[:, None]).T  # (D, B) -> (B, D)

    @staticmethod
    def backward(ctx, grad_logits: Tensor):
        inputs, W, V, h = ctx.saved_tensors
        g = grad_logits.T.contiguous()  # (D, B)
        grad_W, grad_V = torch.empty_like(W), torch.empty_like(V)
        need_inputs = ctx.needs_input_grad[0]
        grad_inputs = torch.empty_like(inputs) if need_inputs else None
        later = torch.zeros_like(h[0])  # (B, H): dL/da_{d+1}, the sum of dL/da_d' over d' > d
        for d in reversed(range(inputs.shape[1])):
            hd = h[d]
            torch.mv(hd.T, g[d], out=grad_V[d])
            torch.mv(later.T, inputs[:, d], out=grad_W[d])
            if need_inputs:
                grad_inputs[:, d] = later @ W[d]
            later.addcmul_(torch.outer(g[d], V[d]), hd - hd * hd)  # dL/da_d = g_d V_d h_d (1 - h_d)
        return grad_inputs, grad_W, grad_V, g.sum(1), later.sum(0)


class NADE(LikelihoodModule):
    """NADE with ``hidden_size`` sigmoid hidden units and a fixed raster ordering, for binary images.

    Args:
        hidden_size: ``H``, the hidden units shared by all conditionals ([1] uses 500 on binarized MNIST).
        Other args: see :class:`~lightning_gen.models.base.GenerativeModule`.
    """

    family: ClassVar[str] = "baseline"

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 8, 8),
        num_levels: int = 2,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        hidden_size: int = 500,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        require_binary("NADE", self.num_levels)
        if hidden_size <= 0:
            raise ValueError(f"hidden_size must be positive, got {hidden_size}")
        self.hidden_size = int(hidden_size)
        self.head = Bernoulli()
        d, h = self.num_dims, self.hidden_size
        # nn.Linear's initialisation: uniform(+-1/sqrt(fan_in)); W_d is the input weight of pixel d, V_d its output.
        self.W = nn.Parameter(torch.empty(d, h).uniform_(-d ** -0.5, d ** -0.5))
        self.V = nn.Parameter(torch.empty(d, h).uniform_(-h ** -0.5, h ** -0.5))
        self.b = nn.Parameter(torch.zeros(d))
        self.c = nn.Parameter(torch.zeros(h))

    def logits(self, inputs: Tensor) -> Tensor:
        """Bernoulli logits ``(B, D)`` of 0/1 float ``inputs`` ``(B, D)`` in raster order: logit d sees inputs < d."""
        return _NADELogits.apply(inputs, self.W, self.V, self.b, self.c)

    def log_conditionals(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """``log p(x_i | x_<i)`` of every sub-pixel of the uint8 images ``x``, ``(B, C, H, W)``: the factors of the
        likelihood in the model's ordering (:meth:`log_prob` is their sum)."""
        inputs = raster_flatten(to_levels(self.check_images(x), self.num_levels)).to(self.W.dtype)  # (B, D)
        terms = self.head.log_prob(self.logits(inputs).unsqueeze(-1), inputs)  # (B, D)
        return raster_unflatten(terms, self.image_shape)

    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        return self.log_conditionals(x, labels).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        self.check_labels(n, labels)
        a = self.c.expand(n, -1).clone()  # (n, H)
        flat = torch.zeros(n, self.num_dims, device=self.device, dtype=self.W.dtype)
        for d in range(self.num_dims):
            logit = torch.sigmoid(a) @ self.V[d] + self.b[d]  # (n,)
            u = torch.rand(n, generator=generator, device=self.device, dtype=logit.dtype)
            flat[:, d] = self.head.sample(logit.unsqueeze(-1), u)
            a.addr_(flat[:, d], self.W[d])
        return from_levels(raster_unflatten(flat.long(), self.image_shape), self.num_levels)
