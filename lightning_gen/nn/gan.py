"""Generator and discriminator nets of the GAN family: fully connected (MLP) and DCGAN convolutional nets.

[1] Goodfellow et al. 2014, arXiv 1406.2661 (GAN; MLP generator and discriminator).
[2] Radford, Metz, Chintala 2015, arXiv 1511.06434 (DCGAN: strided (transposed) convolutions, BatchNorm, ReLU in
    the generator, LeakyReLU(0.2) in the discriminator, tanh output, N(0, 0.02) initialisation).
[3] Miyato & Koyama 2018, arXiv 1802.05637 (projection discriminator, used here for class conditioning).
[4] Gulrajani et al. 2017, arXiv 1704.00028 (WGAN-GP: the gradient penalty).
[5] Brock, Donahue, Simonyan 2018, arXiv 1809.11096 (BigGAN: standing statistics, as PyTorch-StudioGAN computes them).

Also here, as plain functions of the nets' raw outputs: the discriminator and generator losses (their math is in
:mod:`lightning_gen.models.gan`) and the gradient penalty; and the GAN's training state that is not a net's job:
:class:`NoiseStreams` (noise that is a pure function of integers) and :class:`GeneratorEMA` (an averaged generator
with standing BatchNorm statistics [5]).

Every generator maps noise ``z (B, z_dim)`` (and labels ``(B,)`` when built with ``num_classes > 0``) to
``(B, C, H, W)`` in [-1, 1]; every discriminator maps ``(B, C, H, W)`` (and labels) to one raw score per image,
``(B,)`` (a logit for the BCE objective, a critic value for the Wasserstein one), and exposes
``features(x) -> (B, feature_dim)``, its penultimate activations.

Where this differs from [2] on purpose:

- The first generator layer is a ``Linear`` from z to a ``base x base`` map and the last discriminator layer a
  ``Linear`` from the flattened ``base x base`` map to one score; [2] writes both as 4x4 convolutions, which is the
  same function for ``base = 4`` and also covers 28x28 images (``base = 7``).
- ``norm`` chooses BatchNorm ([2]), layer norm (``GroupNorm(1, C)`` / ``LayerNorm``: what WGAN-GP recommends in the
  critic, where a per-sample gradient penalty and BatchNorm's coupling of the batch do not mix) or none.
- Class conditioning (not in [2]): the generator concatenates a learnt label embedding to z; the discriminator
  adds the projection term ``<embed(y), features(x)>`` of [3] to its score.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("batch", "layer", "none")
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")


def _norm1d(norm: str, features: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm1d(features)
    if norm == "layer":
        return nn.LayerNorm(features)
    return nn.Identity()


def _norm2d(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)  # normalises over (C, H, W) per sample: layer norm for feature maps
    return nn.Identity()


def dcgan_plan(size: int) -> tuple[int, int]:
    """``(base, k)``: a side of ``size`` pixels is ``base * 2**k`` with ``base`` in 4..7, reached by halving.

    8 -> (4, 1), 28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4): the generator upsamples ``k`` times from ``base``,
    the discriminator downsamples ``k`` times to it.
    """
    base, k = int(size), 0
    while base % 2 == 0 and base > 7:
        base, k = base // 2, k + 1
    if k == 0 or base < 4:
        raise ValueError(f"DCGAN nets need image sides of base * 2**k with base in 4..7 and k >= 1 "
                         f"(e.g. 8, 28, 32, 64); got {size}")
    return base, k


def dcgan_init_(module: nn.Module) -> nn.Module:
    """DCGAN initialisation [2]: conv and linear weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


class _ConditionalInput(nn.Module):
    """``z`` -> ``[z, embed(y)]`` when the net is class-conditional, else ``z``."""

    def __init__(self, z_dim: int, num_classes: int) -> None:
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes > 0 else None
        self.out_features = 2 * z_dim if num_classes > 0 else z_dim

    def forward(self, z: Tensor, labels: Tensor | None) -> Tensor:
        if self.embed is None:
            return z
        if labels is None:
            raise ValueError("this generator is class-conditional: pass labels")
        return torch.cat([z, self.embed(labels)], dim=1)


class _Discriminator(nn.Module):
    """Score = ``head(features(x)) [+ <embed(y), features(x)>]``; subclasses define :meth:`features`."""

    def _init_head(self, feature_dim: int, num_classes: int) -> None:
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, 1)
        self.embed = nn.Embedding(num_classes, feature_dim) if num_classes > 0 else None
        if self.embed is not None:
            # The class term starts near zero and grows as it is learnt: an N(0, 1) projection of hundreds of
            # features swamps the unconditional score at the start.
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.features(x)  # (B, F)
        score = self.head(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            score = score + (self.embed(labels) * h).sum(1)
        return score


class MLPGenerator(nn.Module):
    """``z -> [Linear, norm, ReLU] x depth -> Linear -> tanh``, reshaped to ``out_shape``."""

    def __init__(self, z_dim: int, out_shape: Sequence[int], width: int = 256, depth: int = 2, num_classes: int = 0,
                 norm: str = "batch") -> None:
        super().__init__()
        _check_norm(norm)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.out_shape = tuple(int(s) for s in out_shape)
        self.input = _ConditionalInput(z_dim, num_classes)
        layers, fan_in = [], self.input.out_features
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), _norm1d(norm, width), nn.ReLU()]
            fan_in = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, math.prod(self.out_shape))

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.body(self.input(z, labels))
        return torch.tanh(self.out(h)).view(-1, *self.out_shape)


class MLPDiscriminator(_Discriminator):
    """``flatten(x) -> [Linear, norm, LeakyReLU(0.2)] x depth`` (the features) ``-> Linear`` (the score)."""

    def __init__(self, in_shape: Sequence[int], width: int = 256, depth: int = 2, num_classes: int = 0,
                 norm: str = "none") -> None:
        super().__init__()
        _check_norm(norm)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        layers, fan_in = [nn.Flatten()], math.prod(in_shape)
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), _norm1d(norm, width), nn.LeakyReLU(0.2)]
            fan_in = width
        self.body = nn.Sequential(*layers)
        self._init_head(width, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


class DCGANGenerator(nn.Module):
    """DCGAN generator [2] for ``(C, H, W)`` images, ``H = base_h * 2**k``, ``W = base_w * 2**k``.

    ``z -> Linear -> (width * 2**(k-1), base_h, base_w)``, then ``k - 1`` blocks
    ``ConvTranspose2d(4, stride 2) -> norm -> ReLU`` halving the channels while doubling the side, and a last
    ``ConvTranspose2d`` to ``C`` channels with tanh. ``width=64``: 512@4 -> 256@8 -> 128@16 -> 64@32 -> 3@64 for
    64x64 images, 256@4 -> ... -> 3@32 for 32x32, 128@7 -> 64@14 -> 1@28 for 28x28, 64@4 -> 1@8 for 8x8.
    """

    def __init__(self, z_dim: int, out_shape: Sequence[int], width: int = 64, num_classes: int = 0,
                 norm: str = "batch") -> None:
        super().__init__()
        _check_norm(norm)
        c, h, w = (int(s) for s in out_shape)
        (base_h, k), (base_w, k_w) = dcgan_plan(h), dcgan_plan(w)
        if k != k_w:
            raise ValueError(f"DCGAN nets need height and width that halve the same number of times; got {h}x{w}")
        self.out_shape = (c, h, w)
        self.input = _ConditionalInput(z_dim, num_classes)
        ch = width * 2 ** (k - 1)
        self.project = nn.Sequential(
            nn.Linear(self.input.out_features, ch * base_h * base_w, bias=norm == "none"),
            nn.Unflatten(1, (ch, base_h, base_w)),  # (B, ch * bh * bw) -> (B, ch, bh, bw)
            _norm2d(norm, ch),
            nn.ReLU(),
        )
        blocks = []
        for _ in range(k - 1):
            blocks += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=norm == "none"), _norm2d(norm, ch // 2), nn.ReLU()]
            ch //= 2
        blocks += [nn.ConvTranspose2d(ch, c, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)
        dcgan_init_(self)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.body(self.project(self.input(z, labels)))


class DCGANDiscriminator(_Discriminator):
    """DCGAN discriminator [2]: ``k`` blocks ``Conv2d(4, stride 2) -> norm -> LeakyReLU(0.2)`` doubling the channels
    from ``width`` (no norm on the first block, as in [2]); the features are the flattened last map
    ``(width * 2**(k-1), base_h, base_w)``, the score a ``Linear`` of them."""

    def __init__(self, in_shape: Sequence[int], width: int = 64, num_classes: int = 0, norm: str = "batch") -> None:
        super().__init__()
        _check_norm(norm)
        c, h, w = (int(s) for s in in_shape)
        (base_h, k), (base_w, k_w) = dcgan_plan(h), dcgan_plan(w)
        if k != k_w:
            raise ValueError(f"DCGAN nets need height and width that halve the same number of times; got {h}x{w}")
        layers, ch = [nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2)], width
        for _ in range(k - 1):
            layers += [nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=norm == "none"), _norm2d(norm, 2 * ch), nn.LeakyReLU(0.2)]
            ch *= 2
        layers.append(nn.Flatten())  # (B, ch, bh, bw) -> (B, ch * bh * bw)
        self.body = nn.Sequential(*layers)
        self._init_head(ch * base_h * base_w, num_classes)
        dcgan_init_(self)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


# ---- losses and statistics -----------------------------------------------------------------------------------
def discriminator_loss(real_scores: Tensor, fake_scores: Tensor, objective: str) -> Tensor:
    """Discriminator (critic) loss from its raw outputs on a real and a generated batch, ``(B,)`` each."""
    if objective == "wasserstein":
        return fake_scores.mean() - real_scores.mean()
    # -log s(l_real) - log(1 - s(l_fake)), in the numerically stable softplus form
    return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()


def generator_loss(fake_scores: Tensor, objective: str, g_loss: str) -> Tensor:
    """Generator loss from the discriminator's raw outputs on generated images ``(B,)``."""
    if objective == "wasserstein":
        return -fake_scores.mean()
    if g_loss == "minimax":
        return -F.softplus(fake_scores).mean()  # log(1 - s(l)) = -softplus(l)
    return F.softplus(-fake_scores).mean()  # -log s(l) = softplus(-l)


def gradient_penalty_loss(discriminator: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None = None, *,
                          generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP penalty [4]: ``mean((||grad_x D(x_hat)||_2 - 1)^2)`` at ``x_hat = e * real + (1 - e) * fake``,
    ``e ~ U(0, 1)`` per sample, differentiable (``create_graph=True``) so it can be added to the critic's loss."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat, labels).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


@torch.no_grad()
def standing_statistics(net: nn.Module, batches: Iterable[tuple[Tensor, Tensor | None]]) -> None:
    """Set the running statistics of every BatchNorm in ``net`` to the mean of its batch statistics (mean and
    unbiased variance, as BatchNorm with ``momentum=None`` accumulates them) over ``batches`` of ``(z, labels)``,
    each batch normalised by its own statistics as in training: PyTorch-StudioGAN's standing statistics.

    The net runs in eval mode with forward hooks that replace each BatchNorm's output by the batch-normalised one,
    so a SyncBatchNorm starts no collective and the net's other layers stay in eval mode. ``net`` is left in eval
    mode.
    """
    norms = [m for m in net.modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats]
    if not norms:
        return
    sums: dict[nn.Module, list[Tensor]] = {}

    def normalise_by_batch(module, inputs, output):
        x = inputs[0]
        dims = [0, *range(2, x.dim())]  # every dimension but the channels
        mean, var = x.mean(dims), x.var(dims, unbiased=True)
        if module in sums:
            sums[module][0] += mean
            sums[module][1] += var
        else:
            sums[module] = [mean.clone(), var.clone()]
        return F.batch_norm(x, None, None, module.weight, module.bias, True, 0.0, module.eps)

    handles = [m.register_forward_hook(normalise_by_batch) for m in norms]
    count = 0
    try:
        net.eval()
        for z, labels in batches:
            net(z, labels)
            count += 1
    finally:
        for h in handles:
            h.remove()
    for m in norms:
        m.running_mean.copy_(sums[m][0] / count)
        m.running_var.copy_(sums[m][1] / count)
        m.num_batches_tracked.fill_(count)


# ---- noise streams and the EMA generator -------------------------------------------------------------------------
# The GAN's kinds of draw, each its own stream of seeds: discriminator steps, generator steps, evaluation, and the
# EMA generator's standing statistics.
D_STREAM, G_STREAM, EVAL_STREAM, STANDING_STREAM = 0, 1, 2, 3


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers; distinct tuples give unrelated seeds."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class NoiseStreams:
    """Counter-based noise: :meth:`generator` reseeds one private generator from ``derive_seed(*parts)`` (the GAN's
    parts are ``(noise_seed, rank, stream, counter)``), so a draw is a pure function of those integers: DDP ranks draw
    different noise, and a resumed run draws exactly the noise the uninterrupted run would have drawn, with no
    generator state to save."""

    def __init__(self) -> None:
        self._generator: torch.Generator | None = None

    def generator(self, device: torch.device, *parts: int) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        return self._generator.manual_seed(derive_seed(*parts))


class GeneratorEMA:
    """An exponential moving average :attr:`net` of a generator's weights, with standing BatchNorm statistics.

    A plain object, not a module: its owner registers :attr:`net` as a submodule (the GAN's ``generator_ema``), so
    the averaged weights move with the owner and are saved under the owner's keys.

    Its BatchNorm statistics are standing statistics [5] of its own weights (:meth:`refresh`), not copies of the live
    generator's: those describe the activations of other weights (the live generator's at the last step), and an EMA
    of them a mix of past live weights. The noise behind them is a fixed stream seeded by the caller, the same on
    every rank, so the statistics are a function of the EMA weights alone; the global RNG is not touched, and no
    SyncBatchNorm collective runs (rank 0 alone may sample).
    """

    def __init__(self, generator: nn.Module, decay: float, *, z_dim: int, num_classes: int = 0,
                 standing_batches: int = 16, standing_batch_size: int = 256) -> None:
        self.net = copy.deepcopy(generator).requires_grad_(False)
        self.decay, self.z_dim, self.num_classes = decay, z_dim, num_classes
        self.standing_batches, self.standing_batch_size = standing_batches, standing_batch_size
        # The step the standing statistics were computed at (None: not for the current weights).
        self.standing_for: int | None = None

    @torch.no_grad()
    def update(self, generator: nn.Module, step: int) -> None:
        """Move the average towards ``generator`` with decay ``min(decay, (1 + step) / (10 + step))``, a warm-up so
        early averages are not dominated by the initial weights. BatchNorm statistics are not copied (:meth:`refresh`).
        """
        decay = min(self.decay, (1 + step) / (10 + step))
        for p_ema, p in zip(self.net.parameters(), generator.parameters()):
            p_ema.lerp_(p, 1.0 - decay)

    @torch.no_grad()
    def refresh(self, step: int, seed: int, force: bool = False) -> bool:
        """Recompute the standing statistics (:func:`standing_statistics`) from ``standing_batches`` batches of noise
        drawn with ``seed`` (labels cycling through the classes), unless they are already for the weights of
        ``step``; True if they were recomputed. The net's train / eval mode is kept."""
        if not force and self.standing_for == step:
            return False
        device = next(self.net.parameters()).device
        gen = torch.Generator(device=device).manual_seed(seed)
        n = self.standing_batch_size
        labels = torch.arange(n, device=device) % self.num_classes if self.num_classes > 0 else None
        batches = ((torch.randn(n, self.z_dim, generator=gen, device=device), labels)
                   for _ in range(self.standing_batches))
        was_training = self.net.training
        with torch.autocast(device.type, enabled=False):  # the same statistics inside and outside autocast
            standing_statistics(self.net, batches)
        self.net.train(was_training)
        self.standing_for = step
        return True
