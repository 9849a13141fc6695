"""What an FID or a KID of a given size means: scores of degraded copies of real images against the test split.

The same protocol the benchmark applies to samples (features of ``n`` images against every test image, FID in
float64, KID over 100 subsets of ``min(1000, n, n_test)``), applied to real training images and to copies of them
with one known defect each (:data:`DEGRADATIONS`). A model's FID then reads against these: below "real train
images" cannot be told from real data at this sample count; at "noise" its samples are about as far off as real
digits with visible grain. KID is given on the raw features (torch-fidelity's kernel) and on the features divided by
the extractor's fixed ``kid_feature_scale`` (what the benchmark reports), so the two can be compared.

Degradations (uint8 images in 0..255):

- ``noise``: ``+ N(0, 25^2)`` in pixel units, rounded and clipped to 0..255;
- ``binarized``: 255 where the pixel is above 127, else 0;
- ``shifted``: moved 2 pixels to the right, zero fill;
- ``blur``: 3x3 box filter (mean over the pixels of the window inside the image), rounded;
- ``classes 0-4`` / ``class 1``: unchanged images of those classes only (mode dropping).

``scripts/calibrate_fid.py`` runs it on the shipped extractors and prints the README's table.

The FID spread (:func:`bootstrap_ratio`, :func:`bootstrap_table`; ``scripts/calibrate_fid.py --bootstrap``): the std
of :func:`~lightning_gen.metrics.functional.fid_bootstrap` over the std of the FID across independent draws, on
synthetic Gaussian features of ``D`` dimensions: reference statistics N(0, I) held fixed, as the cached test split's
are, and ``N`` generated features from N(mu, 1.5^2 I), ``|mu| = 1`` (an imperfect model). The ratio grows as ``N / D``
falls; :data:`~lightning_gen.metrics.functional.BOOTSTRAP_SAMPLES_PER_DIM` is where it leaves 0.8-1.25.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_gen.metrics.functional import (
    compute_features,
    feature_stats,
    fid_bootstrap,
    fid_from_features,
    fid_from_stats,
    kid,
)

__all__ = ["BOOTSTRAP_SETTINGS", "DEGRADATIONS", "NOISE_SIGMA", "CalibrationRow", "bootstrap_ratio", "bootstrap_table",
           "calibration_rows", "degrade", "markdown_table", "signal_to_noise"]

#: Standard deviation of the added noise, in 0..255 pixel units.
NOISE_SIGMA = 25.0
SHIFT = 2


def _noise(x: Tensor, generator: torch.Generator) -> Tensor:
    noise = torch.randn(x.shape, generator=generator) * NOISE_SIGMA
    return (x.float() + noise).round().clamp(0, 255).to(torch.uint8)


def _binarize(x: Tensor, generator: torch.Generator) -> Tensor:
    return (x > 127).to(torch.uint8) * 255


def _shift(x: Tensor, generator: torch.Generator) -> Tensor:
    # (N, C, H, W): pad SHIFT columns on the left, keep the first W
    return F.pad(x, (SHIFT, 0))[..., : x.shape[-1]]


def _blur(x: Tensor, generator: torch.Generator) -> Tensor:
    blurred = F.avg_pool2d(x.float(), 3, stride=1, padding=1, count_include_pad=False)
    return blurred.round().clamp(0, 255).to(torch.uint8)


#: name -> (what the table calls it, image transform or None, classes kept or None)
DEGRADATIONS: dict[str, tuple[str, Callable | None, tuple[int, ...] | None]] = {
    "real": ("real train images", None, None),
    "noise": (f"+ N(0, {NOISE_SIGMA:g}²) noise, σ in 0..255 pixel units, clipped", _noise, None),
    "binarized": ("binarized at 127", _binarize, None),
    "shifted": (f"shifted {SHIFT} px right", _shift, None),
    "blur": ("3x3 box blur", _blur, None),
    "classes04": ("classes 0–4 only", None, (0, 1, 2, 3, 4)),
    "class1": ("class 1 only", None, (1,)),
}


def degrade(images: Tensor, name: str, generator: torch.Generator | None = None) -> Tensor:
    """``images`` (uint8 ``(N, C, H, W)``) with the image defect ``name`` (:data:`DEGRADATIONS`; the class subsets
    leave images unchanged: choose the images with :func:`calibration_rows`)."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; expected one of {', '.join(DEGRADATIONS)}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    transform = DEGRADATIONS[name][1]
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return images if transform is None else transform(images, generator)


@dataclass
class CalibrationRow:
    """One row: a degradation, the images scored, and its FID and KIDs (one value per draw; the real-image row
    has one per disjoint draw of training images)."""

    name: str
    label: str
    num_images: int
    fid: list[float] = field(default_factory=list)
    kid_raw: list[float] = field(default_factory=list)
    kid_scaled: list[float] = field(default_factory=list)


def calibration_rows(extractor, train: tuple[Tensor, Tensor], test: Tensor, *, num_images: int = 10_000,
                     real_draws: int = 3, kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0,
                     batch_size: int = 500, names: tuple[str, ...] = tuple(DEGRADATIONS)) -> list[CalibrationRow]:
    """FID and KID against the ``test`` images of ``num_images`` training images (``train`` = (images, labels)),
    as they are and degraded (:data:`DEGRADATIONS`).

    The real row is scored on ``real_draws`` disjoint draws where the training split holds that many (one draw of
    all of it where it holds fewer than ``num_images``); the image defects are applied to the first draw, so a row
    differs from the first real value by its defect alone. A class subset takes up to ``num_images`` training
    images of those classes (all of them where there are fewer; the table says how many).
    """
    x, y = train
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=generator)
    n = min(num_images, x.shape[0])
    ref, _ = compute_features(extractor, test, batch_size=batch_size)
    scale = extractor.kid_feature_scale

    def score(row: CalibrationRow, images: Tensor) -> None:
        features, _ = compute_features(extractor, images, batch_size=batch_size)
        size = min(kid_subset_size, features.shape[0], ref.shape[0])
        row.fid.append(fid_from_features(features, ref))
        row.kid_raw.append(kid(features, ref, kid_subsets, size, seed)["kid_mean"])
        if scale is not None:
            row.kid_scaled.append(kid(features, ref, kid_subsets, size, seed, feature_scale=scale)["kid_mean"])

    rows = []
    first = x[perm[:n]]
    for name in names:
        label, transform, classes = DEGRADATIONS[name]
        if classes is not None:
            keep = perm[torch.isin(y[perm], torch.tensor(classes))][:num_images]
            row = CalibrationRow(name, label, int(keep.shape[0]))
            score(row, x[keep])
        elif name == "real":
            row = CalibrationRow(name, label, n)
            for d in range(max(1, min(real_draws, x.shape[0] // n))):
                score(row, x[perm[d * n:(d + 1) * n]])
        else:
            row = CalibrationRow(name, label, n)
            score(row, degrade(first, name, generator))
        rows.append(row)
    return rows


def _span(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{format(lo, fmt)}–{format(hi, fmt)}"


def markdown_table(rows: list[CalibrationRow], *, title: str) -> str:
    """The rows as the README's markdown table (KID ×10³, a range over the real draws)."""
    lines = [f"| {title} | images | FID | KID ×10³, scaled features | KID ×10³, raw features |",
             "|---|---|---|---|---|"]
    for r in rows:
        scaled, raw = [1e3 * v for v in r.kid_scaled], [1e3 * v for v in r.kid_raw]
        lines.append(f"| {r.label} | {r.num_images:,} | {_span(r.fid, ',.1f')} | {_span(scaled, ',.2f')} | "
                     f"{_span(raw, ',.0f')} |")
    return "\n".join(lines)


def signal_to_noise(rows: list[CalibrationRow], key: str) -> float:
    """Smallest degraded value over the spread of the real draws (max - min, at least a tenth of the largest real
    value): how many times the mildest defect stands above the draw-to-draw noise of real images."""
    by = {r.name: getattr(r, key) for r in rows}
    real = by.get("real") or []
    degraded = [min(v) for name, v in by.items() if name != "real" and v]
    if not real or not degraded:
        return float("nan")
    spread = max(max(real) - min(real), 0.1 * max(abs(v) for v in real), 1e-12)
    return float(np.min(degraded) - max(real)) / spread


# ---- the FID bootstrap against independent draws ------------------------------------------------------------------
#: (D, N) of issue 25's table: the bootstrap's std over the std across draws there was 1.10, 1.06, 1.33, 2.1, 2.8.
BOOTSTRAP_SETTINGS = ((16, 1000), (128, 5000), (128, 1000), (128, 300), (256, 312))


def bootstrap_ratio(dim: int, n: int, *, draws: int = 100, bootstrap_draws: int = 5, resamples: int = 50,
                    seed: int = 0) -> float:
    """The mean bootstrap std (``resamples`` resamples of each of the first ``bootstrap_draws`` draws) over the std
    of the FID across ``draws`` independent draws of ``n`` synthetic Gaussian features of ``dim`` dimensions (see
    the module docstring): 1 where the bootstrap's spread is honest. Noise of the ratio: about
    ``1 / sqrt(2 draws)`` relative."""
    rng = np.random.RandomState(seed)
    mu_ref, sigma_ref = np.zeros(dim), np.eye(dim)
    mu = np.full(dim, 1 / np.sqrt(dim))
    fids, stds = np.empty(draws), []
    for d in range(draws):
        features = mu + 1.5 * rng.standard_normal((n, dim))
        fids[d] = fid_from_stats(*feature_stats(features), mu_ref, sigma_ref)
        if d < bootstrap_draws:
            stds.append(fid_bootstrap(features, mu_ref, sigma_ref, resamples, seed=d).std(ddof=1))
    return float(np.mean(stds) / fids.std(ddof=1))


def bootstrap_table(settings=BOOTSTRAP_SETTINGS, **kwargs) -> tuple[str, dict[tuple[int, int], float]]:
    """:func:`bootstrap_ratio` at each ``(D, N)`` of ``settings``: a markdown table and the ratios."""
    ratios = {(dim, n): bootstrap_ratio(dim, n, **kwargs) for dim, n in settings}
    lines = ["| D | N | N / D | bootstrap std / std across draws |", "|---|---|---|---|"]
    lines += [f"| {dim} | {n:,} | {n / dim:.1f} | {r:.2f} |" for (dim, n), r in ratios.items()]
    return "\n".join(lines), ratios
