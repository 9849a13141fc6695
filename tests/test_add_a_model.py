"""Adding a model is one class: a model defined outside the package keeps the contract through the same shared
checkers as the package's models, trains with ``lightning_gen fit`` and is benchmarked into the results store."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from contracts import (Data, assert_autoregressive, assert_log_prob_contract, assert_normalised,
                       assert_sample_contract, assert_samples_follow_likelihood, construct, fit_one_step, sharpen)
from lightning_gen.app.benchmark import main as benchmark
from lightning_gen.app.run import Run
from lightning_gen.leaderboard.store import Store
from lightning_gen.models.base import Estimate, LikelihoodModule, from_levels, to_levels


class PixelMarkovChain(LikelihoodModule):
    """Each sub-pixel given the one before it in raster order (colours innermost), from a table of logits per
    position and previous level: ``p(x_i = v | x_{i-1} = u) = softmax(logits[i, u])[v]``, level 0 before the first."""

    family: ClassVar[str] = "autoregressive"

    def __init__(self, image_shape: Sequence[int] = (1, 8, 8), num_levels: int = 2, num_classes: int = 0,
                 optimizer: OptimizerCallable = torch.optim.Adam) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        self.logits = nn.Parameter(torch.randn(self.num_dims, self.num_levels, self.num_levels))

    def log_conditionals(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        levels = to_levels(self.check_images(x), self.num_levels)
        flat = levels.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # (B, C, H, W) -> (B, H, W, C) -> (B, D)
        previous = F.pad(flat[:, :-1], (1, 0))
        logp = self.logits.log_softmax(-1)[torch.arange(self.num_dims, device=self.device), previous]  # (B, D, L)
        terms = logp.gather(-1, flat.unsqueeze(-1)).squeeze(-1)  # (B, D)
        return terms.view(levels.shape[0], *levels.shape[2:], levels.shape[1]).permute(0, 3, 1, 2)

    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        return self.log_conditionals(x, labels).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        self.check_labels(n, labels)
        probs = self.logits.softmax(-1)
        flat = torch.zeros(n, self.num_dims, dtype=torch.long, device=self.device)
        previous = torch.zeros(n, dtype=torch.long, device=self.device)
        for i in range(self.num_dims):
            previous = flat[:, i] = torch.multinomial(probs[i, previous], 1, generator=generator).squeeze(1)
        c, h, w = self.image_shape
        return from_levels(flat.view(n, h, w, c).permute(0, 3, 1, 2), self.num_levels)  # (n, D) -> (n, C, H, W)


@pytest.mark.parametrize("data", [Data("binary", 1, 2), Data("rgb3", 3, 3)], ids=str)
def test_a_model_outside_the_package_keeps_the_contract(data):
    model = sharpen(construct(PixelMarkovChain, data, 4))
    assert_sample_contract(model)
    assert_log_prob_contract(model, model.sample(5, generator=torch.Generator().manual_seed(0)))
    order = assert_autoregressive(model, model.sample(8, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(order.permute(1, 2, 0).flatten(), torch.arange(model.num_dims)), "not raster order"
    tiny = sharpen(construct(PixelMarkovChain, data, (data.channels, 2, 2) if data.channels == 1 else (3, 1, 1)))
    assert_normalised(tiny)
    assert_samples_follow_likelihood(tiny)


def test_a_model_outside_the_package_trains_and_is_benchmarked(tmp_path):
    """One step of ``lightning_gen fit`` on binarized digits, then ``lightning_gen benchmark`` of its checkpoint
    into a fresh results store: the record names the model's family and its exact test NLL."""
    run_folder = tmp_path / "markov_digits"
    checkpoint = fit_one_step(f"{__name__}.{PixelMarkovChain.__qualname__}", ["--data", "Digits", "--data.binarize",
                                                                               "true"], run_folder)
    assert (run_folder / "config.yaml").is_file()
    db = tmp_path / "results" / "leaderboard.sqlite"
    code = benchmark([str(checkpoint), "--db", str(db), "--num-samples", "64", "--batch-size", "64",
                      "--stats-cache", str(tmp_path / "stats"), "--accelerator", "cpu", "--no-progress"])
    assert code == 0
    with Store(db) as store:
        (record,) = store.records()
    assert record["model"] == "PixelMarkovChain" and record["family"] == "autoregressive"
    assert record["dataset"] == "Digits" and record["protocol"]["nll_estimator"] == "exact"

    run = Run.open(checkpoint)
    datamodule = run.datamodule()
    datamodule.setup("test")
    with torch.no_grad():
        direct = -run.model().log_prob(datamodule.datasets["test"].images).double().mean().item()
    assert math.isfinite(record["metrics"]["nll_nats"])
    assert record["metrics"]["nll_nats"] == pytest.approx(direct, rel=1e-6)
    assert record["metrics"]["fid"] is not None and record["protocol"]["num_samples"] == 64
