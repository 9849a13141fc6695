"""NADE and MADE: exact likelihoods, the autoregressive property, the mask ensemble, samplers, the repro configs.

The generic contract (every model class) is tested elsewhere; these are the properties specific to the two models.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from contracts import all_images, image_index
from helpers import REPO, resolved_config
from lightning_gen.app.cli import main
from lightning_gen.data import BinarizedMNIST
from lightning_gen.data.base import DATA_ENV
from lightning_gen.models.base import to_levels
from lightning_gen.models.made import MADE
from lightning_gen.models.nade import NADE, _NADELogits

SHAPE = (1, 2, 3)  # D = 6: 64 binary images, small enough to enumerate


def scrambled(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The model in float64 with large random weights, so its distribution is far from uniform."""
    torch.manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 1.5)
    return model.eval()


MODELS = {
    "nade": lambda: NADE(SHAPE, hidden_size=5),
    "made_1mask": lambda: MADE(SHAPE, hidden_sizes=[7]),
    "made_8masks_order_agnostic": lambda: MADE(SHAPE, hidden_sizes=[7, 9], num_masks=8, order_agnostic=True),
    "made_4masks_connectivity": lambda: MADE(SHAPE, hidden_sizes=[7], num_masks=4),
    "made_direct_4masks_order_agnostic": lambda: MADE(SHAPE, hidden_sizes=[7], num_masks=4, order_agnostic=True,
                                                      direct_connection=True),
}


def orderings(model) -> list[torch.Tensor]:
    """Each mask's ordering: position in the sampling order of every raster pixel."""
    if isinstance(model, NADE):
        return [torch.arange(model.num_dims)]
    return [degrees - 1 for degrees in model.input_degrees]


def logits_fn(model, k: int):
    return model.logits if isinstance(model, NADE) else (lambda inputs: model.logits(inputs, k))


@pytest.mark.parametrize("name", MODELS)
def test_probabilities_of_all_images_sum_to_one(name):
    model = scrambled(MODELS[name]())
    with torch.no_grad():
        log_p = model.log_prob(all_images(SHAPE, 2))
    assert log_p.shape == (64,)
    assert abs(log_p.exp().sum().item() - 1.0) < 1e-6
    assert log_p.max() - log_p.min() > 3.0  # not the uniform distribution, where normalisation is trivial


@pytest.mark.parametrize("name", MODELS)
def test_each_conditional_depends_only_on_earlier_pixels(name):
    model = scrambled(MODELS[name]())
    for k, order in enumerate(orderings(model)):
        inputs = torch.randint(0, 2, (3, model.num_dims), dtype=torch.float64, requires_grad=True)
        logits = logits_fn(model, k)(inputs)
        earlier_seen = 0.0
        for d in range(model.num_dims):
            (grad,) = torch.autograd.grad(logits[:, d].sum(), inputs, retain_graph=True)
            later = order >= order[d]  # itself and every pixel after it in this mask's ordering
            assert (grad[:, later] == 0).all(), f"mask {k}: logit of pixel {d} sees pixels {later.nonzero().tolist()}"
            earlier_seen += grad[:, ~later].abs().sum().item()
        assert earlier_seen > 0  # the conditionals do depend on earlier pixels: the test is not vacuous


def test_made_direct_connection_is_the_masked_fvsbn_term():
    """With the hidden path silenced, the logits are the biases plus the direct term over strictly earlier inputs."""
    model = scrambled(MODELS["made_direct_4masks_order_agnostic"]())
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.zero_()
    inputs = torch.randint(0, 2, (5, model.num_dims), dtype=torch.float64)
    for k, order in enumerate(orderings(model)):
        earlier = (order[:, None] > order[None, :]).double()  # [d, j]: pixel j comes before pixel d
        expected = model.layers[-1].bias + inputs @ (model.direct.weight * earlier).T
        torch.testing.assert_close(model.logits(inputs, k), expected)


def test_nade_backward_pass_matches_autograd_of_the_plain_formula():
    torch.manual_seed(0)
    b, d, h = 4, 7, 5
    args = [torch.randint(0, 2, (b, d)).double().requires_grad_(), torch.randn(d, h, dtype=torch.float64),
            torch.randn(d, h, dtype=torch.float64), torch.randn(d, dtype=torch.float64),
            torch.randn(h, dtype=torch.float64)]
    args = [args[0]] + [a.requires_grad_() for a in args[1:]]

    def reference(x, W, V, b, c):  # a_d = c + sum_{j<d} x_j W_j as an explicit exclusive cumulative sum
        a = F.pad(torch.cumsum(x[:, :, None] * W[None], 1)[:, :-1], (0, 0, 1, 0)) + c
        return (torch.sigmoid(a) * V).sum(-1) + b

    torch.testing.assert_close(_NADELogits.apply(*args), reference(*args))
    assert torch.autograd.gradcheck(_NADELogits.apply, args)


def test_made_ensemble_log_prob_is_the_log_mean_exp_over_its_masks():
    model = scrambled(MODELS["made_8masks_order_agnostic"]())
    x = all_images(SHAPE, 2)[::5]
    bits = (x > 0).permute(0, 2, 3, 1).reshape(x.shape[0], -1).double()  # (N, C, H, W) -> (N, D), raster
    per_mask = []
    for k in range(model.num_masks):
        logits = model.logits(bits, k)  # Bernoulli log-likelihood by hand; log(1 - sigmoid(l)) = logsigmoid(-l)
        per_mask.append((bits * F.logsigmoid(logits) + (1 - bits) * F.logsigmoid(-logits)).sum(1))
    per_mask = torch.stack(per_mask)  # (K, N)
    by_hand = (per_mask.exp().mean(0)).log()
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x), by_hand)
    assert (per_mask.std(0) > 0.1).all()  # the masks are different models, so the average is not trivial
    assert len({tuple(o.tolist()) for o in model.input_degrees}) == model.num_masks  # distinct orderings


def test_made_training_step_t_trains_mask_t_mod_k():
    model = scrambled(MODELS["made_4masks_connectivity"]()).train()
    x = all_images(SHAPE, 2)[:16]
    bits = (x > 0).permute(0, 2, 3, 1).reshape(x.shape[0], -1).double()
    losses = []
    for step in range(6):
        # Just what training_step reads of a Trainer: the step count, and "not a logging step".
        model.trainer = SimpleNamespace(global_step=step, fast_dev_run=False,
                                        _logger_connector=SimpleNamespace(should_update_logs=False))
        losses.append(model.training_step((x, torch.full((16,), -1)), step))
        nll = F.binary_cross_entropy_with_logits(model.logits(bits, step % 4), bits, reduction="none").sum(1)
        torch.testing.assert_close(losses[-1], nll.mean() / model.num_dims)
    torch.testing.assert_close(losses[4], losses[0])
    assert len({round(loss.item(), 6) for loss in losses[:4]}) == 4  # four different masks were used
    with torch.no_grad():  # none of them is the ensemble that log_prob evaluates
        assert not any(torch.isclose(loss * model.num_dims, -model.log_prob(x).mean()) for loss in losses)


@pytest.mark.parametrize("name", MODELS)
def test_samples_are_binary_uint8_and_reproducible(name):
    model = scrambled(MODELS[name]())
    draw = lambda seed: model.sample(40, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = draw(0), draw(0), draw(1)
    assert a.dtype == torch.uint8 and a.shape == (40, *SHAPE)
    assert set(a.unique().tolist()) <= {0, 255}
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    with pytest.raises(ValueError, match="not class-conditional"):
        model.sample(2, labels=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("name", MODELS)
def test_samples_follow_the_model_distribution(name):
    """Sampler and log_prob describe the same distribution (for MADE's ensemble: the mixture over masks)."""
    model = scrambled(MODELS[name]())
    n = 20000
    samples = model.sample(n, generator=torch.Generator().manual_seed(0))
    empirical = torch.bincount(image_index(to_levels(samples, 2), 2), minlength=64).double() / n
    with torch.no_grad():
        p = model.log_prob(all_images(SHAPE, 2)).exp()
    total_variation = 0.5 * (empirical - p).abs().sum().item()
    assert total_variation < 0.03  # sampling noise alone gives about 0.01 at this n


@pytest.mark.parametrize("cls", [NADE, MADE])
def test_multi_level_data_is_refused_with_the_fix(cls):
    with pytest.raises(ValueError, match="binarize: true"):
        cls((1, 8, 8), num_levels=256)


@pytest.mark.parametrize("config", sorted((REPO / "configs" / "repro").glob("*.yaml")), ids=lambda p: p.stem)
def test_repro_config_fast_dev_run(config: Path, fake_data_root, tmp_path, monkeypatch):
    """The one-core reproduction recipes train and validate one batch (configs/*.yaml are swept elsewhere)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(fake_data_root))
    main(["fit", "--config", str(config), "--trainer.fast_dev_run", "true", "--trainer.default_root_dir",
          str(tmp_path)])


def test_set_lr_rewrites_only_the_learning_rate_a_training_checkpoint_resumes_at(fake_data_root, tmp_path):
    """lightning-gen set-lr: a stage of a step schedule; weights and the rest of the optimizer state are kept."""
    assert main(["fit", "--model", "NADE", "--model.hidden_size", "16", "--data", "BinarizedMNIST",
                 "--data.root", str(fake_data_root), "--data.batch_size", "7", "--trainer.max_epochs", "1",
                 "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
                 "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)]) == 0
    (ckpt,) = tmp_path.glob("**/*.ckpt")

    assert main(["set-lr", "--ckpt", str(ckpt), "--lr", "0.000125", "--out", str(tmp_path / "stage.ckpt")]) == 0
    before, after = (torch.load(p, map_location="cpu", weights_only=True) for p in (ckpt, tmp_path / "stage.ckpt"))
    assert after["optimizer_states"][0]["param_groups"][0]["lr"] == 0.000125
    assert before["optimizer_states"][0]["param_groups"][0]["lr"] != 0.000125
    assert after["optimizer_states"][0]["state"].keys() == before["optimizer_states"][0]["state"].keys()
    for key, value in before["state_dict"].items():
        assert torch.equal(after["state_dict"][key], value)


@pytest.mark.parametrize("config", sorted((REPO / "configs" / "repro").glob("vae_*.yaml")), ids=lambda p: p.stem)
def test_vae_recipe_schedule_is_burdas_eight_stages_compressed_to_its_epochs(config: Path):
    """Burda et al.'s 3^i passes at 1e-3 * 10^(-i/7), i = 0..7, compressed to the config's max_epochs E (stage i
    ends at max(end_{i-1} + 1, round(E * end_i / 3280))): the learning rate of every epoch under the config's
    MultiStepLR is the stage's."""
    cfg = resolved_config(config)  # the recipe composes with configs/shared and its model/ and data/ groups
    epochs = cfg["trainer"]["max_epochs"]
    ends, previous = [], 0
    for i in range(7):
        previous = max(previous + 1, round(epochs * sum(3 ** j for j in range(i + 1)) / 3280))
        ends.append(previous)
    scheduler = cfg["model"]["init_args"]["lr_scheduler"]
    assert scheduler["class_path"] == "torch.optim.lr_scheduler.MultiStepLR"
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, **scheduler["init_args"])
    for epoch in range(epochs):
        stage = sum(end <= epoch for end in ends)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 10 ** (-stage / 7), rel=1e-9), epoch
        optimizer.step()
        schedule.step()
    assert stage == 7


def test_curve_reads_each_x_axis_and_draws_one_panel_per_axis(tmp_path):
    """lightning-gen curve: validation points against epoch, step or WallClock minutes; rows without the x column
    (a stage run without WallClock) are skipped, and a later stage wins on the same x."""
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("epoch,step,time/train_minutes,val/nll_nats,train/loss\n"
                     "0,99,1.5,100.0,\n0,120,,,3.0\n1,199,3.0,95.0,\n")
    second.write_text("epoch,step,val/nll_nats\n1,199,94.0\n2,299,93.0\n")  # resumed without WallClock
    from lightning_gen.app import curve

    assert curve.read_curve([str(first), str(second)], "val/nll_nats", "epoch") == [(0, 100.0), (1, 94.0),
                                                                                        (2, 93.0)]
    assert curve.read_curve([str(first)], "val/nll_nats", "step") == [(99, 100.0), (199, 95.0)]
    assert curve.read_curve([str(first), str(second)], "val/nll_nats", "minutes") == [(1.5, 100.0), (3.0, 95.0)]
    out = tmp_path / "curve.png"
    assert main(["curve", "--metrics", str(first), "--x", "step", "minutes", "--paper", "90", "--out", str(out)]) == 0
    from PIL import Image

    assert Image.open(out).size == (2 * 560, 440)


def test_curve_minutes_from_sample_grid_file_times(tmp_path):
    """A run without the WallClock column: ``--minutes-from-grids`` times each validation row by the sample grid
    written at its step (or one step off), counted from the run's config.yaml; rows with no grid are skipped."""
    run = tmp_path / "version_0"
    (run / "samples").mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,step,val/nll_nats\n0,499,100.0\n1,999,95.0\n2,1499,94.0\n")
    (run / "config.yaml").write_text("{}")
    os.utime(run / "config.yaml", (1000.0, 1000.0))
    for step, seconds in ((500, 1090.0), (999, 1180.0)):  # epoch 0's grid one step after its row; none for epoch 2
        grid = run / "samples" / f"step_{step:07d}.png"
        grid.write_bytes(b"")
        os.utime(grid, (seconds, seconds))
    from lightning_gen.app import curve

    metrics = [str(run / "metrics.csv")]
    assert curve.read_curve(metrics, "val/nll_nats", "minutes") == []
    assert curve.read_curve(metrics, "val/nll_nats", "minutes", from_grids=True) == [(1.5, 100.0), (3.0, 95.0)]
    assert curve.read_curve(metrics, "val/nll_nats", "epoch", from_grids=True) == [(0, 100.0), (1, 95.0),
                                                                                      (2, 94.0)]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["fvsbn_binarized_mnist_static", "vae_binarized_mnist_dynamic"])
def test_reproduce_sh_trains_and_stores_a_row_beside_the_published_ones(recipe, fake_data_root, tmp_path):
    """scripts/reproduce.sh: one command trains a recipe and writes its record (the full test split, with its
    standard error) into results/repro.sqlite, in the dashboard section of the published rows it compares with."""
    from lightning_gen.leaderboard.html import render_dashboard
    from lightning_gen.leaderboard.ranking import build_entries
    from lightning_gen.leaderboard.store import Store

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "LIGHTNING_GEN_DATA": str(fake_data_root),
           "LIGHTNING_GEN": f"{sys.executable} -m lightning_gen", "BENCHMARK_ARGS": "--iw-samples 8"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "reproduce.sh"), str(REPO / "configs" / "repro" /
                                                                            f"{recipe}.yaml"),
                           "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
                           "--trainer.enable_progress_bar", "false"], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    [record] = Store(tmp_path / "results" / "repro.sqlite").records()
    dataset_id = "binarized-mnist-" + recipe.rsplit("_", 1)[1]
    assert record["run_name"] == recipe and record["dataset_id"] == dataset_id
    test_images = BinarizedMNIST(str(fake_data_root), binarization=recipe.rsplit("_", 1)[1]).splits()["test"][0]
    assert record["protocol"]["num_test_images"] == len(test_images) and record["metrics"]["nll_nats_se"] > 0
    assert record["metrics"]["fid"] is None  # likelihood only, unless BENCHMARK_ARGS asks for samples
    assert record["protocol"]["nll_estimator"] == ("exact" if recipe.startswith("fvsbn") else
                                                   "importance-weighted k=8")
    page = render_dashboard(build_entries([record]))
    section = page[page.index(f'data-dataset="{dataset_id}"'):]
    assert recipe in section[:section.index("</section>")] and "published" in section[:section.index("</section>")]

    usage = subprocess.run(["bash", str(REPO / "scripts" / "reproduce.sh"), "no-such.yaml"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
