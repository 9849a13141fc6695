"""Toy 2-D data: the ring of Gaussians, the standard test of mode collapse for GANs.

[1] Metz et al. 2016, arXiv 1611.02163 (Unrolled GAN: 8 Gaussians on a ring of radius 2, std 0.02).
[2] Srivastava et al. 2017, arXiv 1705.07761 (VEEGAN: "high-quality" samples lie within 3 std of a mode).
[3] Lin et al. 2018, arXiv 1712.04086 (PacGAN: a mode is lost when it receives fewer than 1/5 of its expected number
    of samples).

How 2-D points fit the image interface. The data module declares ``image_shape = (1, 1, 2)``: a "1x2 image" whose
two values are the point's coordinates, so a model and the CLI see the usual ``(image_shape, num_levels,
num_classes)``. Unlike every other data module, its batches carry **float32** points, not uint8 pixels: ``x`` is
``(B, 1, 1, 2)`` holding ``point / extent``, so the square ``[-extent, extent]^2`` maps onto [-1, 1]^2, the space a
GAN's tanh output lives in, and ``y`` is the index of the mode the point was drawn from (``num_classes =
num_modes``, so class-conditional models work). :class:`~lightning_gen.models.gan.GAN` takes floating-point data
as already in its [-1, 1] space. ``GAN.sample`` still returns uint8 ``(N, 1, 1, 2)`` (the base contract): the
coordinates rounded to 256 levels over ``[-extent, extent]`` (a step of about 0.02 for ``extent=2.5``, the size of
``std``), which :meth:`RingOfGaussians.to_points` turns back into points. For measuring mode coverage use the
unrounded ``GAN.generate(z) * extent``. Likelihood models reject the float batches (``to_levels`` raises a
``TypeError``), and image metrics (FID) do not apply.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_gen.data.base import ImageDataModule


class InMemoryPoints(Dataset):
    """Float points ``(N, 1, 1, 2)`` and int64 labels in memory; whole batches with one index operation."""

    def __init__(self, points: Tensor, labels: Tensor) -> None:
        if not points.is_floating_point() or points.dim() != 4:
            raise ValueError(f"points must be float (N, 1, 1, 2), got {points.dtype} {tuple(points.shape)}")
        self.points, self.labels = points, labels.long()

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, i: int):
        return self.points[i], self.labels[i]

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.points[idx], self.labels[idx]


def ring_centers(num_modes: int = 8, radius: float = 2.0) -> Tensor:
    """``(num_modes, 2)`` points equally spaced on a circle, the first at angle 0."""
    angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
    return torch.stack([radius * angles.cos(), radius * angles.sin()], dim=1).float()


def mode_statistics(points: Tensor, centers: Tensor, std: float, *, num_std: float = 3.0,
                    min_share: float = 0.2) -> dict[str, float]:
    """How well 2-D samples ``(N, 2)`` cover a mixture of isotropic Gaussians with ``centers (K, 2)`` and ``std``.

    A sample is *high quality* if it lies within ``num_std * std`` of its nearest center [2]. A mode is *covered*
    if at least ``min_share`` of its fair share (``N / K``) of samples are high-quality samples near it [3], so a
    mode that catches a handful of strays does not count.

    Returns ``modes_covered`` (count), ``high_quality`` (fraction of all samples), ``worst_mode_share`` and
    ``best_mode_share`` (the smallest / largest share of high-quality samples at one mode, relative to the fair
    share ``1 / K``: 1.0 everywhere is a perfectly balanced fit).
    """
    points, centers = points.reshape(-1, 2).float(), centers.float().to(points.device)
    dist = torch.cdist(points, centers)  # (N, K)
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= num_std * std
    k = centers.shape[0]
    counts = torch.bincount(nearest[good], minlength=k).float()
    share = counts * k / max(points.shape[0], 1)  # 1.0 = the fair share
    return {
        "modes_covered": float((share >= min_share).sum()),
        "high_quality": float(good.float().mean()),
        "worst_mode_share": float(share.min()),
        "best_mode_share": float(share.max()),
    }


class RingOfGaussians(ImageDataModule):
    """A mixture of ``num_modes`` isotropic Gaussians (std ``std``) with equal weights, centered on a circle of
    ``radius`` [1]. Batches are float32 ``(B, 1, 1, 2)`` points divided by ``extent`` and the mode index as label;
    see the module docstring for how this fits the image interface.

    Args:
        num_modes, radius, std: the mixture (defaults: 8 modes, radius 2, std 0.02, as in [1]).
        extent: half-side of the square mapped onto [-1, 1]; must exceed ``radius`` by several ``std``.
        num_train, num_val, num_test: fixed samples per split, drawn once from ``split_seed`` (one independent
            stream per split), so every run and every DDP rank sees the same data.
        root: unused (the data is generated), accepted so ``--data.root`` works as for every data module.
    """

    image_shape = (1, 1, 2)
    num_levels = 256
    has_val_split = True

    def __init__(self, root: str | None = None, batch_size: int = 256, *, num_modes: int = 8, radius: float = 2.0,
                 std: float = 0.02, extent: float = 2.5, num_train: int = 50_000, num_val: int = 5_000,
                 num_test: int = 5_000, num_workers: int = 0, pin_memory: bool = False, split_seed: int = 0) -> None:
        super().__init__(root, batch_size, num_workers=num_workers, pin_memory=pin_memory, val_size=num_val,
                         split_seed=split_seed)
        if num_modes < 1 or radius <= 0 or std <= 0:
            raise ValueError(f"need num_modes >= 1, radius > 0, std > 0; got {num_modes}, {radius}, {std}")
        if extent < radius + 3 * std:
            raise ValueError(f"extent {extent} must exceed radius + 3 std = {radius + 3 * std} so the data fits in it")
        if min(num_train, num_val, num_test) < 1:
            raise ValueError("num_train, num_val and num_test must be positive")
        self.num_modes, self.radius, self.std, self.extent = num_modes, radius, std, extent
        self.num_classes = num_modes
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}

    @property
    def dataset_id(self) -> str:
        """``ring-<num_modes>modes-r<radius>-std<std>``: the mixture. ``extent`` only scales the points into the
        model's space and mode statistics are measured in data coordinates; the split sizes and ``split_seed``
        draw fresh points from the same mixture, with no pool that train and test could share."""
        return f"ring-{self.num_modes}modes-r{self.radius:g}-std{self.std:g}"

    def centers(self) -> Tensor:
        """The ``(num_modes, 2)`` mode centers, in data coordinates."""
        return ring_centers(self.num_modes, self.radius)

    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` points in data coordinates ``(n, 2)`` and their mode indices ``(n,)``."""
        modes = torch.randint(self.num_modes, (n,), generator=generator)
        points = self.centers()[modes] + self.std * torch.randn(n, 2, generator=generator)
        return points, modes

    def to_points(self, x: Tensor) -> Tensor:
        """Batches or samples (float in [-1, 1], or the uint8 that ``sample`` returns) -> points ``(N, 2)``."""
        if x.dtype == torch.uint8:
            x = x.float() / 127.5 - 1.0
        return x.reshape(-1, 2).float() * self.extent

    def mode_statistics(self, points: Tensor, **kwargs) -> dict[str, float]:
        """:func:`mode_statistics` of points ``(N, 2)`` in data coordinates for this mixture."""
        return mode_statistics(points, self.centers(), self.std, **kwargs)

    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        out = {}
        for i, (split, n) in enumerate(self.sizes.items()):
            points, modes = self.draw(n, torch.Generator().manual_seed(self.split_seed * 3 + i))
            out[split] = (points / self.extent).view(n, 1, 1, 2), modes  # (n, 2) -> (n, 1, 1, 2) in [-1, 1]
        return out

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = {split: InMemoryPoints(x, y) for split, (x, y) in self.splits().items()}
