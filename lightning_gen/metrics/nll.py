"""Evaluation means over every image exactly once, on any number of processes: the test NLL of the models' test
step and of the benchmark, and any other per-image figure (a VAE's ELBO terms).

A process adds its share of the images batch by batch to :class:`ImageSums`: float64 sums of each per-image value,
of its square, and the image count. :meth:`ImageSums.result` all-reduces them with the caller's ``reduce_sum`` and
divides: the mean over all images (not a mean of per-process means) and its standard error over the images,
``std(value, ddof=1) / sqrt(n)``, which says how much the mean would move with another sample of test images, not how
much it differs between runs on the same images.

A ``DistributedSampler`` without ``drop_last`` (what Lightning puts under DDP) repeats the first indices so that every
process gets the same count; :func:`unpadded_length` says how many of a loader's images are real, and
:meth:`ImageSums.start` leaves the rest out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler


def unpadded_length(loader) -> int | None:
    """How many of this process's images from ``loader`` are real, not a ``DistributedSampler``'s padding (None:
    all of them). Process ``r`` of ``W`` gets positions ``r, r + W, ...`` of the padded index list, so its repeats
    are the tail of its stream beyond ``len(range(r, len(dataset), W))``."""
    sampler = loader.sampler if isinstance(loader, DataLoader) else None
    if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
        return None
    return len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))


class ImageSums:
    """float64 sums of per-image values, of their squares, and the image count, over one process's share."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.squares: dict[str, Tensor] = {}
        self.count = 0
        self._seen, self._real = 0, None

    def start(self, real: int | None = None) -> None:
        """Begin a loader of which only the first ``real`` images count (None: all; see :func:`unpadded_length`)."""
        self._seen, self._real = 0, real

    def add(self, values: Mapping[str, Tensor]) -> None:
        """One batch's per-image ``values``, each ``(B,)``, every name in every call."""
        n = next(iter(values.values())).shape[0]
        keep = n if self._real is None else max(0, min(n, self._real - self._seen))
        self._seen += n
        self.count += keep
        for name, value in values.items():
            if value.shape != (n,):
                raise ValueError(f"{name}: expected one value per image, shape ({n},), got {tuple(value.shape)}")
            kept = value[:keep].detach().double()
            total, square = kept.sum(), kept.square().sum()
            self.sums[name] = self.sums[name] + total if name in self.sums else total
            self.squares[name] = self.squares[name] + square if name in self.squares else square

    def result(self, names: Sequence[str], *, device=None,
               reduce_sum: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
        """``{name: mean, name_se: standard error}`` for each of ``names`` and ``count``, float64 over the images
        of every process: ``reduce_sum`` (e.g. a strategy's all-reduce; None for one process) sums the count and the
        sums once, then they are divided. Every process calls it (one that saw no batch adds zeros)."""
        zero = torch.zeros((), dtype=torch.float64, device=device)
        totals = torch.stack([torch.tensor(float(self.count), dtype=torch.float64, device=device),
                              *(self.sums.get(name, zero).to(device) for name in names),
                              *(self.squares.get(name, zero).to(device) for name in names)])
        if reduce_sum is not None:
            totals = reduce_sum(totals)
        n, sums, squares = totals[0], totals[1:len(names) + 1], totals[len(names) + 1:]
        out = {"count": n}
        for name, total, square in zip(names, sums, squares):
            mean = total / n
            var = ((square - n * mean * mean) / (n - 1)).clamp(min=0) if n > 1 else torch.full_like(mean, math.nan)
            out[name], out[f"{name}_se"] = mean, (var / n).sqrt()
        return out
