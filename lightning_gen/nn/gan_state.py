"""The state of GAN training that is not a net: counter-based noise streams and an EMA generator with standing
BatchNorm statistics; plain torch, used by :class:`lightning_gen.models.gan.GAN`.

[1] Brock, Donahue, Simonyan 2018, arXiv 1809.11096 (BigGAN: standing statistics; computed here as PyTorch-StudioGAN
    does).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_gen.seeds import derive_seed

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

# The GAN's kinds of draw, each its own stream of seeds: discriminator steps, generator steps, evaluation, and the
# EMA generator's standing statistics.
D_STREAM, G_STREAM, EVAL_STREAM, STANDING_STREAM = 0, 1, 2, 3


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

    Its BatchNorm statistics are standing statistics [1] of its own weights (:meth:`refresh`), not copies of the live
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

    def write_buffers(self, state: dict[str, Tensor], prefix: str) -> None:
        """Copy :attr:`net`'s buffers into ``state``, a state dict collected before the last :meth:`refresh`, where
        it holds them under ``prefix``."""
        for name, buf in self.net.named_buffers():
            if prefix + name in state:
                state[prefix + name] = buf.detach().clone().to(state[prefix + name].device)

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
