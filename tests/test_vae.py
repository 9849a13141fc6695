"""Autoencoder and VAE, importance-weighted likelihood and latent pictures.

The estimator is checked where the answer is known: a linear-Gaussian model has an exact marginal likelihood.
Likelihoods are checked to normalise by summing over every image of a tiny image space.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from contracts import all_levels, assert_sample_contract
from helpers import CONFIGS, REPO, ddp_fit_states, run_cli

from lightning_gen.models.base import Estimate, NoLikelihoodError
from lightning_gen.models.vae import VAE, Autoencoder
from lightning_gen.nn.latent import (KeyedNormal, diagonal_gaussian_log_prob, gaussian_kl_to_standard, image_keys,
                                     iw_log_likelihood, standard_normal_log_prob)
from lightning_gen.nn.pixels import discretized_logistic_log_prob
from lightning_gen.pictures import latent_pictures

MY_CONFIGS = ["ae_digits", "ae_mnist", "vae_binarized_mnist", "vae_cifar10", "vae_digits", "vae_mnist"]


# ---- densities -----------------------------------------------------------------------------------------------
def test_analytic_kl_equals_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(3, 4, generator=g, dtype=torch.float64)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(200_000, 3, 4, generator=g, dtype=torch.float64)
    log_ratio = diagonal_gaussian_log_prob(z, mean, logvar) - standard_normal_log_prob(z)  # (S, 3)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(z.shape[0])
    analytic = gaussian_kl_to_standard(mean, logvar)
    assert torch.all((mc - analytic).abs() < 4 * se + 1e-6), (mc, analytic, se)


@pytest.mark.parametrize("num_levels", [256, 17, 2])
def test_discretized_logistic_normalises_over_the_levels(num_levels):
    levels = torch.arange(num_levels, dtype=torch.float64)[:, None]  # (L, 1) against (1, P) parameters
    mean = torch.tensor([-3.0, -1.0, -0.3, 0.0, 0.5, 1.0, 2.5, 0.0, 0.7], dtype=torch.float64)[None]
    log_scale = torch.tensor([-7.0, -5.0, -3.0, -1.0, 0.0, 1.0, 2.0, 6.0, -9.0], dtype=torch.float64)[None]
    logp = discretized_logistic_log_prob(levels, mean, log_scale, num_levels)  # (L, P)
    assert torch.isfinite(logp).all()
    torch.testing.assert_close(logp.exp().sum(0), torch.ones(mean.shape[1], dtype=torch.float64), atol=1e-9, rtol=0)


def test_discretized_logistic_is_accurate_and_finite_in_the_tails():
    # A narrow logistic centred far from a bin: the difference of two CDFs would round to 0 in float32.
    mean = torch.tensor([0.9], requires_grad=True)
    log_scale = torch.tensor([-7.0], requires_grad=True)
    logp = discretized_logistic_log_prob(torch.tensor([100.0]), mean, log_scale, 256)
    logp.sum().backward()
    assert torch.isfinite(logp).all() and torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()
    # log(sigmoid(a) - sigmoid(b)), a, b the standardised bin edges, both far below 0 where sigmoid(t) = e^t
    # to float64 precision: log(e^a - e^b) = a + log(1 - e^(b - a)).
    s, c = math.exp(-7.0), 100 * 2 / 255 - 1
    a, b = (c + 1 / 255 - 0.9) / s, (c - 1 / 255 - 0.9) / s
    assert a < -100
    ref = a + math.log(-math.expm1(b - a))
    assert logp.item() == pytest.approx(ref, rel=1e-5)


def _tiny_vae(likelihood: str, num_levels: int, image_shape=(2, 1, 1)) -> VAE:
    torch.manual_seed(0)
    return VAE(image_shape, num_levels, 0, likelihood=likelihood, arch="mlp", z_dim=3, hidden_sizes=[8]).double()


@pytest.mark.parametrize("likelihood,num_levels", [("categorical", 256), ("logistic", 256), ("bernoulli", 2),
                                                   ("logistic", 5)])
def test_pixel_likelihood_of_the_model_sums_to_one_over_every_image(likelihood, num_levels):
    """Sum p(x | z) over all num_levels^2 images of a 2-channel 1x1 image space: the decoder's parameters are wired
    to the right channels and the distribution is normalised."""
    model = _tiny_vae(likelihood, num_levels)
    z = torch.randn(4, 3, dtype=torch.float64)
    out = model.decoder(z)  # (4, 2 * P, 1, 1)
    grid = all_levels((2, 1, 1), num_levels)[:, None]  # (L^2, 1, 2, 1, 1): one image per row, against the 4 codes
    logp = model.pixel_log_prob(out[None], grid)  # (L^2, 4)
    torch.testing.assert_close(logp.exp().sum(0), torch.ones(4, dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize("likelihood,num_levels", [("categorical", 8), ("logistic", 8), ("bernoulli", 2)])
def test_pixel_draws_follow_the_likelihood(likelihood, num_levels):
    """What ``sample`` draws is p(x | z): the frequencies of many draws match the probabilities."""
    model = _tiny_vae(likelihood, num_levels)
    out = model.decoder(torch.randn(1, 3, dtype=torch.float64))
    n = 100_000
    draws = model._draw_pixels(out.expand(n, *out.shape[1:]), torch.Generator().manual_seed(0))  # (n, 2, 1, 1)
    for channel in range(2):
        # p(x | z) factorises over sub-pixels: with the other channel fixed, normalising over this channel's
        # levels gives its marginal.
        images = torch.zeros(num_levels, 2, 1, 1, dtype=torch.long)
        images[:, channel, 0, 0] = torch.arange(num_levels)
        joint = model.pixel_log_prob(out, images).exp()
        marginal = joint / joint.sum()
        freq = torch.bincount(draws[:, channel, 0, 0], minlength=num_levels).double() / n
        assert (freq - marginal).abs().max() < 0.01, (freq, marginal)


# ---- the importance-weighted estimator on a model with an exact likelihood ----------------------------------
class LinearGaussian:
    """p(z) = N(0, I), p(x | z) = N(Wz + b, s^2 I), so p(x) = N(b, W W^T + s^2 I) exactly, and a diagonal Gaussian
    proposal q(z | x) deliberately off the true (full-covariance) posterior: diagonal, its mean shifted by half a
    posterior standard deviation, its variances 1.5 times the posterior's."""

    def __init__(self, n: int = 64, dx: int = 5, dz: int = 2, s: float = 1.0, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        kw = dict(generator=g, dtype=torch.float64)
        self.W, self.b, self.s = torch.randn(dx, dz, **kw), torch.randn(dx, **kw), s
        z = torch.randn(n, dz, **kw)
        self.x = z @ self.W.T + self.b + s * torch.randn(n, dx, **kw)  # (N, dx)
        cov = self.W @ self.W.T + s**2 * torch.eye(dx, dtype=torch.float64)
        self.exact = torch.distributions.MultivariateNormal(self.b, cov).log_prob(self.x)  # (N,)
        post_cov = torch.linalg.inv(torch.eye(dz, dtype=torch.float64) + self.W.T @ self.W / s**2)
        post_mean = (self.x - self.b) @ self.W @ post_cov / s**2  # (N, dz)
        post_var = torch.diagonal(post_cov)
        self.q_mean = post_mean + 0.5 * post_var.sqrt()
        self.q_logvar = torch.log(1.5 * post_var).expand_as(post_mean)

    def log_joint(self, z):  # (m, N, dz) -> (m, N)
        lik = torch.distributions.Normal(z @ self.W.T + self.b, self.s).log_prob(self.x).sum(-1)
        return lik + standard_normal_log_prob(z)

    def q_log_prob(self, z):
        return diagonal_gaussian_log_prob(z, self.q_mean, self.q_logvar)

    def estimate(self, k, seed=0, chunk_size=None):
        n, dz = self.q_mean.shape
        noise = KeyedNormal([seed * n + i for i in range(n)], dz, dtype=torch.float64)

        def q_sample(start, m):  # (m, N, dz)
            return self.q_mean + torch.exp(0.5 * self.q_logvar) * noise(start, m)

        return iw_log_likelihood(self.log_joint, q_sample, self.q_log_prob, k, chunk_size=chunk_size)


def test_elbo_is_below_and_iw_estimate_reaches_the_exact_log_likelihood():
    model = LinearGaussian()
    elbo = torch.stack([model.estimate(1, seed=s) for s in range(2000)]).mean(0)  # E[log w]: the ELBO
    assert torch.all(elbo < model.exact), (elbo - model.exact)
    assert (model.exact - elbo).mean() > 0.2  # the proposal is really off, so the next check means something
    iw = model.estimate(5000, chunk_size=512)
    assert iw.dtype == torch.float64
    assert (iw - model.exact).abs().max() < 0.05, (iw - model.exact)


def test_chunked_and_unchunked_estimates_agree():
    model = LinearGaussian()
    whole = model.estimate(300, seed=3)
    for chunk in (1, 7, 64, 299, 1000):
        torch.testing.assert_close(model.estimate(300, seed=3, chunk_size=chunk), whole, atol=1e-10, rtol=0)


def test_keyed_noise_of_an_item_depends_on_its_key_and_draw_index_only():
    """Draw j of an item is the same whatever the other items, the chunks it is drawn in, or the number drawn."""
    together = KeyedNormal([11, 12, 13], 3)(0, 300)  # (300, 3 items, 3)
    alone = KeyedNormal([13], 3)
    chunks = torch.cat([alone(start, min(13, 300 - start)) for start in range(0, 300, 13)])
    assert torch.equal(chunks[:, 0], together[:, 2])
    assert torch.equal(KeyedNormal([12], 3)(0, 50)[:, 0], together[:50, 1])  # k = 50: the first 50 of k = 300
    assert not torch.allclose(together[:, 0], together[:, 1])
    flat = together.flatten()
    assert abs(flat.mean()) < 0.1 and abs(flat.std() - 1) < 0.05


def test_image_keys_name_the_seed_and_the_image_not_its_position():
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    keys = image_keys(x, seed=0)
    assert image_keys(x.flip(0), seed=0) == keys[::-1] and len(set(keys)) == 4
    assert image_keys(x, seed=1) != keys
    assert all(0 <= key < 2**63 for key in keys)


def test_estimate_does_not_decrease_with_k_on_average():
    model = LinearGaussian(n=200)
    mean_gap = {k: torch.stack([model.estimate(k, seed=s) - model.exact for s in range(10)]).mean().item()
                for k in (1, 10, 100)}
    assert mean_gap[1] < mean_gap[10] < mean_gap[100] < 0.01, mean_gap


# ---- the VAE ------------------------------------------------------------------------------------------------
def test_unknown_likelihood_and_bernoulli_on_8bit_data_fail_at_construction():
    with pytest.raises(ValueError, match="bernoulli.*categorical.*logistic"):
        VAE((1, 8, 8), 256, likelihood="gaussian")
    with pytest.raises(ValueError, match="binary data"):
        VAE((1, 8, 8), 256, likelihood="bernoulli")
    with pytest.raises(ValueError, match="conv.*mlp"):
        VAE((1, 8, 8), 2, arch="resnet")


@pytest.mark.parametrize("image_shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("likelihood,num_levels", [("bernoulli", 2), ("categorical", 256), ("logistic", 256)])
def test_vae_samples_keep_the_sample_contract_for_every_likelihood(image_shape, likelihood, num_levels):
    """The model contract (tests/test_contract.py) builds the VAE from its defaults; here its other likelihoods,
    at the shapes of the data sets."""
    assert_sample_contract(VAE(image_shape, num_levels, likelihood=likelihood, z_dim=4, channels=4).eval(), 3)


def test_vae_log_prob_bounds_and_chunking():
    torch.manual_seed(0)
    model = VAE((1, 8, 8), 256, likelihood="logistic", z_dim=4, channels=8).eval()
    x = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    small = model.log_prob(x, estimate=Estimate(k=50, chunk=20, seed=1))
    large = model.log_prob(x, estimate=Estimate(k=50, chunk=100_000, seed=1))
    assert small.shape == (6,) and small.dtype == torch.float64
    torch.testing.assert_close(small, large, atol=1e-3, rtol=0)  # float32 decoder, different batch sizes
    with torch.no_grad():
        recon, kl = model.elbo_terms(x.repeat(200, 1, 1, 1))  # 200 one-sample ELBOs of each image
        elbo = -(recon + kl).view(200, 6).mean(0)
    assert (small - elbo).mean() > 0  # the 50-sample bound is above the ELBO on average
    assert model.has_likelihood and model.iw_samples == 5000


def test_an_images_importance_weighted_estimate_does_not_depend_on_its_batch_or_chunks():
    """Each image of a batch of 250 scores exactly what it scores alone (float64 weights, so only the noise could
    make them differ), and whatever the chunk size; another seed gives other estimates."""
    torch.manual_seed(0)
    model = VAE((1, 8, 8), 2, z_dim=4, channels=4).double().eval()
    x = torch.randint(0, 2, (250, 1, 8, 8), dtype=torch.uint8) * 255
    batch = model.log_prob(x, estimate=Estimate(k=20, seed=0))
    alone = torch.cat([model.log_prob(x[i:i + 1], estimate=Estimate(k=20, chunk=3, seed=0)) for i in range(250)])
    torch.testing.assert_close(alone, batch, atol=1e-9, rtol=0)
    flipped = model.log_prob(x.flip(0), estimate=Estimate(k=20, chunk=1000, seed=0)).flip(0)
    torch.testing.assert_close(flipped, batch, atol=1e-9, rtol=0)
    assert (model.log_prob(x, estimate=Estimate(k=20, seed=1)) - batch).abs().mean() > 1e-3
    # Without a seed the global RNG picks one: a fresh estimate per call.
    torch.manual_seed(0)
    first = model.log_prob(x[:5], estimate=Estimate(k=20))
    assert not torch.equal(first, model.log_prob(x[:5], estimate=Estimate(k=20)))
    torch.manual_seed(0)
    assert torch.equal(first, model.log_prob(x[:5], estimate=Estimate(k=20)))


def test_kl_warmup_weight_rises_linearly_to_beta():
    model = VAE((1, 8, 8), 2, z_dim=2, channels=4, beta=2.0, kl_warmup_steps=10)
    assert model.kl_weight() == pytest.approx(0.2)  # global_step 0 (no trainer): the first step's weight
    assert VAE((1, 8, 8), 2, z_dim=2, channels=4, beta=0.5).kl_weight() == 0.5


def test_latent_pictures_include_the_manifold_for_two_latent_dimensions():
    model = VAE((1, 8, 8), 2, z_dim=2, channels=4)
    x = torch.randint(0, 2, (10, 1, 8, 8), dtype=torch.uint8) * 255
    grids = latent_pictures(model, x, num_samples=4, manifold_side=5, num_interpolations=2, interpolation_steps=3)
    assert set(grids) == {"reconstructions", "samples", "sample_means", "interpolations", "manifold"}
    assert all(g.dtype == np.uint8 for g in grids.values())
    assert grids["manifold"].shape == (5 * 10 + 2, 5 * 10 + 2, 1)  # 8x8 tiles, 2-pixel padding
    assert grids["interpolations"].shape == (2 * 10 + 2, 5 * 10 + 2, 1)  # 2 rows: input, 3 steps, input
    assert "manifold" not in latent_pictures(VAE((1, 8, 8), 2, z_dim=3, channels=4), x, num_samples=4)


# ---- the autoencoder ----------------------------------------------------------------------------------------
def test_autoencoder_has_no_likelihood_and_samples_from_its_code_statistics():
    torch.manual_seed(0)
    model = Autoencoder((1, 8, 8), 256, 10, z_dim=3, channels=4, code_momentum=1.0)
    x = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    assert not model.has_likelihood
    with pytest.raises(NoLikelihoodError):
        model.log_prob(x)
    # momentum 1: the running statistics are exactly those of the last batch's codes
    z = model.encode(x).detach()
    model.update_code_statistics(z)
    torch.testing.assert_close(model.code_mean, z.mean(0))
    torch.testing.assert_close(model.code_cov, torch.cov(z.T, correction=0), atol=1e-5, rtol=1e-4)
    # sampling draws codes from that Gaussian
    codes = model.prior_transform(torch.randn(200_000, 3))
    torch.testing.assert_close(codes.mean(0), model.code_mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(codes.T), model.code_cov, atol=0.02, rtol=0.05)
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.dtype == torch.uint8 and s.shape == (5, 1, 8, 8)


# ---- runs (slow) --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", MY_CONFIGS)
def test_config_fast_dev_run_writes_pictures(name, fake_data_root, tmp_path):
    proc = run_cli(["fit", "--config", str(CONFIGS / f"{name}.yaml"), "--trainer.fast_dev_run", "true",
                    "--data.init_args.root", str(fake_data_root), "--trainer.default_root_dir", str(tmp_path)],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    pictures = {p.name.split("_step_")[0] for p in (tmp_path / "pictures").glob("*.png")}
    expected = {"reconstructions", "samples", "sample_means", "interpolations"}
    if name == "vae_digits":  # z_dim = 2
        expected.add("manifold")
    assert pictures == expected


@pytest.mark.slow
def test_ddp_keeps_parameters_identical_on_both_ranks(tmp_path):
    states = ddp_fit_states(CONFIGS / "vae_digits.yaml", tmp_path, steps=3)
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], atol=0, rtol=0, msg=key)


@pytest.mark.slow
def test_autoencoder_codes_of_digits_beat_chance_and_its_commands_run(tmp_path):
    """A few epochs of the digits autoencoder, then ``lightning-gen probe`` and ``lightning-gen pictures`` on its
    checkpoint."""
    proc = run_cli(["fit", "--config", str(CONFIGS / "ae_digits.yaml"), "--trainer.max_epochs", "3",
                    "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (ckpt,) = tmp_path.glob("**/checkpoints/last.ckpt")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "lightning_gen", "probe", str(ckpt), "--data", "Digits"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n_test"] == 300 and result["probe_acc"] > 0.5  # chance is 0.1
    out = subprocess.run([sys.executable, "-m", "lightning_gen", "pictures", str(ckpt), "--out",
                          str(tmp_path / "pics")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert {p.name for p in (tmp_path / "pics").glob("*.png")} == {
        "reconstructions.png", "samples.png", "sample_means.png", "interpolations.png"}


def test_lr_scheduler_steps_once_per_epoch(tmp_path):
    """``lr_scheduler`` (the repro recipes' MultiStepLR for Burda's stages): stepped at each epoch's end."""
    import lightning as L

    from lightning_gen.data import Digits

    from functools import partial

    model = VAE((1, 8, 8), 2, arch="mlp", hidden_sizes=[8], z_dim=2,
                optimizer=partial(torch.optim.Adam, lr=1e-3),
                lr_scheduler=partial(torch.optim.lr_scheduler.MultiStepLR, milestones=[1, 2], gamma=0.5))
    seen = []

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    L.Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()],
              default_root_dir=tmp_path).fit(model, Digits(batch_size=16, binarize=True))
    assert seen == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_iwae_bound_tightens_with_k_and_matches_the_formula():
    """IWAE training [Burda et al. 2015, eq. 8]: -log mean_i p(x, z_i) / q(z_i | x). With the same noise it equals
    the hand computation; in expectation it falls as k grows (k=1 is the one-sample negative ELBO), and never
    below the k=5000 estimate of -log p(x) by more than noise."""
    torch.manual_seed(0)
    model = VAE((1, 4, 4), 2, arch="mlp", hidden_sizes=[16], z_dim=3).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    x = (torch.rand(6, 1, 4, 4) < 0.5).to(torch.uint8) * 255
    got = model.iwae_loss(x, 4, generator=torch.Generator().manual_seed(1))
    eps = torch.randn((4, 6, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    levels = model._levels(x)
    mean, logvar = model._posterior(levels)
    log_w = []
    for i in range(4):
        z = mean + torch.exp(0.5 * logvar) * eps[i]
        log_w.append(model.pixel_log_prob(model.decoder(z), levels) + standard_normal_log_prob(z)
                     - diagonal_gaussian_log_prob(z, mean, logvar))
    want = -(torch.logsumexp(torch.stack(log_w), 0) - math.log(4))
    assert torch.allclose(got, want, atol=1e-10)

    def draws(loss_fn, n=1000):
        return torch.stack([loss_fn().detach() for _ in range(n)])  # (n, 6)

    k1, k5, k50 = (draws(lambda: model.iwae_loss(x, k)).mean(0) for k in (1, 5, 50))
    nll = -model.log_prob(x, estimate=Estimate(k=5000, seed=0))
    assert (k1 > k5).all() and (k5 > k50).all() and (k50 > nll - 0.05).all()
    # k = 1 has the expectation of the analytic-KL negative ELBO: equal within 4 standard errors of the difference
    one, elbo = draws(lambda: model.iwae_loss(x, 1)), draws(lambda: sum(model.elbo_terms(x)))
    se = (one.var(0) / len(one) + elbo.var(0) / len(elbo)).sqrt()
    assert ((one.mean(0) - elbo.mean(0)).abs() < 4 * se).all()


def test_iwae_training_step_uses_the_bound_and_refuses_a_kl_weight():
    model = VAE((1, 4, 4), 2, arch="mlp", hidden_sizes=[8], z_dim=2, train_samples=5)
    x = (torch.rand(3, 1, 4, 4) < 0.5).to(torch.uint8) * 255
    torch.manual_seed(2)
    loss = model.training_step((x, None), 0)
    torch.manual_seed(2)
    assert torch.allclose(loss, model.iwae_loss(x, 5).mean() / 16)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="no separate KL term"):
        VAE((1, 4, 4), 2, arch="mlp", train_samples=5, beta=0.5)
    with pytest.raises(ValueError, match="at least 1"):
        VAE((1, 4, 4), 2, arch="mlp", train_samples=0)


def test_iwae_validation_reports_its_training_bound(tmp_path):
    """An IWAE (``train_samples`` k > 1) is selected by the k-sample bound it trains on, not by the ELBO: validation
    logs ``val/iwae_nats``, the mean over the validation images of ``-log_prob(x, estimate=Estimate(k, seed=0))``; a VAE does not."""
    import lightning as L

    from lightning_gen.data import Digits

    data = Digits(batch_size=16, binarize=True)
    for k in (5, 1):
        model = VAE((1, 8, 8), 2, arch="mlp", hidden_sizes=[8], z_dim=2, train_samples=k)
        trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=3, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, default_root_dir=tmp_path)
        trainer.fit(model, data)
        if k == 1:
            assert "val/iwae_nats" not in trainer.callback_metrics
            continue
        images = torch.cat([x for x, _ in list(data.val_dataloader())[:3]])
        expected = -model.log_prob(images, estimate=Estimate(k=5, seed=0)).mean()
        assert trainer.callback_metrics["val/iwae_nats"].item() == pytest.approx(expected.item(), rel=1e-6)
        assert trainer.callback_metrics["val/elbo_nats"].item() > 0


def test_the_vae_reports_through_the_likelihood_modules_evaluation(tmp_path):
    """The VAE's evaluation is LikelihoodModule's steps with its own values: each name the mean of its per-image
    values, the negative ELBO and the NLL also in bits/dim, and the test NLL the ``iw_samples`` estimate (seed 0)."""
    import lightning as L

    from lightning_gen.data import Digits
    from lightning_gen.models.base import LikelihoodModule, bits_per_dim

    data = Digits(batch_size=32, binarize=True)
    model = VAE((1, 8, 8), 2, arch="mlp", hidden_sizes=[8], z_dim=2, iw_samples=4)
    assert isinstance(model, LikelihoodModule)
    trainer = L.Trainer(limit_val_batches=2, limit_test_batches=2, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    val = trainer.validate(model, data, verbose=False)[0]
    assert set(val) == {"val/elbo_nats", "val/elbo_bpd", "val/recon_nats", "val/kl_nats"}
    assert val["val/elbo_nats"] == pytest.approx(val["val/recon_nats"] + val["val/kl_nats"], rel=1e-5)
    test = trainer.test(model, data, verbose=False)[0]
    assert set(test) == {f"test/{name}" for name in ("elbo_nats", "elbo_bpd", "recon_nats", "kl_nats", "nll_nats",
                                                    "nll_bpd", "iw_samples")}
    images = torch.cat([x for x, _ in list(data.test_dataloader())[:2]])
    expected = -model.log_prob(images, estimate=Estimate(seed=0)).double().mean()
    assert test["test/nll_nats"] == pytest.approx(expected.item(), rel=1e-6)
    assert test["test/nll_bpd"] == pytest.approx(bits_per_dim(expected, 64).item(), rel=1e-6)


@pytest.mark.parametrize("train_samples", [1, 5])
def test_training_loss_is_float32_under_bf16_autocast(train_samples):
    """The training loss (ELBO, and IWAE for k > 1) of a random 784-200-200-50 MLP VAE is the same under CPU bf16
    autocast as without it, to 1e-4 nats an image: the log-likelihood sums run in float32 (issue 25: 1.56 nats
    apart before)."""
    torch.manual_seed(0)
    model = VAE((1, 28, 28), 2, arch="mlp", hidden_sizes=[200, 200], z_dim=50, train_samples=train_samples)
    x = (torch.rand(16, 1, 28, 28) < 0.3).to(torch.uint8) * 255

    def loss():
        generator = torch.Generator().manual_seed(1)
        if train_samples > 1:
            return model.iwae_loss(x, train_samples, generator=generator)
        return sum(model.elbo_terms(x, generator=generator))

    fp32 = loss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = loss()
    assert fp32.dtype == bf16.dtype == torch.float32 and fp32.shape == (16,)
    assert (bf16 - fp32).abs().max().item() < 1e-4
