"""The latent family's shared parts, and the deterministic autoencoder (pictures of the latent space:
:mod:`lightning_gen.pictures`; the VAE: :mod:`lightning_gen.models.vae`).

The networks are those of :mod:`lightning_gen.nn.conv` (``arch="conv"``, the default) or the MLPs of [1]
(``arch="mlp"``).

[1] arXiv 1509.00519 (Burda, Grosse & Salakhutdinov 2015: the 784-200-200-50 networks of ``arch="mlp"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from lightning_gen.models.base import GenerativeModule
from lightning_gen.nn.conv import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from lightning_gen.nn.pixels import from_levels, to_levels

ARCHS = ("conv", "mlp")


class _LatentModel(GenerativeModule):
    """Shared parts of the autoencoder and the VAE: the networks, input scaling, mean images, the latent picture
    helpers (:meth:`encode`, :meth:`decode_mean`, :meth:`prior_transform`)."""

    family: ClassVar[str] = "latent"
    has_representation = True

    def _build(self, encoder_outputs: int, decoder_channels: int, *, z_dim: int, arch: str, channels: int,
               blocks: int, hidden_sizes: Sequence[int]) -> None:
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
        if z_dim < 1:
            raise ValueError(f"z_dim must be positive, got {z_dim}")
        self.z_dim = int(z_dim)
        if arch == "conv":
            self.encoder = ConvEncoder(self.image_shape, encoder_outputs, channels=channels, blocks=blocks)
            self.decoder = ConvDecoder(z_dim, self.image_shape, decoder_channels, channels=channels, blocks=blocks)
        else:
            self.encoder = MLPEncoder(self.image_shape, encoder_outputs, hidden_sizes=hidden_sizes)
            self.decoder = MLPDecoder(z_dim, self.image_shape, decoder_channels,
                                      hidden_sizes=tuple(reversed(hidden_sizes)))

    def _levels(self, x: Tensor) -> Tensor:
        """uint8 images -> integer levels (checked)."""
        return to_levels(self.check_images(x), self.num_levels)

    def _inputs(self, levels: Tensor) -> Tensor:
        """Integer levels -> encoder inputs in [-1, 1], in the weights' dtype."""
        return levels.to(self.dtype) * (2.0 / (self.num_levels - 1)) - 1.0

    def encode(self, x: Tensor) -> Tensor:
        """uint8 ``(N, C, H, W)`` -> codes ``(N, z_dim)`` float: the representation the linear probe reads."""
        raise NotImplementedError

    def representation(self, x: Tensor) -> Tensor:
        return self.encode(x)

    def decode_mean(self, z: Tensor) -> Tensor:
        """Codes ``(N, z_dim)`` -> the decoder's mean images as uint8 0..255 (for pictures, not samples)."""
        raise NotImplementedError

    def prior_transform(self, eps: Tensor) -> Tensor:
        """Standard normal noise ``(N, z_dim)`` -> codes from the distribution :meth:`sample` decodes."""
        raise NotImplementedError


class Autoencoder(_LatentModel):
    """Deterministic autoencoder: ``z = encoder(x)``, trained to reconstruct ``x`` in [0, 1] with the mean squared
    error (``train/recon_loss``, ``val/recon_loss``, ``test/recon_loss``: per pixel).

    An autoencoder has no prior, so decoding ``z ~ N(0, I)`` would decode codes it never saw. :meth:`sample`
    instead decodes codes drawn from a full-covariance Gaussian fitted to the training codes: ``code_mean`` and
    ``code_cov`` are running (exponential moving average, ``code_momentum``) mean and covariance of the codes of
    the training batches, buffers saved in the checkpoint, like batch norm's running statistics. The decoder
    gives a value per sub-pixel, not a distribution, so a sample is that output clamped to [0, 1] and rounded to
    the data's levels (binary data: thresholded at 1/2). There is no likelihood (``log_prob`` raises
    :class:`~lightning_gen.models.base.NoLikelihoodError`).

    The decoder's output is linear, not squashed by a sigmoid: under an L2 loss a sigmoid saturates on MNIST's
    black background and training sits at "predict black" for hundreds of steps.

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`.
        z_dim, arch, channels, blocks, hidden_sizes: as for :class:`VAE`.
        code_momentum: weight of each training batch in the running code statistics.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 256,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        z_dim: int = 32,
        arch: str = "conv",
        channels: int = 32,
        blocks: int = 0,
        hidden_sizes: Sequence[int] = (200, 200),
        code_momentum: float = 0.01,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        if not 0 < code_momentum <= 1:
            raise ValueError(f"code_momentum must be in (0, 1], got {code_momentum}")
        self.code_momentum = float(code_momentum)
        self._build(z_dim, self.image_shape[0], z_dim=z_dim, arch=arch, channels=channels, blocks=blocks,
                    hidden_sizes=hidden_sizes)
        self.register_buffer("code_mean", torch.zeros(z_dim))
        self.register_buffer("code_second_moment", torch.eye(z_dim))

    def encode(self, x: Tensor) -> Tensor:
        return self._code(self._levels(x))

    def _code(self, levels: Tensor) -> Tensor:
        return self.encoder(self._inputs(levels))

    def reconstruct(self, z: Tensor) -> Tensor:
        """Codes -> reconstructions ``(N, C, H, W)`` on the [0, 1] scale of the targets (not clamped)."""
        return self.decoder(z)

    @torch.no_grad()
    def decode_mean(self, z: Tensor) -> Tensor:
        return (self.reconstruct(z).clamp(0, 1) * 255).round().to(torch.uint8)

    @property
    def code_cov(self) -> Tensor:
        return self.code_second_moment - torch.outer(self.code_mean, self.code_mean)

    def prior_transform(self, eps: Tensor) -> Tensor:
        # cov = V diag(lam) V^T -> z = mean + V sqrt(lam) eps: works for a singular covariance too.
        lam, vecs = torch.linalg.eigh(self.code_cov.double())
        root = (vecs * lam.clamp(min=0).sqrt()).to(eps.dtype)
        return self.code_mean + eps @ root.T

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        self.check_labels(n, labels)
        eps = torch.randn(n, self.z_dim, generator=generator, device=self.device)
        levels = torch.round(self.reconstruct(self.prior_transform(eps)).clamp(0, 1) * (self.num_levels - 1)).long()
        return from_levels(levels, self.num_levels)

    @torch.no_grad()
    def update_code_statistics(self, z: Tensor) -> None:
        """Move the running code mean and second moment towards those of the codes ``z`` ``(B, z_dim)``, in the
        buffers' float32 whatever autocast made of ``z``."""
        z = z.detach().float()
        with torch.autocast(z.device.type, enabled=False):
            self.code_mean.lerp_(z.mean(0), self.code_momentum)
            self.code_second_moment.lerp_(z.T @ z / z.shape[0], self.code_momentum)

    def _recon_loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        levels = self._levels(x)
        target = levels.float() / (self.num_levels - 1)
        z = self._code(levels)
        return F.mse_loss(self.reconstruct(z), target), z

    def training_step(self, batch, batch_idx):
        x, _ = batch
        loss, z = self._recon_loss(x)
        self.update_code_statistics(z)
        if self.logs_this_step():
            self.log("train/recon_loss", loss.detach(), prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        loss, _ = self._recon_loss(batch[0])
        self.log("val/recon_loss", loss, prog_bar=True, batch_size=batch[0].shape[0], sync_dist=True)

    def test_step(self, batch, batch_idx):
        loss, _ = self._recon_loss(batch[0])
        self.log("test/recon_loss", loss, batch_size=batch[0].shape[0], sync_dist=True)
