"""FID, Inception Score, KID, precision/recall and density/coverage as pure functions of features, in float64.

- FID [1]: Frechet distance between Gaussians fitted to two feature sets,
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``. The matrix square root and its handling of near-singular
  covariances and of round-off imaginary parts follow pytorch-fid's ``calculate_frechet_distance``.
- IS [2]: ``exp(E_x KL(p(y|x) || p(y)))`` over ``splits`` chunks of the samples, mean and std over chunks, as in
  torch-fidelity (float64, samples shuffled by a seeded permutation first so that samples drawn class by class
  do not give one class per chunk).
- KID [3]: unbiased MMD^2 with the cubic polynomial kernel ``(x.y / D + 1)^3``, averaged over random subsets,
  as in torch-fidelity. The kernel assumes ``x.y / D`` of order 1, as for Inception pool3 features; the project's
  digit classifiers have feature entries several times larger (mean ``|x|^2 / D`` of 6 and 15), which makes the
  kernel a pure cubic of huge values, so their features are divided by a fixed scale first (``feature_scale``,
  the RMS feature entry on the classifier's training split; README, "Reading FID and KID").
- FID needs more samples than feature dimensions (:func:`warn_if_too_few_samples`, the one check every path uses).

- FID spread [1]: :func:`fid_bootstrap` recomputes the FID on resamples (with replacement) of the generated
  features against fixed reference statistics, using ``tr (S1 S2)^(1/2) = sum sqrt(eig(R S1 R))``, ``R = S2^(1/2)``
  (one eigendecomposition of a symmetric matrix per resample instead of a general matrix square root). Its standard
  deviation is the std of the FID across independent draws of ``N`` samples only when ``N`` far outnumbers the
  feature dimensions ``D``: on synthetic Gaussians (:func:`~lightning_gen.metrics.calibration.bootstrap_ratio`) it is
  within 0.8-1.25x of it for ``N >= 40 D`` (:data:`BOOTSTRAP_SAMPLES_PER_DIM`) and 1.35x, 2.2x, 4.9x too large
  at ``N / D`` = 7.8, 2.3, 1.2 (:func:`fid_bootstrap_calibrated`; outside it :func:`warn_if_bootstrap_uncalibrated`).
- Precision and recall [4], density and coverage [5] (:func:`prdc`): ``B_k(x)`` is the closed ball around a feature
  vector reaching its k-th nearest neighbour in its own set. Precision: the share of generated samples inside some
  real ball; recall: the share of real samples inside some generated ball, both at ``k = 3`` (:data:`PR_K`, [4]'s
  official code); density: ``(1 / (k M)) sum_j #{i: y_j in B_k(x_i)}`` (real balls ``x_i``, ``M`` generated ``y_j``;
  1 on average when the distributions match, unbounded); coverage: the share of real balls holding at least one
  generated sample, both at ``k = 5`` (:data:`DC_K`, [5]). Closed balls (``<=``) as in [4]'s code and
  torch-fidelity's ``calculate_precision_recall_part``, which gives the same precision and recall (tested); [5]'s
  ``prdc`` package uses open ones (``<``), the same on continuous features (tested at both k). One pass over the
  distances gives all four.

With ``seed=2020`` :func:`inception_score` and :func:`kid` reproduce torch-fidelity's defaults exactly.

[1] arXiv 1706.08500 (Heusel et al.)  [2] arXiv 1606.03498 (Salimans et al.)  [3] arXiv 1801.01401 (Binkowski et al.)
[4] arXiv 1904.06991 (Kynkaanniemi et al. 2019)  [5] arXiv 2002.09797 (Naeem et al. 2020)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import torch
from scipy import linalg
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def _as_f64(x: ArrayLike, name: str, ndim: int) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


# ---- FID ---------------------------------------------------------------------------------------------------------
def feature_stats(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of features ``(N, D)``, in float64."""
    f = _as_f64(features, "features", 2)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_stats(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, *, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    If the product of the covariances is too singular for a finite square root, ``eps`` is added to both
    diagonals (pytorch-fid); imaginary parts larger than round-off (diagonal beyond 1e-3) are an error.
    """
    mu1, mu2 = _as_f64(mu1, "mu1", 1), _as_f64(mu2, "mu2", 1)
    sigma1, sigma2 = _as_f64(sigma1, "sigma1", 2), _as_f64(sigma2, "sigma2", 2)
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"statistics do not match: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, "
                         f"sigma2 {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products are handled below, as pytorch-fid does
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            warnings.warn(f"FID: the product of the covariances is singular; adding {eps} to their diagonals",
                          RuntimeWarning, stacklevel=2)
            offset = np.eye(d) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: matrix square root has an imaginary component {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def too_few_samples(n: int, dim: int) -> bool:
    """Whether ``n`` feature vectors of ``dim`` dimensions are too few for FID: with ``n <= dim`` the sample
    covariance has rank below ``dim`` (singular) and the FID is strongly biased."""
    return int(n) <= int(dim)


def warn_if_too_few_samples(n: int, dim: int, what: str = "features", *, stacklevel: int = 3) -> bool:
    """Warn (``RuntimeWarning``) when :func:`too_few_samples`; returns whether it did. Every path to an FID (the pure
    function, :class:`~lightning_gen.metrics.torchmetrics_wrappers.SampleFeatures`, the benchmark) calls this one
    check, so the message and the threshold are the same everywhere."""
    if not too_few_samples(n, dim):
        return False
    warnings.warn(f"FID: {what} has {n} samples for {dim} feature dimensions; its covariance is singular and the FID "
                  f"is strongly biased (use more than {dim} samples)", RuntimeWarning, stacklevel=stacklevel)
    return True


def fid_from_features(features1: ArrayLike, features2: ArrayLike) -> float:
    """FID between two feature sets ``(N1, D)`` and ``(N2, D)``."""
    for name, f in (("features1", features1), ("features2", features2)):
        warn_if_too_few_samples(*f.shape, name)
    return fid_from_stats(*feature_stats(features1), *feature_stats(features2))


#: The bootstrap's FID std is within 0.8-1.25x of the std across independent draws from this many samples per feature
#: dimension up (synthetic Gaussians, tests/test_calibration.py; at D = 16-128: 1.15-1.35x at 5-10, 1.0-1.25x at 20-30,
#: 0.9-1.1x at 40-80). The digit classifiers (D = 128) at 10,000 samples are inside; Inception (D = 2,048) is not.
BOOTSTRAP_SAMPLES_PER_DIM = 40


def fid_bootstrap_calibrated(n: int, dim: int) -> bool:
    """Whether :func:`fid_bootstrap`'s std estimates the FID's std across independent draws of ``n`` samples of
    ``dim`` dimensions (within 0.8-1.25x): ``n >= BOOTSTRAP_SAMPLES_PER_DIM * dim``."""
    return int(n) >= BOOTSTRAP_SAMPLES_PER_DIM * int(dim)


def warn_if_bootstrap_uncalibrated(n: int, dim: int, *, stacklevel: int = 3) -> bool:
    """Warn (``RuntimeWarning``) unless :func:`fid_bootstrap_calibrated`, naming N and D; returns whether it did."""
    if fid_bootstrap_calibrated(n, dim):
        return False
    warnings.warn(f"FID spread: a bootstrap of N={n} samples in D={dim} feature dimensions overstates the std across "
                  f"independent draws (within 0.8-1.25x only for N >= {BOOTSTRAP_SAMPLES_PER_DIM} D = "
                  f"{BOOTSTRAP_SAMPLES_PER_DIM * dim}); draw the samples several times (--repeats) for an honest "
                  f"spread", RuntimeWarning, stacklevel=stacklevel)
    return True


def fid_bootstrap(features: ArrayLike, mu_ref: ArrayLike, sigma_ref: ArrayLike, resamples: int = 10,
                  seed: int = 0) -> np.ndarray:
    """FIDs ``(resamples,)`` of resamples with replacement of ``features`` ``(N, D)`` against fixed reference
    statistics: their spread estimates how much the FID of ``N`` generated samples varies from draw to draw. A
    resample repeats about a third of the samples, which raises its FID a little; read the spread, not the level.
    The spread is honest for ``N >= 40 D`` only (:func:`fid_bootstrap_calibrated`)."""
    f = _as_f64(features, "features", 2)
    mu_ref, sigma_ref = _as_f64(mu_ref, "mu_ref", 1), _as_f64(sigma_ref, "sigma_ref", 2)
    if resamples < 1 or f.shape[0] < 2:
        raise ValueError(f"need resamples >= 1 and at least 2 feature vectors, got {resamples} and {f.shape[0]}")
    lam, vecs = np.linalg.eigh(sigma_ref)
    root = (vecs * np.sqrt(np.clip(lam, 0, None))) @ vecs.T  # R = sigma_ref^(1/2), symmetric
    rng = np.random.RandomState(seed)
    out = np.empty(resamples)
    for b in range(resamples):
        mu, sigma = feature_stats(f[rng.randint(f.shape[0], size=f.shape[0])])
        eig = np.linalg.eigvalsh(root @ sigma @ root)
        diff = mu - mu_ref
        out[b] = diff @ diff + np.trace(sigma) + np.trace(sigma_ref) - 2 * np.sqrt(np.clip(eig, 0, None)).sum()
    return out


# ---- precision / recall, density / coverage -----------------------------------------------------------------------
#: Neighbours of precision/recall: Kynkaanniemi et al.'s official code [4].
PR_K = 3
#: Neighbours of density/coverage: Naeem et al. [5].
DC_K = 5


def _kth_neighbour_radii(x: Tensor, ks: tuple[int, ...], batch_size: int) -> list[Tensor]:
    """Distance of each row of ``x`` to its k-th nearest other row ``(N,)`` (the (k+1)-th smallest counting itself),
    for each k of ``ks``."""
    # topk, not kthvalue: the same value, ten times faster on a CPU
    nearest = torch.cat([torch.cdist(block, x).topk(max(ks) + 1, dim=1, largest=False).values
                         for block in x.split(batch_size)])  # (N, max k + 1), ascending
    return [nearest[:, k] for k in ks]


def prdc(real_features: ArrayLike, fake_features: ArrayLike, pr_k: int = PR_K, dc_k: int = DC_K, *,
         batch_size: int = 1024, device: torch.device | str | None = None) -> dict[str, float]:
    """Precision, recall [4] (``pr_k`` neighbours), density and coverage [5] (``dc_k``) of generated features
    ``(M, D)`` against real ones ``(N, D)`` (see the module docstring): ``{"precision", "recall", "density",
    "coverage"}``. Distances are computed in float64 blocks of ``batch_size`` rows on ``device`` (default the CPU),
    so memory is ``batch_size * max(N, M)``, not ``N * M``."""
    real = torch.from_numpy(np.ascontiguousarray(_as_f64(real_features, "real_features", 2))).to(device)
    fake = torch.from_numpy(np.ascontiguousarray(_as_f64(fake_features, "fake_features", 2))).to(device)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} and {fake.shape[1]}")
    for name, k in (("pr_k", pr_k), ("dc_k", dc_k)):
        if not 1 <= k < min(real.shape[0], fake.shape[0]):
            raise ValueError(f"{name} must be in 1..{min(real.shape[0], fake.shape[0]) - 1} (fewer than the smaller "
                             f"set), got {k}")
    real_pr, real_dc = _kth_neighbour_radii(real, (pr_k, dc_k), batch_size)
    (fake_pr,) = _kth_neighbour_radii(fake, (pr_k,), batch_size)
    in_pr_ball = torch.zeros(fake.shape[0], dtype=torch.bool, device=real.device)  # fake j in some real pr_k-ball
    dc_balls_holding = torch.zeros(fake.shape[0], dtype=torch.float64, device=real.device)  # real dc_k-balls per fake
    recalled, covered = [], []
    for start in range(0, real.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        d = torch.cdist(real[rows], fake)  # (b, M)
        in_pr_ball |= (d <= real_pr[rows, None]).any(0)
        inside = d <= real_dc[rows, None]  # fake j in real dc_k-ball i
        dc_balls_holding += inside.sum(0)
        covered.append(inside.any(1))
        recalled.append((d <= fake_pr[None, :]).any(1))  # real i in some fake pr_k-ball
    return {"precision": float(in_pr_ball.double().mean()),
            "recall": float(torch.cat(recalled).double().mean()),
            "density": float(dc_balls_holding.sum() / (dc_k * fake.shape[0])),
            "coverage": float(torch.cat(covered).double().mean())}


# ---- Inception Score ---------------------------------------------------------------------------------------------
def inception_score(logits: ArrayLike, splits: int = 10, *, shuffle: bool = True, seed: int = 0) -> dict[str, float]:
    """Inception Score of classifier logits ``(N, K)``: ``{"is_mean", "is_std"}`` over ``splits`` chunks."""
    x = torch.from_numpy(_as_f64(logits, "logits", 2))
    n = x.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be in 1..{n} (the number of samples), got {splits}")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        chunk = slice(i * n // splits, (i + 1) * n // splits)
        log_q = p[chunk].mean(dim=0, keepdim=True).log()  # (1, K) marginal class distribution of the chunk
        kl = (p[chunk] * (log_p[chunk] - log_q)).sum(dim=1)  # (n_chunk,)
        scores.append(kl.mean().exp().item())
    return {"is_mean": float(np.mean(scores)), "is_std": float(np.std(scores))}


# ---- KID ---------------------------------------------------------------------------------------------------------
def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    m = x.shape[0]
    k_xx = (x @ x.T * gamma + coef0) ** degree
    k_yy = (y @ y.T * gamma + coef0) ** degree
    k_xy = (x @ y.T * gamma + coef0) ** degree
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def kid_kernel(feature_scale: float | None = None) -> str:
    """How KID's kernel saw the features, as a record's ``protocol.kid_kernel`` says it: ``"(x.y/d+1)^3"`` on the
    raw features (torch-fidelity's, for Inception), or ``"(x.y/d+1)^3, x/<scale>"`` on features divided by a fixed
    per-extractor scale (:attr:`~lightning_gen.metrics.features.FeatureExtractor.kid_feature_scale`)."""
    return "(x.y/d+1)^3" if feature_scale is None else f"(x.y/d+1)^3, x/{feature_scale:.6g}"


def kid(features1: ArrayLike, features2: ArrayLike, subsets: int = 100, subset_size: int = 1000, seed: int = 0, *,
        degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
        feature_scale: float | None = None) -> dict[str, float]:
    """Kernel Inception Distance: ``{"kid_mean", "kid_std"}`` of the unbiased polynomial-kernel MMD^2 over
    ``subsets`` random subsets (without replacement) of ``subset_size`` from each set. ``gamma`` defaults to 1/D.
    ``feature_scale`` divides both feature sets first (None: raw features, torch-fidelity's KID).

    Values slightly below 0 are valid (the estimator is unbiased) and mean the distributions are very close.
    """
    f1, f2 = _as_f64(features1, "features1", 2), _as_f64(features2, "features2", 2)
    if feature_scale is not None:
        if not feature_scale > 0:
            raise ValueError(f"feature_scale must be positive, got {feature_scale}")
        f1, f2 = f1 / feature_scale, f2 / feature_scale
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} and {f2.shape[1]}")
    if subset_size < 2 or subset_size > min(f1.shape[0], f2.shape[0]):
        raise ValueError(f"KID subset_size must be in 2..{min(f1.shape[0], f2.shape[0])} (the smaller set), got "
                         f"{subset_size}; pass a smaller subset_size or more samples")
    gamma = 1.0 / f1.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        x = f1[rng.choice(f1.shape[0], subset_size, replace=False)]
        y = f2[rng.choice(f2.shape[0], subset_size, replace=False)]
        mmds[i] = _mmd2_unbiased(x, y, degree, gamma, coef0)
    return {"kid_mean": float(mmds.mean()), "kid_std": float(mmds.std())}


# ---- features of images ------------------------------------------------------------------------------------------
def _batches(images, batch_size: int):
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if isinstance(images, Tensor):
        if images.dim() == 0:
            raise ValueError("expected images of shape (N, C, H, W), got a scalar")
        images = [images]
    for batch in images:
        if isinstance(batch, (tuple, list)):  # (images, labels) from a data loader
            batch = batch[0]
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        for start in range(0, max(len(batch), 1), batch_size):
            yield batch[start : start + batch_size] if isinstance(batch, Tensor) else batch


@torch.inference_mode()
def compute_features(extractor, images: Tensor | Iterable, batch_size: int = 256) -> tuple[Tensor, Tensor | None]:
    """Features (and logits) of uint8 images: float64 ``(N, D)`` and ``(N, K)`` (or None), on the CPU.

    ``images`` is a uint8 tensor ``(N, C, H, W)`` or an iterable of such batches (or of ``(images, labels)``
    pairs, as data loaders yield); batches are cut to ``batch_size`` and moved to the extractor's device.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = next(extractor.parameters()).device
    features, logits = [], []
    for batch in _batches(images, batch_size):
        extractor.check_images(batch)
        if batch.shape[0] == 0:
            continue
        out = extractor(batch.to(device))
        features.append(out.features.double().cpu())
        if out.logits is not None:
            logits.append(out.logits.double().cpu())
    if not features:
        raise ValueError("no images to compute features of")
    return torch.cat(features), (torch.cat(logits) if logits else None)
