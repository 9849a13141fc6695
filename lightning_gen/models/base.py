"""The interface every lightning_gen model honours.

Images travel between data, models, metrics, logging and the dashboard as ``torch.uint8`` tensors of shape
``(N, C, H, W)`` with values in 0..255, whatever the data's number of grey levels: binary images are 0/255,
8-bit images use every value. A model that works with discrete levels converts with :func:`to_levels` and
:func:`from_levels`; the data module tells it how many levels there are (``num_levels``).

A model with a likelihood implements :meth:`GenerativeModule.log_prob`: the log-probability in nats of each
*discrete* image under the model's ``num_levels``-level pixel distribution. Bits per dimension are
``-log_prob / (C * H * W * ln 2)``.

What a model can do is declared on its class, never probed: :attr:`GenerativeModule.likelihood_kind` says what its
``log_prob`` is (one of :data:`LIKELIHOOD_KINDS`, or None for no likelihood), :attr:`~GenerativeModule.has_representation`
whether :meth:`~GenerativeModule.representation` gives features for a linear probe. Estimator settings (importance
samples, seed, chunk size) travel as an :class:`Estimate` argument of ``log_prob``; the caller never sets them on the
model.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from lightning_gen import compat
from lightning_gen.metrics.nll import ImageSums, unpadded_length
from lightning_gen.nn.pixels import from_levels, to_levels  # noqa: F401  (re-exported: the image currency)


class NoLikelihoodError(TypeError):
    """Raised when a likelihood is asked of a model that does not define one (a GAN, an autoencoder)."""


class NoRepresentationError(TypeError):
    """Raised when a representation is asked of a model that does not declare one."""


#: What a model's ``log_prob`` is. "exact": the log-probability itself (autoregressive models); "bound": a lower
#: bound on it (a flow under uniform dequantization, a diffusion model's variational bound, a VAE's ELBO);
#: "importance-weighted": a stochastic estimate that is a lower bound in expectation and tightens with more samples
#: (IWAE-style, k samples); "ais": annealed importance sampling of the partition function (an RBM), a stochastic
#: estimate whose bias direction the model documents.
LIKELIHOOD_KINDS = ("exact", "bound", "importance-weighted", "ais")


@dataclass(frozen=True)
class Estimate:
    """Settings of a stochastic likelihood estimate, passed as ``log_prob(x, estimate=Estimate(...))``.

    Every field left None takes the model's own default (e.g. a VAE's ``iw_samples``). Models with an exact
    likelihood accept and ignore it, so callers can always pass one.

    Args:
        k: importance samples (or AIS runs) per image.
        seed: makes each image's estimate a function of ``(seed, image)`` alone: the same for any batch, rank or
            number of processes. None draws a fresh seed from the global RNG.
        chunk: how many samples are evaluated at once (memory only; the value does not change).
    """

    k: int | None = None
    seed: int | None = None
    chunk: int | None = None

    def __post_init__(self) -> None:
        for name in ("k", "chunk"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"Estimate.{name} must be a positive integer, got {value!r}")


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
    #: What :meth:`log_prob` computes: one of :data:`LIKELIHOOD_KINDS`, or None where the model defines no
    #: likelihood (a GAN, an autoencoder).
    likelihood_kind: ClassVar[str | None] = None
    #: Derived from :attr:`likelihood_kind` for every subclass (do not set it).
    has_likelihood: ClassVar[bool] = False
    #: Whether :meth:`representation` gives a feature vector per image (for the linear probe).
    has_representation: ClassVar[bool] = False
    #: Whether the model conditions on class labels. ``num_classes`` comes from the data and says how many
    #: classes there are; a conditional model sets this to True (usually from a ``conditional`` option).
    conditional: bool = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.likelihood_kind is not None and cls.likelihood_kind not in LIKELIHOOD_KINDS:
            raise TypeError(f"{cls.__name__}.likelihood_kind is {cls.likelihood_kind!r}; expected one of "
                            f"{LIKELIHOOD_KINDS} or None")
        cls.has_likelihood = cls.likelihood_kind is not None

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
        #: An ``LRSchedulerCallable`` stepped once per epoch, or None; a subclass that offers one sets it.
        self.lr_scheduler = None
        # Evaluation sums per stage: see accumulate_eval.
        self._eval_sums: dict[str, ImageSums] = {}

    # ---- the interface -------------------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        """The name a benchmark record and the leaderboard's Model column give this model: its class name, unless
        its options make it a different architecture (a GAN's nets and objective: "DCGAN", "GAN (MLP)", "WGAN-GP")."""
        return type(self).__name__

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

    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        """Log-likelihood in nats of each uint8 image in ``x`` ``(N, C, H, W)``: a tensor of shape ``(N,)``, of the
        kind :attr:`likelihood_kind` names. ``estimate`` sets a stochastic estimator (ignored by exact models)."""
        raise NoLikelihoodError(f"{type(self).__name__} defines no likelihood; NLL and bits/dim are not available for it")

    def resolve_estimate(self, estimate: Estimate | None = None) -> Estimate:
        """``estimate`` with this model's defaults filled in (an exact model has nothing to fill)."""
        return estimate or Estimate()

    def likelihood_protocol(self, estimate: Estimate | None = None) -> str:
        """How :meth:`log_prob` under ``estimate`` is computed, for a record: e.g. "exact" or
        "importance-weighted k=5000"."""
        if self.likelihood_kind is None:
            raise NoLikelihoodError(f"{type(self).__name__} defines no likelihood")
        return self.likelihood_kind

    def sampling_protocol(self) -> str | None:
        """How :meth:`sample` draws where that sets its cost (a diffusion model's sampler and steps, a Gibbs chain's
        length), for the record beside the samples/s figure; None where nothing needs saying."""
        return None

    def representation(self, x: Tensor) -> Tensor:
        """Features ``(N, D)`` of uint8 images ``x`` for a linear probe (an encoder's mean, a discriminator's
        penultimate layer), where :attr:`has_representation` says the model has one."""
        raise NoRepresentationError(f"{type(self).__name__} declares no representation; a linear probe needs a model "
                                    "with has_representation = True (an autoencoder, a VAE, a GAN's discriminator)")

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
        return self.scheduled(self.optimizer(self.parameters()))

    def scheduled(self, optimizer: torch.optim.Optimizer):
        """``optimizer`` with ``self.lr_scheduler`` stepped once per epoch, in Lightning's form; alone without one."""
        if self.lr_scheduler is None:
            return optimizer
        scheduler = {"scheduler": self.lr_scheduler(optimizer), "interval": "epoch"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # ---- exact evaluation means ----------------------------------------------------------------------------
    def accumulate_eval(self, stage: str, values: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Add one evaluation batch's per-image ``values`` (each ``(B,)``) to ``stage``'s
        :class:`~lightning_gen.metrics.nll.ImageSums`, leaving out the images a ``DistributedSampler`` repeated to pad
        this rank's share; :meth:`eval_means` gives the means over every image once. One call per batch, with every
        name."""
        if batch_idx == 0 and dataloader_idx == 0:
            self._eval_sums[stage] = ImageSums()
        sums = self._eval_sums.setdefault(stage, ImageSums())
        if batch_idx == 0:
            trainer = compat.attached_trainer(self)
            loaders = None if trainer is None else (trainer.test_dataloaders if stage == "test"
                                                    else trainer.val_dataloaders)
            if isinstance(loaders, dict):
                loaders = list(loaders.values())
            sums.start(unpadded_length(loaders[dataloader_idx] if isinstance(loaders, (list, tuple)) else loaders))
        sums.add(values)

    def eval_means(self, stage: str, names: Sequence[str]) -> dict[str, Tensor]:
        """Means of ``names`` over every image of ``stage`` on every rank, each image once
        (:meth:`~lightning_gen.metrics.nll.ImageSums.result`). Call it on every rank at the epoch's end; it resets
        the sums."""
        trainer = compat.attached_trainer(self)
        reduce_sum = None if trainer is None else functools.partial(trainer.strategy.reduce, reduce_op="sum")
        means = self._eval_sums.pop(stage, ImageSums()).result(names, device=self.device, reduce_sum=reduce_sum)
        return {name: means[name] for name in names}


class LikelihoodModule(GenerativeModule):
    """A model trained by maximum likelihood: the loss is the mean NLL in nats per dimension.

    Subclasses implement :meth:`log_prob` (and :meth:`sample`); this class supplies the training, validation and
    test steps and logs ``{stage}/nll_nats`` (nats per image) and ``{stage}/nll_bpd`` (bits per dimension).

    Validation and test numbers are the benchmark's: ``log_prob`` runs in float32 with autocast off (under
    ``bf16-mixed`` a random PixelCNN scored 8.0706 bits/dim against 8.0662 in float32), and the logged value is the
    float64 sum of every image's NLL over all ranks divided by the number of images, each counted once (the repeats a
    ``DistributedSampler`` pads with are left out), not a mean of per-rank means.

    A subclass with more to report per image (a VAE's negative ELBO, or a likelihood too costly for every
    validation) overrides :meth:`eval_names` and :meth:`eval_values`; the steps, the exact means and the logging
    stay here. Each name is logged as ``{stage}/{name}``, and those in :attr:`bpd_names` also in bits/dim.
    """

    likelihood_kind = "exact"
    #: Evaluation values (nats per image) that are also logged in bits per dimension, ``{stage}/{stem}_bpd``.
    bpd_names: ClassVar[tuple[str, ...]] = ("nll_nats",)

    def _nll(self, x: Tensor, y: Tensor) -> Tensor:
        return -self.log_prob(x, y if self.conditional else None)  # (B,) nats per image

    def training_step(self, batch, batch_idx):
        x, y = batch
        mean_nll = self._nll(x, y).mean()
        if self.logs_this_step():
            self.log("train/nll_nats", mean_nll.detach(), batch_size=x.shape[0])
            self.log("train/nll_bpd", bits_per_dim(mean_nll.detach(), self.num_dims), prog_bar=True,
                     batch_size=x.shape[0])
        # Per-dimension loss keeps the learning rate independent of the image size.
        return mean_nll / self.num_dims

    def eval_names(self, stage: str) -> tuple[str, ...]:
        """The names :meth:`eval_values` returns at ``stage`` ("val" or "test"), the same on every rank."""
        return ("nll_nats",)

    def eval_values(self, x: Tensor, y: Tensor, stage: str) -> dict[str, Tensor]:
        """Per-image evaluation values ``(B,)`` of one batch, named by :meth:`eval_names`; run in float32 with
        autocast off."""
        return {"nll_nats": self._nll(x, y)}

    def _eval_step(self, batch, stage: str, batch_idx: int, dataloader_idx: int) -> None:
        x, y = batch
        with torch.autocast(self.device.type, enabled=False):
            values = self.eval_values(x, y, stage)
        self.accumulate_eval(stage, values, batch_idx, dataloader_idx)

    def _log_eval(self, stage: str) -> None:
        for name, mean in self.eval_means(stage, self.eval_names(stage)).items():
            # Every rank holds the same global value; sync_dist only keeps Lightning from warning about it.
            self.log(f"{stage}/{name}", mean, sync_dist=True)
            if name in self.bpd_names:
                self.log(f"{stage}/{name.removesuffix('_nats')}_bpd", bits_per_dim(mean, self.num_dims),
                         prog_bar=True, sync_dist=True)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self._eval_step(batch, "val", batch_idx, dataloader_idx)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self._eval_step(batch, "test", batch_idx, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")
