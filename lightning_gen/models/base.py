"""The interface every lightning_gen model honours.

Images travel between data, models, metrics, logging and the dashboard as ``torch.uint8`` tensors of shape
``(N, C, H, W)`` with values in 0..255, whatever the data's number of grey levels: binary images are 0/255,
8-bit images use every value. A model that works with discrete levels converts with :func:`to_levels` and
:func:`from_levels`; the data module tells it how many levels there are (``num_levels``).

A model with a likelihood implements :meth:`GenerativeModule.log_prob`: the log-probability in nats of each
*discrete* image under the model's ``num_levels``-level pixel distribution. Bits per dimension are
``-log_prob / (C * H * W * ln 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from lightning_gen import compat


class NoLikelihoodError(TypeError):
    """Raised when a likelihood is asked of a model that does not define one (a GAN, an autoencoder)."""


def to_levels(x: Tensor, num_levels: int) -> Tensor:
    """uint8 images in 0..255 -> integer level indices in 0..num_levels-1 (int64)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images in 0..255, got dtype {x.dtype}; convert with (x * 255).round().to(torch.uint8)")
    if num_levels == 256:
        return x.long()
    # Round to the nearest level so that 0/255 binary images map to exactly 0/1: floor((x (L-1) + 127) / 255).
    # Computed in float32, 3x faster than int64 division on a CPU and exact: the numerators are integers below
    # 2^16, and a quotient that is not an integer lies at least 1/255 from one, far beyond float32 rounding.
    return (x.float() * (num_levels - 1) + 127).div_(255).floor_().long()


def from_levels(levels: Tensor, num_levels: int) -> Tensor:
    """Integer level indices in 0..num_levels-1 -> uint8 images in 0..255."""
    if num_levels == 256:
        return levels.to(torch.uint8)
    return torch.div(levels.long() * 255 + (num_levels - 1) // 2, num_levels - 1, rounding_mode="floor").to(torch.uint8)


def bits_per_dim(nll_nats: Tensor, num_dims: int) -> Tensor:
    """Negative log-likelihood in nats per image -> bits per dimension."""
    return nll_nats / (num_dims * math.log(2.0))


class GenerativeModule(L.LightningModule):
    """Base LightningModule of every model.

    The data shape arguments are filled in by the CLI from the data module (``image_shape``, ``num_levels``,
    ``num_classes`` are linked), so configs name only the model's own options.

    Args:
        image_shape: ``(C, H, W)`` of the images.
        num_levels: grey levels per sub-pixel of the data (2 for binary data, 256 for 8-bit).
        num_classes: number of class labels the data carries (0 if none); conditional models use it.
        optimizer: a callable that builds the optimizer from the parameters (``OptimizerCallable``).
    """

    #: The leaderboard family every concrete model declares ("autoregressive", "latent", "gan", "baseline", ...);
    #: deliberately no default, so the benchmark refuses a model that does not say.
    family: ClassVar[str]
    #: Whether :meth:`log_prob` is defined. Subclasses with a likelihood set this to True.
    has_likelihood: bool = False
    #: Whether the model conditions on class labels. ``num_classes`` comes from the data and says how many
    #: classes there are; a conditional model sets this to True (usually from a ``conditional`` option).
    conditional: bool = False

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 256,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3 or any(int(s) <= 0 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {tuple(image_shape)}")
        if not 2 <= num_levels <= 256:
            raise ValueError(f"num_levels must be in 2..256, got {num_levels}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_levels = int(num_levels)
        self.num_classes = int(num_classes)
        self.optimizer = optimizer

    # ---- the interface -------------------------------------------------------------------------------------
    @property
    def num_dims(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """Draw ``n`` images: ``torch.uint8`` of shape ``(n, C, H, W)`` in 0..255, on the model's device.

        ``generator`` (a ``torch.Generator`` on the model's device) makes the draw reproducible; ``labels``
        (``(n,)`` int64) conditions a class-conditional model.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement sample(n)")

    def log_prob(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Log-likelihood in nats of each uint8 image in ``x`` ``(N, C, H, W)``: a tensor of shape ``(N,)``."""
        raise NoLikelihoodError(f"{type(self).__name__} defines no likelihood; NLL and bits/dim are not available for it")

    # ---- shared helpers ------------------------------------------------------------------------------------
    def check_labels(self, n: int, labels: Tensor | None) -> Tensor | None:
        """Validate the ``labels`` argument of :meth:`sample` and put it on the model's device."""
        if labels is None:
            return None
        if not self.conditional:
            raise ValueError(f"{type(self).__name__} is not class-conditional; call sample(n) without labels")
        labels = torch.as_tensor(labels, device=self.device).long()
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1}")
        return labels

    def check_images(self, x: Tensor) -> Tensor:
        """Reject anything but uint8 ``(N, C, H, W)`` images of this model's shape, with a message saying why."""
        if x.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images in 0..255, got dtype {x.dtype}")
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")
        return x

    def predict_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        """``lightning_gen predict``: per-image log-likelihood (nats) of the data where the model has one, else
        as many fresh samples as the batch holds (seeded by the batch index, so reruns agree)."""
        x, y = batch
        if self.has_likelihood:
            return {"log_prob": self.log_prob(x, y if self.conditional else None)}
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        return {"samples": self.sample(x.shape[0], generator=generator,
                                       labels=y if self.conditional else None)}

    def logs_this_step(self) -> bool:
        """Whether the logger writes this training batch's step metrics.

        ``self.log`` costs a fraction of a millisecond per call, a fifth of a small model's step, and only every
        ``log_every_n_steps``-th batch's step values are ever written; training steps log only then (validation and
        test epochs carry the epoch-level figures). False outside a Trainer, where ``self.log`` does nothing.
        """
        trainer = compat.attached_trainer(self)
        return trainer is not None and compat.logs_this_step(trainer)

    def configure_optimizers(self):
        return self.optimizer(self.parameters())


class LikelihoodModule(GenerativeModule):
    """A model trained by maximum likelihood: the loss is the mean NLL in nats per dimension.

    Subclasses implement :meth:`log_prob` (and :meth:`sample`); this class supplies the training, validation and
    test steps and logs ``{stage}/nll_nats`` (nats per image) and ``{stage}/nll_bpd`` (bits per dimension).
    """

    has_likelihood = True

    def _nll_step(self, batch, stage: str) -> Tensor:
        x, y = batch
        labels = y if self.conditional else None
        nll = -self.log_prob(x, labels)  # (B,) nats per image
        mean_nll = nll.mean()
        if stage == "train":
            if self.logs_this_step():
                self.log("train/nll_nats", mean_nll.detach(), batch_size=x.shape[0])
                self.log("train/nll_bpd", bits_per_dim(mean_nll.detach(), self.num_dims), prog_bar=True,
                         batch_size=x.shape[0])
        else:
            self.log(f"{stage}/nll_nats", mean_nll, batch_size=x.shape[0], sync_dist=True)
            self.log(f"{stage}/nll_bpd", bits_per_dim(mean_nll, self.num_dims), prog_bar=True,
                     batch_size=x.shape[0], sync_dist=True)
        # Per-dimension loss keeps the learning rate independent of the image size.
        return mean_nll / self.num_dims

    def training_step(self, batch, batch_idx):
        return self._nll_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._nll_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._nll_step(batch, "test")
