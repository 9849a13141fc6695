"""Up-front time estimates: on the CPU, a benchmark step expected to take over a minute is announced before it
starts, with its estimated time, measured on a small chunk of the step itself, and the option that shortens it."""

from __future__ import annotations

import math
import time

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


def seconds_per_item(fn, max_items: int) -> float:
    """Wall seconds per item of ``fn(n)``, from the first chunk ``n`` (1, 4, 16, ... up to ``max_items``) whose call
    takes :data:`PROBE_SECONDS`; the smaller calls before it pay the warm-up."""
    n = 1
    while True:
        start = time.perf_counter()
        with torch.no_grad():
            fn(n)
        seconds = time.perf_counter() - start
        if seconds >= PROBE_SECONDS or n >= max_items:
            return seconds / n
        n = min(max_items, 4 * n)


def format_duration(seconds: float) -> str:
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
                   batch_size: int, estimate: Estimate, processes: int, after_s: float) -> list[str]:
    """One line for each step of the benchmark expected to take longer than ``after_s`` seconds on this CPU: its
    estimated time, from a timed small chunk of the step itself, and the option that shortens it."""
    lines = []
    n_test = int(test_images.shape[0])
    if nll:
        labels = torch.zeros(batch_size, dtype=torch.long) if model.conditional else None
        per_image = seconds_per_item(
            lambda n: model.log_prob(test_images[:n], None if labels is None else labels[:n], estimate=estimate),
            min(batch_size, n_test))
        total = per_image * n_test / processes
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
        per_sample = seconds_per_item(
            lambda n: model.sample(n, generator=generator, labels=None if labels is None else labels[:n]),
            min(batch_size, num_samples))
        blank = torch.zeros(min(batch_size, num_samples), *model.image_shape, dtype=torch.uint8)
        per_feature = seconds_per_item(lambda n: extractor(blank[:n]), blank.shape[0])
        per_image = per_sample + per_feature
        total = per_image * num_samples / processes
        if total > after_s:
            shorter = _fitting(num_samples, per_image / processes, SUGGESTED_BUDGET * after_s, least=2)
            lines.append(f"samples: {num_samples:,} × ({type(model).__name__}.sample {per_sample:.2g} s + features "
                         f"{per_feature:.2g} s) ≈ {format_duration(total)} on this CPU; --num-samples {shorter:,} "
                         f"takes ≈ {format_duration(per_image * shorter / processes)}")
        reference = per_feature * n_test
        if reference > after_s:
            lines.append(f"reference features of the {n_test:,} test images ≈ {format_duration(reference)} on this "
                         "CPU, unless an earlier run cached them (--stats-cache)")
    return lines
