"""The restricted Boltzmann machine: its free energy and partition function against enumeration, AIS against the
exact log Z (within its error bars, and its bias direction), the CD gradient, persistent chains through steps and
a checkpoint, the refusal of non-binary data, and the Gibbs sampler against the enumerated distribution."""

from __future__ import annotations

import math

import pytest
import torch

from contracts import (Data, assert_raises, assert_samples_follow_likelihood, construct, fit_one_step,
                       likelihood_is_exact)
from lightning_gen.app.run import Run
from lightning_gen.models import RBM, Estimate
from lightning_gen.nn.ais import ais_log_partition, betas
from lightning_gen.nn.rbm import all_binary, energy, free_energy, log_partition_exact

BINARY = Data("binary", 1, 2)


def tiny_params(d: int = 6, h: int = 4, seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(d, h, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64),
            torch.randn(h, generator=g, dtype=torch.float64))


def tiny_rbm(shape=(1, 2, 3), hidden_size: int = 4, **options) -> RBM:
    """A 6-visible x 4-hidden RBM with weights far from 0 (its log Z by enumeration unless told otherwise)."""
    torch.manual_seed(0)
    model = RBM(image_shape=shape, num_levels=2, hidden_size=hidden_size, **options).eval()
    W, b, c = tiny_params(model.num_dims, hidden_size)
    with torch.no_grad():
        model.W.copy_(W), model.b.copy_(b), model.c.copy_(c)
    return model


def joint_log_z(W, b, c) -> torch.Tensor:
    """log Z from every (v, h) pair: the definition, with nothing summed out in closed form."""
    v, h = all_binary(W.shape[0], dtype=W.dtype), all_binary(W.shape[1], dtype=W.dtype)
    pairs_v, pairs_h = v.repeat_interleave(h.shape[0], 0), h.repeat(v.shape[0], 1)
    return torch.logsumexp(-energy(pairs_v, pairs_h, W, b, c), 0)


def test_free_energy_is_the_enumerated_marginal_and_log_z_the_enumerated_sum():
    W, b, c = tiny_params()
    v, h = all_binary(6, dtype=W.dtype), all_binary(4, dtype=W.dtype)
    # -F(v) = log sum_h exp(-E(v, h)), for every v
    marginal = torch.stack([torch.logsumexp(-energy(x.expand(16, -1), h, W, b, c), 0) for x in v])
    torch.testing.assert_close(-free_energy(v, W, b, c), marginal)
    exact = joint_log_z(W, b, c)
    torch.testing.assert_close(log_partition_exact(W, b, c), exact)  # enumerating the 4 hidden units
    torch.testing.assert_close(log_partition_exact(W[:3], b[:3], c), joint_log_z(W[:3], b[:3], c))  # the 3 visible


def test_tiny_rbm_likelihood_is_exact_and_sums_to_one():
    model = tiny_rbm()
    assert model.log_z_is_exact() and likelihood_is_exact(model)
    x = (all_binary(6).view(-1, 1, 2, 3) * 255).to(torch.uint8)
    total = model.log_prob(x).exp().sum().item()
    assert abs(total - 1) < 1e-6, total
    assert "exact by enumeration over the 2^4 states" in model.likelihood_protocol()


def test_ais_agrees_with_the_exact_log_z_within_its_error_bars():
    model = tiny_rbm(enumerate_up_to=0, ais_temperatures=300, ais_schedule="linear")
    exact = log_partition_exact(model.W, model.b, model.c).item()
    assert not model.log_z_is_exact()
    for seed in range(3):
        est = model.log_partition(Estimate(k=200, seed=seed))
        assert est.runs == 200 and est.temperatures == 300 and est.log_z_se > 0
        assert abs(est.log_z - exact) < 4 * est.log_z_se, (est.log_z, est.log_z_se, exact)
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    logp = model.log_prob(x, estimate=Estimate(k=200, seed=0))
    torch.testing.assert_close(logp, -model.free_energy(x).double() - model.log_partition(Estimate(k=200, seed=0)).log_z)


def test_ais_log_z_is_biased_low_and_its_z_unbiased():
    """With few temperatures the runs' weights spread widely: the mean of the runs' log Z estimates falls clearly
    below log Z (Jensen: the bias the likelihood protocol states), while the log of their mean (Z unbiased) does
    not."""
    W, b, c = (t.float() for t in tiny_params(scale=1.5))
    exact = log_partition_exact(W, b, c).item()
    result = ais_log_partition(W, b, c, torch.zeros(6), runs=20000, temperatures=4,
                               generator=torch.Generator().manual_seed(0))
    log_z0 = result.log_z - (torch.logsumexp(result.log_weights, 0) - math.log(result.runs)).item()
    per_run = result.log_weights + log_z0  # each run's own log Z estimate
    se_of_mean = (per_run.std() / math.sqrt(per_run.numel())).item()
    assert per_run.mean().item() + 10 * se_of_mean < exact, (per_run.mean().item(), se_of_mean, exact)
    assert abs(result.log_z - exact) < 4 * result.log_z_se, (result.log_z, result.log_z_se, exact)


def test_log_z_is_cached_per_weights_and_settings():
    model = tiny_rbm(enumerate_up_to=0, ais_temperatures=50)
    first = model.log_partition(Estimate(k=10, seed=0))
    assert model.log_partition(Estimate(k=10, seed=0)) is first  # one anneal per evaluation, not per batch
    assert model.log_partition(Estimate(k=10, seed=1)) is not first
    with torch.no_grad():
        model.W.mul_(1.1)
    assert model.log_partition(Estimate(k=10, seed=0)).log_z != first.log_z
    x = model.sample(6, generator=torch.Generator().manual_seed(0))
    whole = model.log_prob(x, estimate=Estimate(k=10, seed=3))
    alone = torch.cat([model.log_prob(x[i:i + 1], estimate=Estimate(k=10, seed=3)) for i in range(6)])
    torch.testing.assert_close(alone, whole)  # with a seed, an image's estimate is the same in any batch
    protocol = model.likelihood_protocol(Estimate(k=10, seed=3))
    assert protocol.startswith("ais (10 runs, 50 temperatures, paper schedule") and "s.e. over runs" in protocol
    assert "biased high" in protocol


def test_paper_schedule_has_the_papers_segments():
    beta = betas(14500, "paper")
    assert beta.shape == (14500,) and beta[0] == 0 and beta[-1] == 1 and (beta.diff() > 0).all()
    assert ((beta > 0) & (beta <= 0.5)).sum() == 500 and ((beta > 0.5) & (beta <= 0.9)).sum() == 4000
    assert_raises(lambda: betas(10, "cosine"), ValueError, "unknown AIS schedule", "an unknown schedule")


def test_cd_loss_gradient_is_the_analytic_cd_gradient():
    """The surrogate loss mean F(data) - mean F(negatives) has gradient -<v h>_data + <v h>_negatives (hidden
    probabilities), and the persistent chains hold the negatives afterwards."""
    model = tiny_rbm(persistent=True, persistent_chains=5, k=3).train()
    x = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 0, 1], [1, 1, 1, 1, 1, 0]], dtype=torch.uint8).view(3, 1, 2, 3) * 255
    loss = model.training_step((x, torch.full((3,), -1)), 0)
    loss.backward()
    neg, data = model.chains, model.visible(x)

    def stats(v):
        p = torch.sigmoid(v @ model.W + model.c).detach()
        return v.T @ p / v.shape[0], v.mean(0), p.mean(0)

    (wd, bd, cd), (wn, bn, cn) = stats(data), stats(neg)
    torch.testing.assert_close(model.W.grad, -(wd - wn))
    torch.testing.assert_close(model.b.grad, -(bd - bn))
    torch.testing.assert_close(model.c.grad, -(cd - cn))
    assert model.images_seen.item() == 3 and torch.equal(model.visible_counts, data.sum(0).double())


def test_pcd_chains_continue_from_step_to_step():
    model = tiny_rbm(persistent=True, persistent_chains=7, k=2).train()
    x = torch.zeros(4, 1, 2, 3, dtype=torch.uint8)
    batch = (x, torch.full((4,), -1))
    before = model.chains.clone()
    torch.manual_seed(5)
    model.training_step(batch, 0)
    after_one = model.chains.clone()
    assert after_one.shape == (7, 6) and not torch.equal(before, after_one)
    torch.manual_seed(6)
    model.training_step(batch, 1)
    # The second step's negatives are 2 Gibbs sweeps from the first step's, not from the data (zeros).
    from lightning_gen.nn.rbm import gibbs_chain
    torch.manual_seed(6)
    torch.testing.assert_close(model.chains, gibbs_chain(after_one, model.W, model.b, model.c, 2))
    cd = tiny_rbm(k=1).train()
    assert cd.chains.numel() == 0  # CD-k restarts at the data: no state


def test_pcd_chains_survive_a_checkpoint(tmp_path):
    data = ["--data", "contracts.TinyImages", "--data.image_shape", "[1,2,3]", "--data.num_levels", "2"]
    checkpoint = fit_one_step("lightning_gen.models.RBM", data, tmp_path,
                              ["--model.init_args.persistent", "true", "--model.init_args.persistent_chains", "9",
                               "--model.init_args.hidden_size", "4"])
    expected = torch.load(tmp_path / "outputs.pt", weights_only=True)
    model = Run.open(checkpoint).model(map_location="cpu")
    assert model.persistent and model.chains.shape == (9, 6)
    assert torch.equal(model.chains, expected["state/chains"])
    assert torch.equal(model.images_seen, expected["state/images_seen"]) and model.images_seen.item() == 4


def test_non_binary_data_is_refused_with_the_fix():
    assert_raises(lambda: RBM(image_shape=(1, 8, 8), num_levels=4), ValueError,
                  r"RBM models binary pixels.*digits_binary\.yaml or binarized MNIST", "an RBM on 4-level data")
    assert_raises(lambda: RBM(ais_schedule="cosine"), ValueError, "unknown ais_schedule", "an unknown schedule")


def test_gibbs_samples_follow_the_enumerated_likelihood():
    model = construct(RBM, BINARY, (1, 2, 2))  # 4 visible x 500 hidden: log Z by enumerating the visible layer
    assert model.log_z_is_exact()
    assert_samples_follow_likelihood(model)
    small = tiny_rbm(shape=(1, 2, 2), hidden_size=3, sample_steps=50)
    assert_samples_follow_likelihood(small, max_factor=1.0)


@pytest.mark.parametrize("n", [1, 5])
def test_samples_are_binary_draws_reproducible_from_the_generator(n):
    model = tiny_rbm(sample_steps=10)
    a = model.sample(n, generator=torch.Generator().manual_seed(0))
    assert a.dtype == torch.uint8 and a.shape == (n, 1, 2, 3) and set(a.unique().tolist()) <= {0, 255}
    assert torch.equal(a, model.sample(n, generator=torch.Generator().manual_seed(0)))


def test_a_learning_rate_schedule_anneals_the_weights_step_and_leaves_the_biases_without_decay():
    from functools import partial

    model = RBM((1, 2, 2), 2, hidden_size=3, optimizer=partial(torch.optim.SGD, lr=0.1, weight_decay=1e-3),
                lr_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5))
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "epoch"
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-3, 0.0]
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.05]


def test_ais_says_when_a_few_runs_carry_the_estimate():
    """The effective sample size of the AIS weights: near the number of runs for a slow anneal of a tiny model,
    about 1 for a sharp model annealed in 4 steps, where the protocol says the estimate has not converged and how
    to anneal more slowly, instead of printing a ± that means nothing."""
    slow = tiny_rbm(enumerate_up_to=0, ais_temperatures=300, ais_schedule="linear")
    good = slow.log_partition(Estimate(k=200, seed=0))
    assert good.converged() and good.ess > 100, good.ess
    assert "NOT CONVERGED" not in slow.likelihood_protocol(Estimate(k=200, seed=0))
    sharp = tiny_rbm(enumerate_up_to=0, ais_temperatures=3, ais_schedule="linear")
    with torch.no_grad():
        sharp.W.mul_(6)
    bad = sharp.log_partition(Estimate(k=200, seed=0))
    assert not bad.converged() and bad.ess < 20, bad.ess
    protocol = sharp.likelihood_protocol(Estimate(k=200, seed=0))
    assert "NOT CONVERGED" in protocol and "--model.init_args.ais_temperatures" in protocol, protocol
