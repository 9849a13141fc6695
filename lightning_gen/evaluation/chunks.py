"""Seeded sample chunks: what every evaluation of samples shares (the benchmark's :class:`BenchmarkModule` and the
training-time :class:`~lightning_gen.callbacks.SampleMetrics`). Chunk ``c`` of draw ``r`` is drawn from a generator
seeded by ``(seed, c, r)``, chunks go round-robin to the ranks, and the gathered rows are put back in sample order,
so the union of samples does not depend on the number of processes."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_gen.metrics.features import FeatureExtractor
from lightning_gen.models.base import GenerativeModule, from_levels


class BenchmarkError(ValueError):
    """Bad input to the benchmark: a model, data set or option it cannot evaluate, with the reason."""


def chunk_seed(seed: int, chunk: int, draw: int = 0) -> int:
    """Seed of sample chunk ``chunk`` of draw ``draw``: independent streams per (seed, chunk, draw), whatever the
    number of processes; draw 0 keeps the streams of a single draw."""
    entropy = [int(seed), int(chunk)] + ([int(draw)] if draw else [])  # [s, c] and [s, c, 0] would collide
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def check_samples(images: Any, n: int, image_shape: tuple[int, ...], num_levels: int, *,
                  source: str = "sample") -> Tensor:
    """Reject what ``model.sample(n)`` returned unless it is uint8 ``(n, C, H, W)`` on the data's grey levels."""
    expected = f"uint8 images of shape ({n}, {', '.join(map(str, image_shape))}) in 0..255"
    if not isinstance(images, Tensor):
        raise BenchmarkError(f"{source} returned {type(images).__name__}; expected a tensor of {expected}")
    if images.dtype != torch.uint8:
        hint = (" (floats: convert with (x * 255).round().clamp(0, 255).to(torch.uint8))"
                if images.is_floating_point() else " (level indices? convert with from_levels)")
        raise BenchmarkError(f"{source} returned dtype {images.dtype}; expected {expected}{hint}")
    if tuple(images.shape) != (n, *image_shape):
        raise BenchmarkError(f"{source} returned shape {tuple(images.shape)}; expected {expected}")
    if num_levels < 256:
        allowed = from_levels(torch.arange(num_levels), num_levels)
        valid = torch.zeros(256, dtype=torch.bool, device=images.device)
        valid[allowed.long().to(images.device)] = True
        if not bool(valid[images.long()].all()):
            bad = images[~valid[images.long()]].unique()[:5].tolist()
            raise BenchmarkError(
                f"{source} returned values {bad} outside the {num_levels} grey levels of the data "
                f"({allowed.tolist() if num_levels <= 8 else f'{num_levels} levels'} on the 0..255 scale)"
                + ("; binary images must be 0/255, not 0/1 (convert with from_levels)" if num_levels == 2 else ""))
    return images


def chunks_of_rank(num_chunks: int, rank: int, world: int) -> list[int]:
    """The sample chunks process ``rank`` of ``world`` draws: round-robin, so the samples themselves do not depend
    on the number of processes."""
    return list(range(num_chunks))[rank::world]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def draw_chunk(model: GenerativeModule, chunk: int, *, num_samples: int, chunk_size: int, seed: int, draw: int = 0,
               num_levels: int) -> tuple[Tensor, Tensor, float]:
    """Chunk ``chunk`` of draw ``draw`` of ``num_samples`` seeded samples: ``(index, images, seconds)``, the samples'
    indices within the draw ``(n,)``, the checked uint8 images ``(n, C, H, W)`` and the wall time of ``sample``.

    The generator (and the global one, for samplers that also draw from it) is seeded with :func:`chunk_seed`; a
    class-conditional model gets labels ``index % num_classes``."""
    device = model.device
    start = chunk * chunk_size
    n = min(chunk_size, num_samples - start)
    index = torch.arange(start, start + n, device=device)
    labels = index % model.num_classes if model.conditional else None
    seed = chunk_seed(seed, chunk, draw)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # for samplers that also draw from the global generator
        _sync(device)
        t0 = time.perf_counter()
        images = model.sample(n, generator=generator, labels=labels)
        _sync(device)
        seconds = time.perf_counter() - t0
    images = check_samples(images, n, model.image_shape, num_levels, source=f"{type(model).__name__}.sample({n})")
    return index, images, seconds


def gather_rows(parts: list[Tensor], *shape: int, dtype: torch.dtype, device) -> Tensor:
    """This process's ``parts`` ``(n_i, *shape)`` concatenated, then concatenated over all processes (row counts may
    differ, zero included). A collective: every process calls it."""
    local = torch.cat(parts).to(device) if parts else torch.zeros(0, *shape, dtype=dtype, device=device)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
            or torch.distributed.get_world_size() == 1:
        return local
    from torchmetrics.utilities.distributed import gather_all_tensors

    return torch.cat(gather_all_tensors(local))


class ChunkFeatures:
    """The features (and logits) of this process's sample chunks under ``extractor``; :meth:`gather` puts every
    process's together in sample order."""

    def __init__(self, extractor: FeatureExtractor, image_shape: tuple[int, ...], device) -> None:
        self.extractor, self.device = extractor, device
        # Shapes of the extractor's output, for a process that draws no chunk (fewer chunks than processes).
        blank = extractor(torch.zeros(1, *image_shape, dtype=torch.uint8, device=device))
        self.feature_dim = blank.features.shape[1]
        self.num_logits = None if blank.logits is None else blank.logits.shape[1]
        self.index: list[Tensor] = []
        self.features: list[Tensor] = []
        self.logits: list[Tensor] = []

    def add(self, index: Tensor, images: Tensor) -> None:
        """Features of uint8 ``images`` whose sample indices (over all draws) are ``index``."""
        out = self.extractor(images.to(self.device))
        self.index.append(index)
        self.features.append(out.features.double())
        if out.logits is not None:
            self.logits.append(out.logits.double())

    def gather(self, total: int) -> tuple[Tensor, Tensor | None]:
        """Every process's features and logits in sample order (a collective); they must be samples 0..total-1."""
        index = gather_rows(self.index, dtype=torch.long, device=self.device)
        features = gather_rows(self.features, self.feature_dim, dtype=torch.float64, device=self.device)
        logits = (None if self.num_logits is None else
                  gather_rows(self.logits, self.num_logits, dtype=torch.float64, device=self.device))
        order = in_sample_order(index, total)
        return features[order], None if logits is None else logits[order]


def in_sample_order(index: Tensor, total: int) -> Tensor:
    """The permutation that sorts gathered rows by sample index (rank order must not matter: IS splits and KID
    subsets follow the sample order), after checking that the indices are exactly ``0..total-1``."""
    order = index.argsort()
    if not torch.equal(index[order].cpu(), torch.arange(total)):
        raise RuntimeError(f"gathered sample indices are not 0..{total - 1}: a chunk was lost or repeated")
    return order
