"""Up-front time estimates: on the CPU, a benchmark step expected to take over a minute is announced before it
starts, with its estimated time, measured on small chunks of the step itself after a warm-up (a fixed cost, a
per-call cost and a per-item cost, told apart), and the option that shortens it, never below what the metric
needs."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_gen.models.base import Estimate, GenerativeModule

#: A step expected to run longer than this (seconds) is announced first, with its estimated time and the option that
#: shortens it; ``$LIGHTNING_GEN_ESTIMATE_AFTER_S`` overrides (0 announces every step).
ESTIMATE_AFTER_S = 60.0
ESTIMATE_ENV = "LIGHTNING_GEN_ESTIMATE_AFTER_S"
#: A timing probe grows its chunk (1, 4, 16, ... items) until one call takes this long, so it measures work rather
#: than per-call overhead without costing more than a few seconds.
PROBE_SECONDS = 0.25
#: The shorter setting an announcement suggests is the largest round one expected to take at most this many times
#: the announcement threshold.
SUGGESTED_BUDGET = 1.5


@dataclass(frozen=True)
class Cost:
    """What a step costs, measured after a warm-up: ``once`` seconds the first call pays and no other (a lazily built
    net, standing statistics, a first kernel launch), ``per_call`` seconds every call pays whatever its size, and
    ``per_item`` seconds each item adds. Charging the first call's fixed cost per item overstated a GAN's sampling
    time about 200 times (issue 29)."""

    once: float
    per_call: float
    per_item: float

    def seconds(self, items: int, *, batch_size: int, processes: int = 1) -> float:
        """Wall seconds for ``items`` items in calls of ``batch_size``, shared by ``processes`` processes."""
        if items <= 0:
            return 0.0
        calls = math.ceil(items / (batch_size * processes))
        return self.once + calls * self.per_call + self.per_item * items / processes


def measure_cost(fn, max_items: int, repeats: int = 3) -> Cost:
    """The :class:`Cost` of ``fn(n)``: a first call of one item pays the warm-up; the chunk then grows (1, 4, 16,
    ... items, up to ``max_items``) until one call takes :data:`PROBE_SECONDS`; the line through the fastest of
    ``repeats`` calls of one item and of that chunk gives the per-call and per-item costs (the fastest: a shared
    machine only ever adds time)."""
    def timed(n: int) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            fn(n)
        return time.perf_counter() - start

    first = timed(1)
    n, large = 1, timed(1)
    while large < PROBE_SECONDS and n < max_items:
        n = min(max_items, 4 * n)
        large = timed(n)
    small = min(timed(1) for _ in range(repeats))
    if n > 1 and large < PROBE_SECONDS:  # repeat the chunk only where it is cheap
        large = min([large, *(timed(n) for _ in range(repeats - 1))])
    per_item = max(0.0, (large - small) / (n - 1)) if n > 1 else small
    per_call = max(0.0, small - per_item) if n > 1 else 0.0
    return Cost(once=max(0.0, first - small), per_call=per_call, per_item=per_item)


def fewest_samples(feature_dim: int) -> int:
    """The fewest samples an announcement suggests: the smallest 1-2-5 round number above the extractor's feature
    dimension, as FID needs more samples than features (fewer give a singular covariance and a biased FID)."""
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * 10 ** exponent > feature_dim:
                return mantissa * 10 ** exponent
        exponent += 1


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return "< 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.2g} min" if seconds < 600 else f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fitting(value: int, cost_per_unit: float, budget: float, least: int = 1) -> int:
    """The largest 1-2-5 round number up to ``value`` whose cost stays within ``budget`` (at least ``least``)."""
    best = least
    for exponent in range(int(math.log10(max(value, 1))) + 1):
        for mantissa in (1, 2, 5):
            candidate = mantissa * 10 ** exponent
            if candidate <= value and candidate * cost_per_unit <= budget:
                best = max(best, candidate)
    return best


def step_estimates(model: GenerativeModule, test_images: Tensor, *, nll: bool, num_samples: int, extractor,
                   batch_size: int, estimate: Estimate, processes: int, after_s: float,
                   feature_dim: int = 0) -> list[str]:
    """One line for each step of the benchmark expected to take longer than ``after_s`` seconds on this CPU: its
    estimated time, from a timed small chunk of the step itself after a warm-up, and the option that shortens it.
    The shorter ``--num-samples`` suggested is never at or below ``feature_dim`` (the extractor's): that would bias
    the FID."""
    lines = []
    n_test = int(test_images.shape[0])
    if nll:
        labels = torch.zeros(batch_size, dtype=torch.long) if model.conditional else None
        cost = measure_cost(
            lambda n: model.log_prob(test_images[:n], None if labels is None else labels[:n], estimate=estimate),
            min(batch_size, n_test))
        total = cost.seconds(n_test, batch_size=batch_size, processes=processes)
        if total > after_s:
            k = model.resolve_estimate(estimate).k
            if model.likelihood_kind in ("importance-weighted", "ais") and k is not None:
                shorter = _fitting(k, total / k, SUGGESTED_BUDGET * after_s)
                lines.append(f"importance-weighted NLL: k={k:,} × {n_test:,} images ≈ {format_duration(total)} on "
                             f"this CPU; --iw-samples {shorter:,} takes ≈ {format_duration(total * shorter / k)}")
            else:
                lines.append(f"test NLL: {n_test:,} images ≈ {format_duration(total)} on this CPU; --no-nll skips it")
    if num_samples:
        generator = torch.Generator().manual_seed(estimate.seed or 0)
        labels = torch.arange(batch_size) % model.num_classes if model.conditional else None
        chunk = min(batch_size, num_samples)
        sampling = measure_cost(
            lambda n: model.sample(n, generator=generator, labels=None if labels is None else labels[:n]), chunk)
        blank = torch.zeros(chunk, *model.image_shape, dtype=torch.uint8)
        features = measure_cost(lambda n: extractor(blank[:n]), chunk)

        def seconds(n: int) -> float:
            return sum(c.seconds(n, batch_size=batch_size, processes=processes) for c in (sampling, features))

        total = seconds(num_samples)
        if total > after_s:
            least = fewest_samples(feature_dim)
            budget = SUGGESTED_BUDGET * after_s
            shorter = max((n for n in _round_numbers(num_samples) if n >= least and seconds(n) <= budget),
                          default=least)
            line = (f"samples: {num_samples:,} × ({type(model).__name__}.sample {sampling.per_item:.2g} s + features "
                    f"{features.per_item:.2g} s) + {sampling.once + features.once:.2g} s once ≈ "
                    f"{format_duration(total)} on this CPU")
            if shorter < num_samples:
                line += f"; --num-samples {shorter:,} takes ≈ {format_duration(seconds(shorter))}"
                if feature_dim and seconds(shorter) > budget:
                    line += f" (fewer than {least:,} would bias the FID: the features have {feature_dim} dimensions)"
            lines.append(line)
        reference = features.seconds(n_test, batch_size=batch_size)
        if reference > after_s:
            lines.append(f"reference features of the {n_test:,} test images ≈ {format_duration(reference)} on this "
                         "CPU, unless an earlier run cached them (--stats-cache)")
    return lines


def _round_numbers(up_to: int) -> list[int]:
    """The 1-2-5 round numbers up to ``up_to``, and ``up_to`` itself."""
    found = {up_to}
    for exponent in range(int(math.log10(max(up_to, 1))) + 1):
        found |= {m * 10 ** exponent for m in (1, 2, 5) if m * 10 ** exponent <= up_to}
    return sorted(found)
