"""Generator and discriminator nets of the GAN family: fully connected (MLP) and DCGAN convolutional nets.

[1] Goodfellow et al. 2014, arXiv 1406.2661 (GAN; MLP generator and discriminator).
[2] Radford, Metz, Chintala 2015, arXiv 1511.06434 (DCGAN: strided (transposed) convolutions, BatchNorm, ReLU in
    the generator, LeakyReLU(0.2) in the discriminator, tanh output, N(0, 0.02) initialisation).
[3] Miyato & Koyama 2018, arXiv 1802.05637 (projection discriminator, used here for class conditioning).
[4] Gulrajani et al. 2017, arXiv 1704.00028 (WGAN-GP: the gradient penalty).
[5] Arjovsky, Chintala, Bottou 2017, arXiv 1701.07875 (WGAN: Wasserstein critic, weight clipping).

Also here: the game between the nets (:class:`Adversarial`), built from plain functions of their raw outputs (the
discriminator and generator losses, the gradient penalty). With ``l = D(x)`` the raw discriminator output (a logit
for ``objective="bce"``, a critic value for ``"wasserstein"``) and ``s`` the sigmoid:

- ``bce``: discriminator ``-log s(l_real) - log(1 - s(l_fake))``; generator ``minimax``: ``log(1 - s(l_fake))``
  (saturates when D rejects the fakes: its gradient w.r.t. ``l_fake`` is ``-s(l_fake)`` -> 0),
  ``non_saturating``: ``-log s(l_fake)`` (gradient ``-(1 - s(l_fake))`` -> -1). ``scripts/gan_gradients.py`` plots both.
- ``wasserstein``: critic ``mean(l_fake) - mean(l_real)``, generator ``-mean(l_fake)``; ``g_loss`` is then
  irrelevant (the minimax and non-saturating forms have the same gradient). Lipschitz control by
  ``clip_value`` [5] or ``gradient_penalty`` [4].

The GAN's noise streams and EMA generator are in :mod:`lightning_gen.nn.gan_state`.

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

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NETS = ("mlp", "dcgan")
NORMS = ("batch", "layer", "none")
OBJECTIVES = ("bce", "wasserstein")
G_LOSSES = ("minimax", "non_saturating")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {tuple(choices)}")


def _check_norm(norm: str) -> None:
    check_choice("norm", norm, NORMS)


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


def make_generator(kind: str, z_dim: int, out_shape: Sequence[int], width: int, depth: int, num_classes: int = 0,
                   norm: str = "batch") -> nn.Module:
    """An ``"mlp"`` (``depth`` hidden layers) or ``"dcgan"`` generator."""
    check_choice("generator", kind, NETS)
    if kind == "mlp":
        return MLPGenerator(z_dim, out_shape, width, depth, num_classes, norm)
    return DCGANGenerator(z_dim, out_shape, width, num_classes, norm)


def make_discriminator(kind: str, in_shape: Sequence[int], width: int, depth: int, num_classes: int = 0,
                       norm: str = "batch") -> nn.Module:
    """An ``"mlp"`` (``depth`` hidden layers) or ``"dcgan"`` discriminator."""
    check_choice("discriminator", kind, NETS)
    if kind == "mlp":
        return MLPDiscriminator(in_shape, width, depth, num_classes, norm)
    return DCGANDiscriminator(in_shape, width, num_classes, norm)


# ---- losses --------------------------------------------------------------------------------------------------
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


def all_finite(loss: Tensor, net: nn.Module) -> bool:
    """Whether ``loss`` and the gradients it produced in ``net`` are finite.

    One parameter's gradient decides, not a norm over all of them (a fifth of a small net's step): a NaN or Inf loss
    reaches every gradient, and under data-parallel training the gradients are all-reduced, so a bad loss on any rank
    makes every rank see it at the same step instead of leaving the others waiting in the next all-reduce."""
    probe = next(p.grad for p in net.parameters() if p.grad is not None).sum()
    return bool(torch.isfinite(loss) & torch.isfinite(probe))


def global_norm(tensors: Iterable[Tensor]) -> Tensor:
    """The 2-norm of several tensors taken together (of a net's gradients, say)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


def architecture_name(generator: str, discriminator: str, objective: str) -> str:
    """What a benchmark record calls a GAN: "DCGAN" (DCGAN nets, BCE), else the objective's name ("GAN", "WGAN",
    "WGAN-GP") with the nets: " (MLP)", or " (G mlp, D dcgan)" for nets of two kinds."""
    nets = f" (G {generator}, D {discriminator})" if generator != discriminator else " (MLP)" if generator == "mlp" else ""
    return "DCGAN" if (objective, nets) == ("GAN", "") else objective + nets


class Adversarial:
    """The game between a generator and a discriminator: ``objective`` and ``g_loss`` (the losses above) and the
    Lipschitz control of a Wasserstein critic, weight clipping [5] or a gradient penalty of weight
    ``gradient_penalty`` [4]. Plain functions of the two nets; the caller owns noise, backward and optimizer steps."""

    def __init__(self, objective: str = "bce", g_loss: str = "non_saturating", *, clip_value: float | None = None,
                 gradient_penalty: float = 0.0) -> None:
        check_choice("objective", objective, OBJECTIVES)
        check_choice("g_loss", g_loss, G_LOSSES)
        if clip_value is not None and clip_value <= 0:
            raise ValueError(f"clip_value must be positive (or None), got {clip_value}")
        if gradient_penalty < 0:
            raise ValueError(f"gradient_penalty must be >= 0, got {gradient_penalty}")
        if clip_value is not None and gradient_penalty > 0:
            raise ValueError("choose one Lipschitz constraint: clip_value (WGAN) or gradient_penalty (WGAN-GP), "
                             "not both")
        self.objective, self.g_loss = objective, g_loss
        self.clip_value, self.gradient_penalty = clip_value, gradient_penalty

    @property
    def name(self) -> str:
        """"GAN" (the BCE objective), "WGAN" (weight clipping or none) or "WGAN-GP" (a gradient penalty)."""
        return "GAN" if self.objective == "bce" else "WGAN-GP" if self.gradient_penalty > 0 else "WGAN"

    def score(self, scores: Tensor) -> Tensor:
        """What is reported as D(x): a probability for the BCE objective, the critic value for the Wasserstein one."""
        return torch.sigmoid(scores) if self.objective == "bce" else scores

    def discriminator_terms(self, discriminator: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None,
                            generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """``"loss"`` (gradient penalty included, its interpolation weights drawn with ``generator``),
        ``"real_score"``, ``"fake_score"`` (mean :meth:`score`, detached) and ``"gp"`` (the unweighted penalty)
        when ``gradient_penalty > 0``."""
        real_scores, fake_scores = discriminator(real, labels), discriminator(fake, labels)
        out = {"loss": discriminator_loss(real_scores, fake_scores, self.objective),
               "real_score": self.score(real_scores.detach()).mean(),
               "fake_score": self.score(fake_scores.detach()).mean()}
        if self.gradient_penalty > 0:
            out["gp"] = gradient_penalty_loss(discriminator, real, fake, labels, generator=generator)
            out["loss"] = out["loss"] + self.gradient_penalty * out["gp"]
        return out

    def generator_term(self, discriminator: nn.Module, fake: Tensor, labels: Tensor | None,
                       g_loss: str | None = None) -> Tensor:
        """The generator loss (``g_loss``, default the game's) on ``fake``. The discriminator's parameters are frozen
        while the graph is built (``requires_grad`` off, then restored), so backpropagating the loss fills only the
        generator's gradients."""
        frozen = [p for p in discriminator.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            scores = discriminator(fake, labels)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return generator_loss(scores, self.objective, g_loss or self.g_loss)

    def generator_gradient_norm(self, generator: nn.Module, discriminator: nn.Module, z: Tensor,
                                labels: Tensor | None = None, g_loss: str | None = None) -> Tensor:
        """``||grad_theta L_G||``, the norm of the generator loss's gradient w.r.t. the generator's weights, at noise
        ``z`` against ``discriminator``, for ``g_loss`` (default: the game's). Changes no weights and no ``.grad``."""
        g_loss = g_loss or self.g_loss
        check_choice("g_loss", g_loss, G_LOSSES)
        params = [p for p in generator.parameters() if p.requires_grad]
        with torch.enable_grad():
            scores = discriminator(generator(z, labels), labels)
            grads = torch.autograd.grad(generator_loss(scores, self.objective, g_loss), params)
        return global_norm(grads)

    @torch.no_grad()
    def clip_(self, discriminator: nn.Module) -> None:
        """Weight clipping [5]: clamp every weight to ``[-clip_value, clip_value]``; nothing without ``clip_value``."""
        if self.clip_value is not None:
            for p in discriminator.parameters():
                p.clamp_(-self.clip_value, self.clip_value)
