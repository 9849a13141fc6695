"""``lightning-gen check MODULE.CLASS`` on models outside the package (issue 29): a correct one passes, a
non-causal one fails with a one-line reason naming the sub-pixel that sees itself, a missing module is a usage
error that says how to make it importable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: A binary fully visible belief network outside the package: one linear layer from the pixels to each pixel's
#: logit, masked strictly lower-triangular (``Good``) or with its diagonal too (``Leaky``: pixel d sees itself).
MODELS = '''
import torch
from torch import nn
from lightning_gen.models.base import LikelihoodModule, from_levels, to_levels


class Good(LikelihoodModule):
    family = "baseline"
    diagonal = -1  # tril offset of the mask: -1 is strictly below the diagonal
    saves_hyperparameters = True

    def __init__(self, image_shape=(1, 4, 4), num_levels=2, num_classes=0):
        super().__init__(image_shape, num_levels, num_classes)
        if self.saves_hyperparameters:
            self.save_hyperparameters()
        if num_levels != 2:
            raise ValueError("binary images only")
        d = self.num_dims
        self.weight = nn.Parameter(torch.randn(d, d) * 0.1)
        self.bias = nn.Parameter(torch.zeros(d))
        self.register_buffer("mask", torch.ones(d, d).tril(self.diagonal))

    def logits(self, bits):
        return bits @ (self.weight * self.mask).T + self.bias

    def log_conditionals(self, x, labels=None):
        bits = to_levels(self.check_images(x), 2).flatten(1).float()
        terms = -nn.functional.binary_cross_entropy_with_logits(self.logits(bits), bits, reduction="none")
        return terms.view(x.shape)

    def log_prob(self, x, labels=None, *, estimate=None):
        return self.log_conditionals(x, labels).flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n, *, generator=None, labels=None):
        self.check_labels(n, labels)
        bits = torch.zeros(n, self.num_dims)
        for d in range(self.num_dims):
            p = torch.sigmoid(self.logits(bits)[:, d])
            bits[:, d] = (torch.rand(n, generator=generator) < p).float()
        return from_levels(bits.long().view(n, *self.image_shape), 2)


class Leaky(Good):
    diagonal = 0  # the mask keeps the diagonal: pixel d's logit sees pixel d


class Unsaved(Good):
    saves_hyperparameters = False  # its checkpoint cannot say which class to rebuild
'''


def check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "mymod.py").write_text(textwrap.dedent(MODELS))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "lightning_gen", "check", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_check_passes_a_correct_outside_model(tmp_path):
    done = check(tmp_path, "mymod.Good")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout and "PASS  causality" in done.stdout, done.stdout
    assert "PASS  samples follow log_prob" in done.stdout, done.stdout  # sharpened by itself: 0.1 is nearly uniform
    assert "PASS  checkpoint" in done.stdout, done.stdout  # one fit step, reopened weights-only: the same model


def test_check_fails_a_model_whose_checkpoint_does_not_load_back(tmp_path):
    done = check(tmp_path, "mymod.Unsaved")
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("FAIL  checkpoint")]
    assert "names no model class" in line and "save_hyperparameters()" in line, line
    assert "Traceback" not in done.stdout + done.stderr


def test_check_fails_a_non_causal_model_with_a_one_line_reason(tmp_path):
    done = check(tmp_path, "mymod.Leaky")
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("FAIL  causality")]
    assert "sub-pixel (0, 0, 0) sees itself" in line and "mask" in line, line
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("path", ["nomodule.Good", "mymod.Missing"])
def test_check_of_a_class_it_cannot_import_is_a_usage_error(tmp_path, path):
    done = check(tmp_path, path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    if path.startswith("nomodule"):
        assert "PYTHONPATH" in done.stderr and "pip install -e" in done.stderr, done.stderr
    else:
        assert "no GenerativeModule subclass 'Missing'" in done.stderr, done.stderr


def test_check_takes_the_levels_of_a_data_module(tmp_path):
    """``--data Digits``: 256 levels, which the binary model refuses at construction (a FAIL naming why); an
    unknown data module is a usage error listing the known ones."""
    done = check(tmp_path, "mymod.Good", "--data", "Digits")
    assert done.returncode == 1 and "num_levels=256" in done.stdout and "binary images only" in done.stdout, done.stdout
    done = check(tmp_path, "mymod.Good", "--data", "Digitz")
    assert done.returncode == 2 and "Digits" in done.stderr, done.stderr


def test_the_sampler_check_sharpens_a_nearly_uniform_model_itself(tmp_path, monkeypatch):
    """Weights of 0.05 are nearly uniform: the check compares a copy with scaled weights (the model untouched);
    weights of 0 stay uniform at any scale, and the failure says what to do."""
    import torch

    from lightning_gen.contracts import assert_samples_follow_likelihood

    (tmp_path / "mymod.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.syspath_prepend(str(tmp_path))
    from mymod import Good

    model = Good(image_shape=(1, 2, 2)).eval()
    with torch.no_grad():
        model.weight.fill_(0.05)
        model.bias.fill_(0.05)
    with pytest.raises(AssertionError, match="stays nearly uniform"):  # not sharpened, it proves nothing
        assert_samples_follow_likelihood(model, max_factor=1)
    assert_samples_follow_likelihood(model)
    assert torch.all(model.weight == 0.05)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    with pytest.raises(AssertionError, match="stays nearly uniform.*initialise it with larger weights"):
        assert_samples_follow_likelihood(model)
