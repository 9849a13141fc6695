"""Metrics: FID/IS/KID against closed forms and torch-fidelity, feature extractors, the stats cache, DDP gathering,
the linear probe."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest
import torch
from scipy import linalg

from lightning_gen.data import Digits
from lightning_gen.metrics import (
    BOOTSTRAP_SAMPLES_PER_DIM,
    DC_K,
    PR_K,
    ExtractorWeightsMissing,
    ImageSums,
    ReferenceStats,
    SampleFeatures,
    StatsCache,
    StatsKey,
    compute_features,
    feature_stats,
    fid_bootstrap,
    fid_from_features,
    fid_from_stats,
    get_extractor,
    inception_score,
    kid,
    kid_kernel,
    prdc,
    reference_stats,
    too_few_samples,
    unpadded_length,
)
from lightning_gen.metrics import features as features_module
from lightning_gen.metrics.classifier import WEIGHTS_DIR
from lightning_gen.metrics.probe import linear_probe


def random_cov(rng: np.random.Generator, d: int, scale: float = 1.0) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def closed_form_fid(mu1, s1, mu2, s2) -> float:
    """Frechet distance written independently of the code under test: the symmetric form
    tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), square roots by scipy's symmetric eigendecomposition."""

    def psd_sqrt(m):
        w, v = linalg.eigh((m + m.T) / 2)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = psd_sqrt(s1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(psd_sqrt(r1 @ s2 @ r1)))


# ---- FID -------------------------------------------------------------------------------------------------------
def test_fid_of_a_set_against_itself_is_zero():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2000, 64)) @ rng.normal(size=(64, 64)) * 10 + 5
    scale = np.trace(np.cov(f, rowvar=False))
    assert abs(fid_from_features(f, f)) / scale < 1e-6
    assert abs(fid_from_features(torch.from_numpy(f).float(), torch.from_numpy(f).float())) / scale < 1e-6


def test_fid_from_stats_matches_the_closed_form():
    rng = np.random.default_rng(1)
    d = 32
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) + 0.5
    s1, s2 = random_cov(rng, d), random_cov(rng, d, scale=3.0)
    expected = closed_form_fid(mu1, s1, mu2, s2)
    assert expected > 1.0
    assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    # and torch-fidelity's eigenvalue implementation agrees
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    tf = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False)
    assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(tf["frechet_inception_distance"], rel=1e-6)


def test_fid_from_features_is_the_fid_of_their_empirical_statistics():
    rng = np.random.default_rng(2)
    d = 6
    mu1, mu2 = np.zeros(d), np.full(d, 0.7)
    s1, s2 = random_cov(rng, d), random_cov(rng, d, scale=2.0)
    f1 = rng.multivariate_normal(mu1, s1, size=50_000)
    f2 = rng.multivariate_normal(mu2, s2, size=40_000)
    fid = fid_from_features(f1, f2)
    empirical = closed_form_fid(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert fid == pytest.approx(empirical, rel=1e-6)
    # with many samples it approaches the FID of the generating Gaussians
    assert fid == pytest.approx(closed_form_fid(mu1, s1, mu2, s2), rel=0.03)


def test_feature_stats_are_float64_mean_and_unbiased_covariance():
    f = torch.randn(100, 5, generator=torch.Generator().manual_seed(0))
    mu, sigma = feature_stats(f)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(f.double().numpy(), rowvar=False), rtol=1e-12)


def test_fid_of_singular_covariances_stays_finite():
    rng = np.random.default_rng(3)
    f1 = np.concatenate([rng.normal(size=(200, 8)), np.zeros((200, 8))], axis=1)  # half the dimensions dead
    f2 = np.concatenate([rng.normal(size=(200, 8)) + 1, np.zeros((200, 8))], axis=1)
    fid = fid_from_features(f1, f2)
    assert np.isfinite(fid) and fid > 4


# ---- Inception Score -------------------------------------------------------------------------------------------
def test_inception_score_of_confident_balanced_predictions_is_the_number_of_classes():
    c, n = 10, 1000
    labels = torch.arange(n) % c  # every chunk of 100 holds each class 10 times
    logits = 100.0 * torch.nn.functional.one_hot(labels, c).double()
    assert inception_score(logits, splits=1)["is_mean"] == pytest.approx(c, rel=1e-3)
    per_chunk = inception_score(logits, splits=10, shuffle=False)
    assert per_chunk["is_mean"] == pytest.approx(c, rel=1e-3) and per_chunk["is_std"] < 1e-6
    # one class only, or no confidence at all: IS = 1
    assert inception_score(100.0 * torch.nn.functional.one_hot(torch.zeros(n, dtype=torch.long), c),
                           splits=1)["is_mean"] == pytest.approx(1.0, rel=1e-6)
    assert inception_score(torch.zeros(n, c), splits=1)["is_mean"] == pytest.approx(1.0, rel=1e-6)


def test_inception_score_shuffles_samples_drawn_class_by_class():
    logits = 100.0 * torch.nn.functional.one_hot(torch.arange(1000) // 100, 10)  # sorted by class
    assert inception_score(logits, splits=10, shuffle=False)["is_mean"] == pytest.approx(1.0, rel=1e-3)
    assert inception_score(logits, splits=10)["is_mean"] > 9.0


def test_inception_score_and_kid_reproduce_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 20, generator=g) * 3
    expected = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    ours = inception_score(logits, splits=10, seed=2020)
    assert ours["is_mean"] == pytest.approx(expected["inception_score_mean"], rel=1e-9)
    assert ours["is_std"] == pytest.approx(expected["inception_score_std"], rel=1e-9)

    f1 = torch.randn(300, 16, generator=g).double()
    f2 = (torch.randn(300, 16, generator=g) + 0.3).double()
    expected = kid_features_to_metric(f1, f2, kid_subsets=10, kid_subset_size=100, verbose=False, rng_seed=2020,
                                      kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                      kid_kernel_poly_coef0=1)
    ours = kid(f1, f2, subsets=10, subset_size=100, seed=2020)
    assert ours["kid_mean"] == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-9)
    assert ours["kid_std"] == pytest.approx(expected["kernel_inception_distance_std"], rel=1e-9)


# ---- KID -------------------------------------------------------------------------------------------------------
def test_kid_is_about_zero_for_one_distribution_and_positive_for_shifted_sets():
    rng = np.random.default_rng(4)
    # Subsets of one set overlap (a point paired with itself biases the estimate by about -2 k(x, x) / N):
    # keep N large against the subset size.
    f = rng.normal(size=(4000, 32))
    other = rng.normal(size=(4000, 32))  # same distribution, other samples
    shifted = rng.normal(size=(4000, 32)) + 0.5
    same_set = kid(f, f, subsets=20, subset_size=200)
    same_dist = kid(f, other, subsets=20, subset_size=200)
    far = kid(f, shifted, subsets=20, subset_size=200)
    assert far["kid_mean"] > 0
    assert abs(same_set["kid_mean"]) < 0.02 * far["kid_mean"]
    assert abs(same_dist["kid_mean"]) < 0.02 * far["kid_mean"]
    assert far["kid_mean"] > 10 * far["kid_std"] / np.sqrt(20)


def test_kid_rejects_a_subset_larger_than_the_sets():
    with pytest.raises(ValueError, match="subset_size"):
        kid(np.zeros((50, 4)), np.zeros((80, 4)), subset_size=60)


# ---- feature extractors ----------------------------------------------------------------------------------------
# ---- FID spread, precision/recall, density/coverage ----------------------------------------------------------------
def test_fid_bootstrap_uses_the_fid_formula_and_its_spread_tracks_the_sample_size():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2000, 6))
    mu_ref, sigma_ref = feature_stats(ref)
    small, large = rng.normal(0.3, 1.0, size=(200, 6)), rng.normal(0.3, 1.0, size=(3200, 6))
    # The eigenvalue form of the trace term agrees with the matrix square root on the same statistics.
    identity = fid_bootstrap(small, mu_ref, sigma_ref, 1, seed=0)
    rs = np.random.RandomState(0)
    resampled = small[rs.randint(200, size=200)]
    assert identity[0] == pytest.approx(fid_from_stats(*feature_stats(resampled), mu_ref, sigma_ref), rel=1e-8)
    fids = fid_bootstrap(small, mu_ref, sigma_ref, 30, seed=1)
    assert np.array_equal(fids, fid_bootstrap(small, mu_ref, sigma_ref, 30, seed=1))  # seeded
    # The FID's standard deviation over draws falls like 1/sqrt(n): 16x the samples, about a quarter the spread.
    ratio = fids.std(ddof=1) / fid_bootstrap(large, mu_ref, sigma_ref, 30, seed=1).std(ddof=1)
    assert 2.5 < ratio < 6.5, ratio


def test_prdc_of_points_on_a_line_by_hand():
    """k = 1 on a line. Real 0, 1, 3, 7: radii 1, 1, 2, 4, balls [-1, 1], [0, 2], [1, 5], [3, 11]. Generated 0.5,
    2, 20, 21: radii 1.5, 1.5, 1, 1, balls [-1, 2], [0.5, 3.5], [19, 21], [20, 22].
    precision: 0.5 and 2 lie in real balls, 20 and 21 do not: 2/4. recall: 0, 1, 3 lie in generated balls, 7 does
    not: 3/4. density: 0.5 lies in 2 real balls, 2 in 2 (on the edge of [0, 2]: balls are closed), so 4 / (1 * 4).
    coverage: the balls of 0, 1, 3 hold a generated point, that of 7 none: 3/4."""
    real, fake = np.array([[0.0], [1.0], [3.0], [7.0]]), np.array([[0.5], [2.0], [20.0], [21.0]])
    assert prdc(real, fake, pr_k=1, dc_k=1) == {"precision": 0.5, "recall": 0.75, "density": 1.0, "coverage": 0.75}
    # k = 2: real radii 3, 2, 3, 6, balls [-3, 3], [-1, 3], [0, 6], [1, 13]; 20 and 21 still lie outside all.
    assert prdc(real, fake, pr_k=2, dc_k=2)["precision"] == 0.5
    itself = prdc(real, real[::-1], pr_k=1, dc_k=1)  # each point lies in its own ball
    assert (itself["precision"], itself["recall"], itself["coverage"]) == (1.0, 1.0, 1.0)


def test_prdc_precision_and_recall_equal_torch_fidelity_and_the_blocks_change_nothing():
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 8, generator=g, dtype=torch.float64)
    fake = torch.randn(200, 8, generator=g, dtype=torch.float64) * 1.3 + 0.4
    ours = prdc(real, fake)
    precision, recall = calculate_precision_recall_part(fake, real, neighborhood=3)
    assert (ours["precision"], ours["recall"]) == pytest.approx((precision, recall), abs=1e-6)  # theirs: float32
    assert prdc(real, fake, batch_size=7) == ours
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1 and 0 < ours["coverage"] < 1
    same = prdc(real, torch.randn(300, 8, generator=g, dtype=torch.float64))
    assert 0.8 < same["density"] < 1.2 and same["coverage"] > 0.9  # one distribution: density about 1
    far = prdc(real, fake + 100)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    with pytest.raises(ValueError, match="dc_k must be in 1..199"):
        prdc(real, fake, dc_k=200)


def test_prdc_at_the_papers_k_equals_naeem_et_al_prdc_package():
    """Precision/recall at k = 3 (Kynkaanniemi et al.'s code) and density/coverage at k = 5 (Naeem et al.) equal the
    ``prdc`` package, Naeem et al.'s reference implementation, which computes all four at one k: called at each."""
    from prdc import compute_prdc

    assert (PR_K, DC_K) == (3, 5)
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(400, 16)), rng.normal(0.3, 1.2, size=(300, 16))
    ours = prdc(real, fake)
    at_pr, at_dc = (compute_prdc(real, fake, nearest_k=k) for k in (PR_K, DC_K))
    assert (ours["precision"], ours["recall"]) == pytest.approx((at_pr["precision"], at_pr["recall"]), abs=1e-12)
    assert (ours["density"], ours["coverage"]) == pytest.approx((at_dc["density"], at_dc["coverage"]), abs=1e-12)
    assert ours["precision"] != pytest.approx(at_dc["precision"])  # the k matters on these features


def test_unknown_extractor_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown extractor 'incepton'.*digits-lenet.*inception.*mnist-lenet"):
        get_extractor("incepton")


@pytest.mark.parametrize("name, size", [("mnist-lenet", 28), ("digits-lenet", 8)])
def test_lenet_features_do_not_depend_on_batch_size(name, size):
    extractor = get_extractor(name)
    images = torch.randint(0, 256, (100, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[:50] = (images[:50] > 200).to(torch.uint8) * 255  # some binary-looking images too
    full, full_logits = compute_features(extractor, images, batch_size=100)
    assert full.dtype == torch.float64 and full.shape == (100, 128) and full_logits.shape == (100, 10)
    assert full.abs().max() > 0
    for batch_size in (7, 64):
        f, lg = compute_features(extractor, images, batch_size=batch_size)
        torch.testing.assert_close(f, full, rtol=0, atol=1e-5)
        torch.testing.assert_close(lg, full_logits, rtol=0, atol=1e-5)
    # an iterable of (images, labels) batches, as a data loader yields, gives the same features
    f, _ = compute_features(extractor, [(images[:30], None), (images[30:], None)], batch_size=64)
    torch.testing.assert_close(f, full, rtol=0, atol=1e-5)


def test_extractors_stay_in_eval_mode():
    extractor = get_extractor("mnist-lenet")
    torch.nn.Sequential(extractor).train()
    assert not extractor.training and not extractor.net.training


def test_digits_classifier_recognises_the_held_out_digits():
    extractor = get_extractor("digits-lenet")
    x, y = Digits().splits()["test"]
    _, logits = compute_features(extractor, x)
    assert (logits.argmax(1) == y).double().mean() >= 0.95
    manifest = json.loads((WEIGHTS_DIR / "manifest.json").read_text())
    assert extractor.weights_sha256 == manifest["digits_lenet.pt"]["sha256"]


def test_mnist_classifier_recognises_the_test_digits(real_data_root):
    from lightning_gen.data import MNIST

    x, y = MNIST(str(real_data_root)).splits()["test"]
    _, logits = compute_features(get_extractor("mnist-lenet"), x, batch_size=1000)
    assert (logits.argmax(1) == y).double().mean() >= 0.99


def test_bad_images_are_rejected_with_the_fix():
    extractor = get_extractor("mnist-lenet")
    good = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(TypeError, match="uint8.*convert"):
        compute_features(extractor, good.float() / 255)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        compute_features(extractor, good[:, 0])  # (N, H, W)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        compute_features(extractor, torch.zeros(4, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        compute_features(extractor, torch.zeros(4, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        compute_features(extractor, [good, good.float()])  # a bad batch inside an iterable


# ---- Inception weights -----------------------------------------------------------------------------------------
@pytest.fixture
def random_inception_weights(tmp_path, monkeypatch):
    """A state dict of torch-fidelity's Inception-v3 with random values: the right keys and shapes."""
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    with monkeypatch.context() as m:  # build the network without loading (or downloading) weights
        m.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    path = tmp_path / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_inception_loads_a_local_state_dict_and_matches_torch_fidelity(random_inception_weights, monkeypatch):
    path, reference_net = random_inception_weights
    monkeypatch.setattr(features_module, "online", lambda *a, **k: pytest.fail("no network check with a local file"))
    with pytest.warns(UserWarning, match="not comparable with published"):
        extractor = get_extractor("inception", weights_path=path)
    assert extractor.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (extractor.name, extractor.feature_layer, extractor.input_size) == ("inception", "2048", 299)

    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    features, logits = compute_features(extractor, grey)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    expected_features, expected_logits = reference_net.eval()(grey.repeat(1, 3, 1, 1))
    torch.testing.assert_close(features.float(), expected_features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits.float(), expected_logits, rtol=1e-5, atol=1e-5)

    # the environment variable is the second place looked at
    monkeypatch.setenv(features_module.INCEPTION_WEIGHTS_ENV, str(path))
    assert features_module.resolve_inception_weights() == path
    given = path.with_name("given.pth")
    given.write_bytes(b"")
    assert features_module.resolve_inception_weights(given) == given  # the argument wins over the variable


def test_inception_refuses_a_file_that_is_not_a_plain_state_dict(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weights": object.__new__(StatsCache)}, path)  # pickles an arbitrary class
    with pytest.raises(ValueError, match="not a plain state dict"):
        get_extractor("inception", weights_path=path)


def test_inception_offline_without_weights_fails_fast_and_says_what_to_do(tmp_path, monkeypatch):
    calls = []

    def offline(host, port=443, timeout=3.0):
        calls.append(timeout)
        return False

    monkeypatch.setattr(features_module, "online", offline)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    monkeypatch.delenv(features_module.INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty hub cache
    start = time.perf_counter()
    with pytest.raises(ExtractorWeightsMissing) as err:
        get_extractor("inception")
    assert time.perf_counter() - start < 10
    assert calls and all(t <= 3 for t in calls)
    message = str(err.value)
    for needed in ("weights-inception-2015-12-05-6726825d.pth", features_module.INCEPTION_WEIGHTS_URL,
                   "LIGHTNING_GEN_FID_WEIGHTS", "--fid-weights"):
        assert needed in message

    with pytest.raises(ExtractorWeightsMissing, match="does-not-exist.pth"):
        get_extractor("inception", weights_path=tmp_path / "does-not-exist.pth")


# ---- reference statistics cache --------------------------------------------------------------------------------
class CountingCompute:
    def __init__(self, features):
        self.features, self.calls = features, 0

    def __call__(self):
        self.calls += 1
        return ReferenceStats.from_features(self.features, keep_features=True)


def make_key(**changes) -> StatsKey:
    fields = dict(dataset="digits", split="test", extractor="digits-lenet", feature_layer="fc",
                  image_shape=(1, 8, 8), num_samples=50, weights_sha256="ab" * 32)
    return StatsKey(**{**fields, **changes})


def test_stats_cache_hits_and_keys_name_everything(tmp_path):
    cache = StatsCache(tmp_path)
    compute = CountingCompute(np.random.default_rng(0).normal(size=(50, 4)))
    key = make_key()
    first = cache.get_or_compute(key, compute, need_features=True)
    second = cache.get_or_compute(key, compute, need_features=True)
    assert compute.calls == 1
    np.testing.assert_array_equal(first.sigma, second.sigma)
    np.testing.assert_array_equal(first.features, second.features)
    for change in (dict(num_samples=60), dict(split="train"), dict(weights_sha256="cd" * 32),
                   dict(image_shape=(1, 28, 28)), dict(feature_layer="logits"), dict(extractor="mnist-lenet")):
        assert cache.path(make_key(**change)) != cache.path(key), change
        assert cache.load(make_key(**change)) is None
    assert "n50" in cache.path(key).name and "digits-test" in cache.path(key).name


def test_stats_cache_default_folder_is_the_cache_root_never_the_data_root(tmp_path, monkeypatch):
    """The data root may be shared and read-only ($LIGHTNING_GEN_DATA in CI): derived files go to the cache root."""
    monkeypatch.setenv("LIGHTNING_GEN_DATA", str(tmp_path / "data_root"))
    monkeypatch.setenv("LIGHTNING_GEN_CACHE", str(tmp_path / "cache_root"))
    assert StatsCache().dir == tmp_path / "cache_root" / "fid_stats"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "tampered", "other_key"])
def test_stats_cache_recomputes_a_corrupt_or_mismatching_file(tmp_path, damage):
    cache = StatsCache(tmp_path)
    compute = CountingCompute(np.random.default_rng(0).normal(size=(50, 4)))
    key = make_key()
    good = cache.get_or_compute(key, compute)
    path = cache.path(key)
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "tampered":
        with np.load(path) as f:
            arrays = dict(f)
        arrays["mu"] = arrays["mu"] + 1.0  # valid file, altered values, old checksum
        np.savez(path, **arrays)
    elif damage == "other_key":
        cache.save(make_key(num_samples=40), good)
        path.write_bytes(cache.path(make_key(num_samples=40)).read_bytes())
    with pytest.warns(RuntimeWarning, match="recomputing"):
        again = cache.get_or_compute(key, compute)
    assert compute.calls == 2
    np.testing.assert_array_equal(again.mu, good.mu)
    assert cache.load(key) is not None  # rewritten, valid
    assert not list(tmp_path.glob("*.tmp"))


def test_reference_stats_of_real_digits_are_cached(tmp_path):
    extractor = get_extractor("digits-lenet")
    x, _ = Digits().splits()["test"]
    cache = StatsCache(tmp_path)
    stats = reference_stats(extractor, x, dataset="digits", split="test", num_samples=200, cache=cache)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and "n200" in files[0].name and extractor.weights_sha256[:8] in files[0].name
    features, _ = compute_features(extractor, x[:200])
    np.testing.assert_allclose(stats.mu, features.mean(0).numpy(), rtol=1e-12)
    again = reference_stats(extractor, x, dataset="digits", split="test", num_samples=200, cache=cache)
    np.testing.assert_array_equal(again.sigma, stats.sigma)
    reference_stats(extractor, x, dataset="digits", split="test", cache=cache)  # all 300: a second entry
    assert len(list(tmp_path.glob("*.npz"))) == 2


# ---- torchmetrics wrappers -------------------------------------------------------------------------------------
def test_sample_features_metric_equals_the_pure_functions():
    extractor = get_extractor("digits-lenet")
    splits = Digits().splits()
    real, fake = splits["train"][0], splits["test"][0]
    ref_features, _ = compute_features(extractor, real)
    reference = ReferenceStats.from_features(ref_features, keep_features=True)
    metric = SampleFeatures(extractor, reference=reference, kid_subsets=10, kid_subset_size=100)
    for i in range(0, fake.shape[0], 64):
        metric.update(fake[i : i + 64])
    scores = metric.compute()
    features, logits = compute_features(extractor, fake)
    assert scores["num_samples"] == fake.shape[0]
    assert float(scores["fid"]) == pytest.approx(fid_from_features(features, ref_features), rel=1e-9)
    assert float(scores["is_mean"]) == pytest.approx(inception_score(logits)["is_mean"], rel=1e-9)
    scaled = kid(features, ref_features, 10, 100, feature_scale=extractor.kid_feature_scale)["kid_mean"]
    assert float(scores["kid_mean"]) == pytest.approx(scaled, rel=1e-9)  # the extractor's KID feature scale
    assert {k: float(scores[k]) for k in ("precision", "recall", "density", "coverage")} == prdc(ref_features, features)
    assert "fid_std" not in scores
    with_spread = SampleFeatures(reference=reference, kid_subsets=10, kid_subset_size=100, fid_bootstrap=5)
    with_spread.update(features=features)
    spread = with_spread.compute()["fid_std"]
    assert float(spread) == pytest.approx(fid_bootstrap(features, reference.mu, reference.sigma, 5).std(ddof=1))
    assert not any(k.startswith("extractor") for k in metric.state_dict())  # no network weights in checkpoints


def test_image_sums_give_the_exact_mean_and_standard_error():
    sums = ImageSums()
    nll = torch.rand(100, dtype=torch.float64) * 100
    sums.add({"nll_nats": nll[:30].float()})
    sums.add({"nll_nats": nll[30:].float()})
    out = sums.result(["nll_nats"])
    assert float(out["nll_nats"]) == pytest.approx(float(nll.float().double().mean()), rel=1e-12)
    assert float(out["count"]) == 100
    se = nll.float().double().numpy().std(ddof=1) / np.sqrt(100)
    assert float(out["nll_nats_se"]) == pytest.approx(se, rel=1e-9)
    with pytest.raises(ValueError, match="one value per image"):
        sums.add({"nll_nats": torch.zeros(3, 2)})


def test_image_sums_leave_out_a_distributed_samplers_padding():
    """7 images on 3 ranks: the sampler pads to 9 by repeating images 0 and 1; each rank counts only its real ones,
    and the summed means are those of the 7 images, each once."""
    data = torch.arange(7, dtype=torch.float64)
    ranks = []
    for rank in range(3):
        loader = torch.utils.data.DataLoader(data, batch_size=2, sampler=torch.utils.data.DistributedSampler(
            data, num_replicas=3, rank=rank, shuffle=False))
        sums = ImageSums()
        sums.start(unpadded_length(loader))
        for batch in loader:
            sums.add({"x": batch})
        ranks.append(sums)
    assert len(list(loader.sampler)) == 3  # every rank is padded to 3 images: 9 for 7
    # rank r's totals, summed as an all-reduce would: the 7 images, each once
    totals = [r.result(["x"]) for r in ranks]
    count = sum(float(t["count"]) for t in totals)
    mean = sum(float(t["x"]) * float(t["count"]) for t in totals) / count
    assert count == 7 and mean == pytest.approx(3.0, rel=1e-15)
    assert unpadded_length(torch.utils.data.DataLoader(data)) is None


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str, data: dict) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        lo, hi = data["bounds"][rank], data["bounds"][rank + 1]  # uneven halves
        metric = SampleFeatures(reference=data["reference"], kid_subsets=5, kid_subset_size=100)
        metric.update(features=data["features"][lo:hi], logits=data["logits"][lo:hi])
        nll = ImageSums()
        nll.add({"nll_nats": data["nll"][lo:hi]})

        def all_reduce(t):
            torch.distributed.all_reduce(t)
            return t

        nll_out = nll.result(["nll_nats"], reduce_sum=all_reduce)
        torch.save({**metric.compute(), **nll_out}, f"{out_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_gathered_scores_equal_single_process_scores(tmp_path):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(300, 16, generator=g, dtype=torch.float64)
    ref = torch.randn(400, 16, generator=g, dtype=torch.float64) + 0.2
    data = {
        "features": features, "logits": torch.randn(300, 10, generator=g, dtype=torch.float64) * 2,
        "nll": torch.rand(300, generator=g, dtype=torch.float64) * 90, "bounds": [0, 137, 300],
        "reference": ReferenceStats.from_features(ref, keep_features=True),
    }
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path), data), nprocs=2)

    single = SampleFeatures(reference=data["reference"], kid_subsets=5, kid_subset_size=100)
    single.update(features=features, logits=data["logits"])
    expected = single.compute()
    assert float(expected["fid"]) == pytest.approx(fid_from_features(features, ref), rel=1e-12)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert float(got["num_samples"]) == 300 and float(got["count"]) == 300
        for name in ("fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
            assert float(got[name]) == pytest.approx(float(expected[name]), rel=1e-9), name
        assert float(got["nll_nats"]) == pytest.approx(float(data["nll"].mean()), rel=1e-12)
        assert float(got["nll_nats_se"]) == pytest.approx(float(data["nll"].std() / 300**0.5), rel=1e-9)


# ---- the linear probe ---------------------------------------------------------------------------------------------
def test_probe_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    centres = 10 * torch.randn(4, 6, generator=g)

    def make(n):
        y = torch.randint(0, 4, (n,), generator=g)
        return centres[y] + torch.randn(n, 6, generator=g), y

    (tx, ty), (vx, vy) = make(400), make(200)
    result = linear_probe(lambda f: f, (tx, ty, vx, vy))
    assert result == {"probe_acc": pytest.approx(1.0, abs=0.01), "probe_acc_se": pytest.approx(
        (result["probe_acc"] * (1 - result["probe_acc"]) / 200) ** 0.5, rel=1e-12), "n_train": 400, "n_test": 200}
    assert linear_probe(lambda f: f, (tx, ty, vx, vy), max_train=50)["n_train"] == 50
    # features carrying no information about the labels: chance level
    noise = linear_probe(lambda f: torch.randn(f.shape[0], 6, generator=g), (tx, ty, vx, vy))
    assert noise["probe_acc"] < 0.45
    # the binomial standard error over the 200 test images, as numpy computes it
    hits = np.zeros(200)
    hits[: round(noise["probe_acc"] * 200)] = 1
    assert noise["probe_acc_se"] == pytest.approx(hits.std() / np.sqrt(200), rel=1e-9)


def test_probe_refuses_unlabelled_data():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="no class labels"):
        linear_probe(lambda f: f, (x, torch.full((4,), -1), x, torch.zeros(4, dtype=torch.long)))


# ---- small sample counts ---------------------------------------------------------------------------------------
def test_every_fid_path_warns_when_samples_do_not_exceed_the_feature_dimension(recwarn):
    rng = np.random.default_rng(0)
    d = 16
    ref = rng.normal(size=(200, d))
    reference = ReferenceStats.from_features(ref, keep_features=True)
    assert too_few_samples(d, d) and not too_few_samples(d + 1, d)
    for n, warns in ((d, True), (d + 1, False)):
        fake = rng.normal(size=(n, d))
        metric = SampleFeatures(reference=reference, kid_subsets=2, kid_subset_size=10, pr_k=0, dc_k=0)
        metric.update(features=torch.from_numpy(fake))
        recwarn.clear()
        fid_from_features(fake, ref)
        metric.compute()
        messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
        singular = [m for m in messages if f"{n} samples for {d} feature dimensions" in m]
        assert len(singular) == (2 if warns else 0), messages  # the pure function and the wrapper, same words
    small_reference = ReferenceStats.from_features(ref[:d], keep_features=True)
    metric = SampleFeatures(reference=small_reference, kid_subsets=2, kid_subset_size=10, pr_k=0, dc_k=0)
    metric.update(features=torch.from_numpy(rng.normal(size=(100, d))))
    with pytest.warns(RuntimeWarning, match="the reference set has 16 samples"):
        metric.compute()



def test_fid_bootstrap_warns_naming_n_and_d_where_it_overstates_the_spread_across_draws(recwarn):
    """The bootstrap's fid_std warns below 40 samples per feature dimension, naming N and D; the benchmark then draws
    the samples 3 times by default and its protocol says which spread a record carries."""
    from lightning_gen.evaluation import SPREAD_DRAWS, default_repeats, spread_protocol

    rng = np.random.default_rng(0)
    d = 4
    reference = ReferenceStats.from_features(rng.normal(size=(500, d)), keep_features=True)
    for n, warns in ((BOOTSTRAP_SAMPLES_PER_DIM * d - 1, True), (BOOTSTRAP_SAMPLES_PER_DIM * d, False)):
        metric = SampleFeatures(reference=reference, kid_subsets=2, kid_subset_size=10, fid_bootstrap=5)
        metric.update(features=torch.from_numpy(rng.normal(size=(n, d))))
        recwarn.clear()
        assert float(metric.compute()["fid_std"]) > 0
        spread = [str(w.message) for w in recwarn if "FID spread" in str(w.message)]
        assert len(spread) == warns and (not warns or f"N={n} samples in D={d} feature dimensions" in spread[0])
    assert default_repeats(10_000, 128) == 1 and default_repeats(2_500, 2048) == SPREAD_DRAWS == 3
    assert spread_protocol(1, 10_000, 128) == {"draws": 1, "fid_spread": "bootstrap", "fid_spread_calibrated": True,
                                               "kid_is_spread": "within-draw", "pr_k": 3, "dc_k": 5}
    assert spread_protocol(1, 2_500, 2048)["fid_spread_calibrated"] is False
    assert spread_protocol(3, 2_500, 2048) == {"draws": 3, "fid_spread": "draws", "fid_spread_calibrated": True,
                                               "kid_is_spread": "draws", "pr_k": 3, "dc_k": 5}


# ---- the KID kernel --------------------------------------------------------------------------------------------
def test_kid_feature_scale_divides_the_features_and_none_is_torch_fidelitys_kernel():
    rng = np.random.default_rng(1)
    f1, f2 = rng.gamma(1.0, 3.0, size=(300, 32)), rng.gamma(1.2, 3.0, size=(300, 32))
    scaled = kid(f1, f2, 5, 100, feature_scale=3.0)
    assert scaled == kid(f1 / 3.0, f2 / 3.0, 5, 100)
    # same kernel as gamma = 1 / (D s^2) on the raw features
    assert scaled["kid_mean"] == pytest.approx(kid(f1, f2, 5, 100, gamma=1 / (32 * 9.0))["kid_mean"], rel=1e-9)
    assert kid_kernel(None) == "(x.y/d+1)^3" and kid_kernel(3.0) == "(x.y/d+1)^3, x/3"
    with pytest.raises(ValueError, match="feature_scale must be positive"):
        kid(f1, f2, 5, 100, feature_scale=0.0)
    assert features_module.InceptionV3.kid_feature_scale is None  # published KIDs stay comparable


@pytest.mark.parametrize("name", ["digits-lenet", "mnist-lenet"])
def test_lenet_kid_scale_belongs_to_the_shipped_weights_and_makes_the_kernel_argument_order_one(name):
    extractor = get_extractor(name)
    weights_file = {"digits-lenet": "digits_lenet.pt", "mnist-lenet": "mnist_lenet.pt"}[name]
    manifest = json.loads((WEIGHTS_DIR / "manifest.json").read_text())[weights_file]
    assert manifest["sha256"] == extractor.weights_sha256
    assert extractor.kid_feature_scale == manifest["kid_feature_scale"] > 1  # raw entries are larger than O(1)
    assert extractor.feature_dim == 128 and SampleFeatures(extractor).kid_feature_scale == extractor.kid_feature_scale
    if name == "digits-lenet":  # the training split it was measured on ships with the package
        train = Digits().splits()["train"][0]
        features, _ = compute_features(extractor, train)
        x = features.numpy() / extractor.kid_feature_scale
        assert (x * x).sum(1).mean() / x.shape[1] == pytest.approx(1.0, rel=1e-4)  # x.y/d of a vector with itself


def test_other_weights_fall_back_to_the_raw_kernel(tmp_path):
    path = tmp_path / "digits_lenet.pt"
    path.write_bytes((WEIGHTS_DIR / "digits_lenet.pt").read_bytes())
    assert get_extractor("digits-lenet", weights_path=path).kid_feature_scale is None  # no manifest beside it
