"""Generative adversarial networks: one LightningModule for the GAN family, trained by manual optimization.

[1] Goodfellow et al. 2014, arXiv 1406.2661 (GAN: minimax and non-saturating generator losses, k discriminator
    steps per generator step).
[2] Radford, Metz, Chintala 2015, arXiv 1511.06434 (DCGAN).
[3] Arjovsky, Chintala, Bottou 2017, arXiv 1701.07875 (WGAN: Wasserstein critic, weight clipping, RMSprop).
[4] Gulrajani et al. 2017, arXiv 1704.00028 (WGAN-GP: gradient penalty on interpolates, lambda = 10).
[5] Miyato & Koyama 2018, arXiv 1802.05637 (projection discriminator, for class conditioning).

The nets and the losses (and their math) live in :mod:`lightning_gen.nn.gan`, the noise streams and the EMA
generator in :mod:`lightning_gen.nn.gan_state`. One training batch is one discriminator step on that batch; every
``d_steps_per_g_step``-th batch is followed by one generator step, so each of the k discriminator steps of [1]
consumes its own real batch. :meth:`GAN.training_step` is built from the public
:meth:`~GAN.discriminator_step`, :meth:`~GAN.clip_discriminator`, :meth:`~GAN.generator_step` and
:meth:`~GAN.update_ema`; a plain PyTorch loop calling them with the model's optimizers trains the same way (the
throughput bench does, and a test checks the weights match ``fit`` bitwise).

Where this implementation deliberately differs (each note sits with the code it explains):

- ``trainer.global_step`` counts both optimizers' steps; the GAN's own counters are ``g_steps`` and ``d_steps``
  (:meth:`GAN.training_step`).
- Noise is a pure function of integers (:class:`~lightning_gen.nn.gan_state.NoiseStreams`): DDP ranks differ, and a
  run resumed from any step draws the noise the uninterrupted one would have (the data order is the training
  loader's, restored with its position, :class:`~lightning_gen.data.base.ResumableLoader`).
- A NaN or Inf loss or gradient stops training before the update (:meth:`GAN._check_finite`).
- Under DDP each backward pass reaches one net, so :meth:`GAN.setup` turns on ``find_unused_parameters``.
- The EMA generator's BatchNorm statistics are standing statistics of its own weights
  (:class:`~lightning_gen.nn.gan_state.GeneratorEMA`), not copies of the live generator's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from lightning_gen import compat
from lightning_gen.models.base import GenerativeModule, from_levels, to_levels
from lightning_gen.nn.gan import (NORMS, Adversarial, all_finite, architecture_name, check_choice, discriminator_loss,
                                  global_norm, make_discriminator, make_generator)
from lightning_gen.nn.gan_state import (D_STREAM, EVAL_STREAM, G_STREAM, STANDING_STREAM, GeneratorEMA, NoiseStreams,
                                        derive_seed)

BINARY_SAMPLING = ("threshold", "bernoulli")


class NonFiniteLossError(FloatingPointError):
    """A GAN loss or gradient became NaN or Inf; raised before the optimizer step that would have used it."""


def _forget_standing_statistics(module: nn.Module, incompatible_keys) -> None:
    if module.ema is not None:
        module.ema.standing_for = None  # new weights: recompute before the next use


def _drop_retired_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    # Older checkpoints hold the retired noise fingerprint: dropped, so they load strictly (resume and app.run alike).
    state_dict.pop(prefix + "noise_fingerprint", None)


class GAN(GenerativeModule):
    """GAN / DCGAN / WGAN / WGAN-GP with k discriminator steps per generator step, optional EMA generator and
    class conditioning. No likelihood: :meth:`log_prob` raises :class:`~lightning_gen.models.base.NoLikelihoodError`.

    Args:
        image_shape, num_levels, num_classes: linked from the data module.
        optimizer: used for the generator and the discriminator where ``g_optimizer`` / ``d_optimizer`` are not
            given (a fresh instance for each).
        generator, discriminator: ``"mlp"`` or ``"dcgan"`` nets (:mod:`lightning_gen.nn.gan`).
        z_dim: noise dimension.
        g_width, d_width: hidden units of an MLP net, base channel count of a DCGAN net.
        mlp_depth: hidden layers of the MLP nets.
        g_norm, d_norm: ``"batch"``, ``"layer"`` or ``"none"`` normalisation in the generator / discriminator.
        objective: ``"bce"`` (the GAN of [1]) or ``"wasserstein"`` (the WGAN critic of [3]).
        g_loss: ``"minimax"`` or ``"non_saturating"`` generator loss for ``objective="bce"``.
        d_steps_per_g_step: k, discriminator steps (batches) per generator step.
        clip_value: clamp every discriminator weight to ``[-clip_value, clip_value]`` after each of its steps [3].
        gradient_penalty: weight lambda of the penalty ``(||grad_x D(x_hat)|| - 1)^2`` on random interpolates
            ``x_hat`` of real and generated images [4] (10 in the paper); 0 disables it.
        g_optimizer, d_optimizer: optimizers of the two nets (Adam with betas (0.5, 0.999) for DCGAN, RMSprop for
            WGAN in the configs).
        ema_decay: if > 0, :meth:`sample` uses an exponential moving average of the generator's weights with this
            decay after a warm-up, and standing BatchNorm statistics of its own
            (:class:`~lightning_gen.nn.gan_state.GeneratorEMA`); its state is ``generator_ema.*``.
        standing_batches, standing_batch_size: batches of noise behind the EMA generator's standing statistics.
        conditional: condition both nets on the class label (needs ``num_classes > 0``).
        binary_sampling: for binary data (``num_levels=2``), turn the generator's output ``p = (g + 1) / 2`` into
            0/255 pixels by ``"threshold"`` (``p > 0.5``) or ``"bernoulli"`` (a draw with probability ``p``).
    """

    family: ClassVar[str] = "gan"
    has_representation = True

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 256,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        *,
        generator: str = "dcgan",
        discriminator: str = "dcgan",
        z_dim: int = 100,
        g_width: int = 64,
        d_width: int = 64,
        mlp_depth: int = 2,
        g_norm: str = "batch",
        d_norm: str = "batch",
        objective: str = "bce",
        g_loss: str = "non_saturating",
        d_steps_per_g_step: int = 1,
        clip_value: float | None = None,
        gradient_penalty: float = 0.0,
        g_optimizer: OptimizerCallable | None = None,
        d_optimizer: OptimizerCallable | None = None,
        ema_decay: float = 0.0,
        standing_batches: int = 16,
        standing_batch_size: int = 256,
        conditional: bool = False,
        binary_sampling: str = "threshold",
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        check_choice("g_norm", g_norm, NORMS)
        check_choice("d_norm", d_norm, NORMS)
        check_choice("binary_sampling", binary_sampling, BINARY_SAMPLING)
        self.adversarial = Adversarial(objective, g_loss, clip_value=clip_value, gradient_penalty=gradient_penalty)
        if d_steps_per_g_step < 1:
            raise ValueError(f"d_steps_per_g_step must be >= 1, got {d_steps_per_g_step}")
        if gradient_penalty > 0 and d_norm == "batch":
            raise ValueError("the gradient penalty is a per-sample penalty and BatchNorm couples the samples of a "
                             "batch; use d_norm='layer' or 'none' with gradient_penalty (as WGAN-GP does)")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if standing_batches < 1 or standing_batch_size < 2:
            raise ValueError(f"standing_batches must be >= 1 and standing_batch_size >= 2, got {standing_batches} "
                             f"and {standing_batch_size}")
        if conditional and self.num_classes < 1:
            raise ValueError("conditional=True needs labelled data (num_classes > 0)")
        self.automatic_optimization = False
        self.conditional = conditional
        self.z_dim, self.d_steps_per_g_step, self.binary_sampling = z_dim, d_steps_per_g_step, binary_sampling
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer

        n_cond = self.num_classes if conditional else 0
        self.generator = make_generator(generator, z_dim, self.image_shape, g_width, mlp_depth, n_cond, g_norm)
        self.discriminator = make_discriminator(discriminator, self.image_shape, d_width, mlp_depth, n_cond, d_norm)
        self.ema = None
        if ema_decay > 0:
            self.ema = GeneratorEMA(self.generator, ema_decay, z_dim=z_dim, num_classes=n_cond,
                                    standing_batches=standing_batches, standing_batch_size=standing_batch_size)
        # Registered here, so the averaged weights are saved as generator_ema.* and move with the model.
        self.generator_ema = self.ema.net if self.ema is not None else None
        self.register_load_state_dict_post_hook(_forget_standing_statistics)

        self.register_buffer("g_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("d_steps", torch.zeros((), dtype=torch.long))
        # -1: not yet chosen; torch.initial_seed() (what seed_everything set) at the first fit (:meth:`on_fit_start`).
        self.register_buffer("noise_seed", torch.full((), -1, dtype=torch.long))
        self.noise = NoiseStreams()
        # The last discriminator step's noise, not saved: lets a test see that DDP ranks draw different noise.
        self.last_noise: Tensor | None = None
        self.register_load_state_dict_pre_hook(_drop_retired_keys)

    # ---- data space <-> model space -----------------------------------------------------------------------
    def to_model_space(self, x: Tensor) -> Tensor:
        """uint8 images -> float in [-1, 1] (level / (L - 1) * 2 - 1); floating-point batches (the 2-D points of
        :class:`~lightning_gen.data.toy.RingOfGaussians`) are taken as already in that space."""
        if x.is_floating_point():
            if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
                shape = ", ".join(map(str, self.image_shape))
                raise ValueError(f"expected data of shape (N, {shape}), got {tuple(x.shape)}")
            return x.to(self.dtype)
        levels = to_levels(self.check_images(x), self.num_levels)
        return levels.to(self.dtype) * (2.0 / (self.num_levels - 1)) - 1.0

    def to_uint8(self, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Generator output in [-1, 1] -> uint8 images, rounded to the data's ``num_levels`` levels."""
        p = ((out + 1.0) / 2.0).clamp(0.0, 1.0)
        if self.num_levels == 2 and self.binary_sampling == "bernoulli":
            levels = torch.bernoulli(p, generator=generator).long()
        else:
            levels = torch.round(p * (self.num_levels - 1)).long()
        return from_levels(levels, self.num_levels)

    # ---- the interface -------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Generator output in [-1, 1], ``(N, C, H, W)``, for noise ``z (N, z_dim)``: the EMA generator if there is
        one, in eval mode (normalisation uses running statistics, so an image does not depend on its batch; the EMA
        generator's are its standing statistics, recomputed first if the EMA has moved since)."""
        self.refresh_standing_statistics()  # nothing without an EMA generator
        net = self.generator_ema if self.generator_ema is not None else self.generator
        was_training = net.training
        net.eval()
        try:
            return net(z.to(self.device, self.dtype), labels)
        finally:
            net.train(was_training)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """``n`` uint8 images. A class-conditional model without ``labels`` draws them uniformly."""
        labels = self.check_labels(n, labels)
        z = torch.randn(n, self.z_dim, generator=generator, device=self.device)
        if self.conditional and labels is None:
            labels = torch.randint(self.num_classes, (n,), generator=generator, device=self.device)
        return self.to_uint8(self.generate(z, labels), generator)

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        """The discriminator's penultimate activations ``(N, F)`` of uint8 images (for linear probes); call it in
        eval mode so BatchNorm uses its running statistics."""
        return self.discriminator.features(self.to_model_space(x))

    def generator_gradient_norm(self, z: Tensor, labels: Tensor | None = None, g_loss: str | None = None) -> Tensor:
        """``||grad_theta L_G||`` at noise ``z`` for ``g_loss`` (default: the model's own), the diagnostic behind
        ``scripts/gan_gradients.py`` (:meth:`~lightning_gen.nn.gan.Adversarial.generator_gradient_norm`)."""
        return self.adversarial.generator_gradient_norm(self.generator, self.discriminator, z.to(self.device),
                                                        labels, g_loss)

    # ---- noise -------------------------------------------------------------------------------------------
    def _noise_generator(self, stream: int, counter: int) -> torch.Generator:
        """Draw ``counter`` of ``stream`` on this rank (:class:`~lightning_gen.nn.gan_state.NoiseStreams`)."""
        return self.noise.generator(self.device, int(self.noise_seed), self.global_rank, stream, counter)

    def _noise(self, n: int, gen: torch.Generator) -> Tensor:
        return torch.randn(n, self.z_dim, generator=gen, device=self.device)

    # ---- training -------------------------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        return architecture_name(self.hparams.generator, self.hparams.discriminator, self.adversarial.name)

    def configure_optimizers(self):
        g_opt = (self.g_optimizer or self.optimizer)(self.generator.parameters())
        d_opt = (self.d_optimizer or self.optimizer)(self.discriminator.parameters())
        return [g_opt, d_opt]

    def setup(self, stage: str) -> None:
        """Under DDP each backward pass reaches only one of the two nets, which DDP accepts only with
        ``find_unused_parameters=True``: turned on here, before the strategy wraps the model, so ``strategy: ddp``
        works as ``ddp_find_unused_parameters_true`` does (:func:`~lightning_gen.compat.ddp_find_unused_parameters`);
        if a future Lightning stops honouring that, :meth:`on_fit_start` fails naming the strategy to use."""
        if stage == "fit" and compat.ddp_find_unused_parameters(self.trainer.strategy):
            rank_zero_info("GAN: DDP set to find_unused_parameters=True (each backward pass reaches one net)")

    def on_fit_start(self) -> None:
        model = self.trainer.strategy.model
        if isinstance(model, DistributedDataParallel) and not model.find_unused_parameters:
            raise ValueError("GAN under DDP: each backward pass reaches only the generator or only the discriminator, "
                             "so run it with --trainer.strategy ddp_find_unused_parameters_true")
        if int(self.noise_seed) < 0:
            self.noise_seed.fill_(torch.initial_seed() % 2**62)

    def _grad_norm(self, module: nn.Module) -> Tensor:
        return global_norm([p.grad for p in module.parameters() if p.grad is not None])

    def _check_finite(self, name: str, loss: Tensor, module: nn.Module) -> None:
        """Stop before the update if the loss or the gradients it produced are not finite (under DDP every rank
        stops at the same step: :func:`~lightning_gen.nn.gan.all_finite`)."""
        if not all_finite(loss, module):
            raise NonFiniteLossError(
                f"{name} = {loss.item()} at generator step {int(self.g_steps)}, "
                f"discriminator step {int(self.d_steps)} (global step {self.global_step}): training stopped before "
                f"this update, so the weights and the checkpoints written so far are finite. Resume from the last "
                f"checkpoint with a lower learning rate or a gradient penalty.")

    # ---- one update of each net: the loss to backpropagate; the caller owns zero_grad, backward and step ----------
    def discriminator_step(self, real: Tensor, labels: Tensor | None, generator: torch.Generator) -> dict[str, Tensor]:
        """Loss of one discriminator update: ``real`` batch already in model space (:meth:`to_model_space`), fakes
        drawn with ``generator`` (their noise, then the penalty's interpolation weights). Keys: ``"loss"``,
        ``"real_score"``, ``"fake_score"`` and ``"gp"`` (:meth:`Adversarial.discriminator_terms
        <lightning_gen.nn.gan.Adversarial.discriminator_terms>`). After the optimizer step call
        :meth:`clip_discriminator`."""
        z = self._noise(real.shape[0], generator)
        self.last_noise = z
        with torch.no_grad():
            fake = self.generator(z, labels)
        return self.adversarial.discriminator_terms(self.discriminator, real, fake, labels, generator)

    @torch.no_grad()
    def clip_discriminator(self) -> None:
        """WGAN weight clipping [3], after each discriminator update; nothing without ``clip_value``."""
        self.adversarial.clip_(self.discriminator)

    def generator_step(self, n: int, labels: Tensor | None, generator: torch.Generator) -> Tensor:
        """Loss of one generator update on ``n`` fresh fakes drawn with ``generator``; backpropagating it fills only
        the generator's gradients (the discriminator is frozen meanwhile). After the optimizer step call
        :meth:`update_ema`."""
        fake = self.generator(self._noise(n, generator), labels)
        return self.adversarial.generator_term(self.discriminator, fake, labels)

    def refresh_standing_statistics(self, force: bool = False) -> bool:
        """Recompute the EMA generator's standing BatchNorm statistics from a fixed noise stream of ``noise_seed``
        (:meth:`GeneratorEMA.refresh <lightning_gen.nn.gan_state.GeneratorEMA.refresh>`) unless they are already for
        its weights at this ``g_steps``; True if they were recomputed. Called lazily when the EMA has moved
        (:meth:`generate`, so validation, sampling and the benchmark all see them) and before every checkpoint is
        written, so a checkpoint's statistics belong to its weights and resuming stays bitwise exact."""
        if self.ema is None:
            return False
        return self.ema.refresh(int(self.g_steps), derive_seed(int(self.noise_seed), STANDING_STREAM), force=force)

    def update_ema(self) -> None:
        """Move the EMA generator towards the generator, after each generator update; its warm-up reads ``g_steps``,
        which :meth:`training_step` advances first. Nothing without ``ema_decay``."""
        if self.ema is not None:
            self.ema.update(self.generator, int(self.g_steps))

    def training_step(self, batch, batch_idx):
        """One discriminator step on the batch, then a generator step after every ``d_steps_per_g_step``-th.

        Lightning counts every optimizer step in ``trainer.global_step``, so a batch followed by a generator step
        advances it by 2 and ``max_steps=N`` means about ``N * k / (k + 1)`` batches and ``N / (k + 1)`` generator
        steps. The GAN's own counts are the buffers ``g_steps`` (logged as ``train/g_steps``) and ``d_steps``.
        """
        x, y = batch
        real = self.to_model_space(x)
        labels = y if self.conditional else None
        g_opt, d_opt = self.optimizers()
        log = self.logs_this_step()

        # ---- discriminator step: one per batch
        self.toggle_optimizer(d_opt)
        d = self.discriminator_step(real, labels, self._noise_generator(D_STREAM, int(self.d_steps)))
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(d["loss"])
        self._check_finite("d_loss", d["loss"], self.discriminator)
        d_opt.step()
        self.clip_discriminator()
        self.untoggle_optimizer(d_opt)
        self.d_steps += 1
        if log:
            self.log("train/d_loss", d["loss"].detach(), prog_bar=True)
            self.log("train/d_real", d["real_score"])
            self.log("train/d_fake", d["fake_score"])
            self.log("train/d_grad_norm", self._grad_norm(self.discriminator))

        # ---- generator step: after every k-th discriminator step
        if int(self.d_steps) % self.d_steps_per_g_step == 0:
            self.toggle_optimizer(g_opt)
            g_loss = self.generator_step(real.shape[0], labels, self._noise_generator(G_STREAM, int(self.g_steps)))
            g_opt.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            self._check_finite("g_loss", g_loss, self.generator)
            # Gradient norms only where they are logged: the reduction over every parameter costs a fifth of a
            # small net's step.
            g_grad_norm = self._grad_norm(self.generator) if log else None
            g_opt.step()
            self.untoggle_optimizer(g_opt)
            self.g_steps += 1
            self.update_ema()
            if log:
                self.log("train/g_loss", g_loss.detach(), prog_bar=True)
                self.log("train/g_grad_norm", g_grad_norm)
                self.log("train/g_steps", float(self.g_steps))

    # ---- evaluation: the discriminator on held-out real images against fixed generated ones -------------------
    def _eval_step(self, batch, batch_idx: int, stage: str) -> None:
        x, y = batch
        real = self.to_model_space(x)
        labels = y if self.conditional else None
        # The same noise at every evaluation (seeded by the batch index), so the numbers compare across epochs.
        z = self._noise(real.shape[0], self._noise_generator(EVAL_STREAM, batch_idx))
        real_scores = self.discriminator(real, labels)
        fake_scores = self.discriminator(self.generate(z, labels), labels)
        kw = dict(on_step=False, on_epoch=True, batch_size=real.shape[0], sync_dist=True)
        self.log(f"{stage}/d_loss", discriminator_loss(real_scores, fake_scores, self.adversarial.objective), **kw)
        self.log(f"{stage}/d_real", self.adversarial.score(real_scores).mean(), **kw)
        self.log(f"{stage}/d_fake", self.adversarial.score(fake_scores).mean(), **kw)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, "test")

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.refresh_standing_statistics():
            # The state dict was collected before this hook: write the fresh statistics into it.
            self.ema.write_buffers(checkpoint.get("state_dict", {}), "generator_ema.")

    def on_train_end(self) -> None:
        # The weights a fit ends with get their standing statistics, so its final state is the same whether or not
        # the run was interrupted and resumed (a resumed run holds the statistics of the checkpoint's weights).
        self.refresh_standing_statistics()
