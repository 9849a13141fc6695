"""The model contract, for every model class :mod:`lightning_gen.models` defines (found by walking the package, so a
new model file is tested before anyone writes a test for it).

Each model is built from its constructor defaults plus the data attributes the CLI links in, on tiny data: binary
and 4-level grey, 4-level colour, and labelled binary with class conditioning where the model has a
``conditional`` option; at the smallest image side its nets accept. Data a model does not model (multi-level
images for a binary-only model) it must refuse at construction with a ValueError; everything it builds on must
then keep the contract:

- ``family`` is declared; ``sample(n)`` gives uint8 ``(n, C, H, W)`` on the data's levels, reproducible from a
  seeded generator, with labels honoured or refused; ``log_prob`` gives finite per-image log-probabilities, or
  NoLikelihoodError; ``predict_step`` gives one or the other.
- A checkpoint written by ``lightning_gen fit`` and opened with :class:`~lightning_gen.app.run.Run` gives back the
  model: the same state, the same seeded samples and likelihoods.
- A likelihood sums to one over every image of a tiny space (exactly, or in expectation for an estimate), and
  an exact likelihood's sampler draws from it; an exact likelihood is a product of normalised per-sub-pixel
  conditionals in some causal order (``log_conditionals``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import lightning_gen.models
from contracts import (DATA, Data, assert_autoregressive, assert_log_prob_contract, assert_normalised,
                       assert_same_outputs, assert_sample_contract, assert_samples_follow_likelihood, build, construct,
                       fit_one_step, likelihood_is_exact, model_classes, sharpen, smallest_side,
                       takes_conditional, tiny_data_args)
from lightning_gen.app.run import CheckpointError, Run
from lightning_gen.leaderboard.record import validate_family
from lightning_gen.models.base import GenerativeModule

MODELS = model_classes()
#: (class, data) -> (smallest side it builds at, or None; the errors of the sides it refused)
BUILDS = {(cls, data): smallest_side(cls, data) for cls in MODELS for data in DATA
          if not data.conditional or takes_conditional(cls)}
BINARY = DATA[0]


def cases(keep=lambda cls, data: True) -> list:
    """``(class, data)`` for every data the class builds on, where ``keep(class, data)``."""
    return [pytest.param(cls, data, id=f"{cls.__name__}-{data}") for (cls, data), (side, _) in BUILDS.items()
            if side is not None and keep(cls, data)]


def exact(cls: type[GenerativeModule], data: Data | None = None) -> bool:
    """Whether the class's likelihood is exact (see :func:`contracts.likelihood_is_exact`), on ``data`` or the
    first data it builds on. A model whose ``log_prob`` fails counts as exact: the tests then show the failure."""
    if not cls.has_likelihood:
        return False
    data = data or next(d for (c, d), (side, _) in BUILDS.items() if c is cls and side is not None)
    try:
        return likelihood_is_exact(build(cls, data))
    except Exception:  # noqa: BLE001
        return True


#: Tiny image spaces for exact normalisation: 512 binary 3x3 images, 256 4-level 2x2 ones, 729 3-level colour 1x2
#: ones (colour ordering within a pixel, and between pixels).
SPACES = [((1, 3, 3), Data("binary", 1, 2)), ((1, 2, 2), Data("grey4", 1, 4)), ((3, 1, 2), Data("rgb3", 3, 3)),
          ((1, 2, 2), Data("conditional", 1, 2, num_classes=3, conditional=True))]
#: An estimated likelihood is summed over the smallest space only: 16 binary 2x2 images, each estimated 10 times.
ESTIMATE_SPACE = ((1, 2, 2), Data("binary", 1, 2))


def build_error(cls, shape, data) -> str | None:
    """Why ``cls`` does not build on ``shape`` ``data`` (None: it builds)."""
    try:
        construct(cls, data, shape)
    except Exception as e:  # noqa: BLE001  (the tests judge the kind of error)
        return f"{type(e).__name__}: {e}"
    return None


def spaces(cls) -> list:
    """The tiny spaces ``(shape, data)`` the likelihood of ``cls`` is summed over."""
    chosen = SPACES if exact(cls) else [ESTIMATE_SPACE]
    return [(shape, data) for shape, data in chosen if not data.conditional or takes_conditional(cls)]


def space_id(cls, shape, data) -> str:
    return f"{cls.__name__}-{data}-{'x'.join(map(str, shape))}"


LIKELIHOOD_SPACES = {(cls, shape, data): build_error(cls, shape, data) for cls in MODELS if cls.has_likelihood
                     for shape, data in spaces(cls)}


# ---- the package's models ---------------------------------------------------------------------------------------
def test_every_model_is_found_and_registered_with_the_cli():
    """Discovery finds the models ``lightning_gen.models`` imports, and every model it finds is imported there: that
    import is what registers a class with the CLI (``--model NAME``) in a fresh process."""
    imported = {obj for obj in vars(lightning_gen.models).values() if isinstance(obj, type)
                and issubclass(obj, GenerativeModule) and obj.sample is not GenerativeModule.sample}
    assert imported, "lightning_gen.models imports no model"
    assert set(MODELS) == imported, (f"not imported by lightning_gen.models: {set(MODELS) - imported}; "
                                     f"not found by the contract's discovery: {imported - set(MODELS)}")


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_declares_a_family_and_builds_on_binary_data_from_its_defaults(cls):
    """Every model declares its leaderboard family, builds from its defaults on binary images, and refuses any
    other data it does not model with a ValueError at construction (not a crash later)."""
    assert isinstance(getattr(cls, "family", None), str), f"{cls.__name__} declares no family"
    validate_family(cls.family)
    side, errors = BUILDS[(cls, BINARY)]
    assert side is not None, f"{cls.__name__} cannot be built from its defaults on binary data:\n" + "\n".join(errors)
    for (c, data), (side, errors) in BUILDS.items():
        if c is cls and side is None:
            assert all(": ValueError: " in e for e in errors), f"{cls.__name__} on {data} data:\n" + "\n".join(errors)


# ---- samples, likelihoods, predictions ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls,data", cases())
def test_sample_contract(cls, data):
    assert_sample_contract(sharpen(build(cls, data)))


@pytest.mark.parametrize("cls,data", cases())
def test_log_prob_contract(cls, data):
    model = sharpen(build(cls, data))
    assert_log_prob_contract(model, model.sample(5, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("cls,data", cases(lambda cls, data: data is BINARY))
def test_predict_gives_log_likelihoods_or_samples(cls, data):
    model = build(cls, data)
    x = model.sample(3, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)  # the same importance samples for an estimated likelihood
    out = model.predict_step((x, torch.zeros(3, dtype=torch.long)), 0)
    if model.has_likelihood:
        torch.manual_seed(0)
        torch.testing.assert_close(out["log_prob"], model.log_prob(x))
    else:
        assert out["samples"].dtype == torch.uint8 and out["samples"].shape == x.shape


# ---- likelihoods -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [c for c in MODELS if c.has_likelihood], ids=lambda c: c.__name__)
def test_likelihood_models_build_on_a_tiny_space(cls):
    """Normalisation needs every image of a space: a likelihood model builds on some tiny one, and refuses the
    others' data (levels, colours) with a ValueError."""
    errors = {space_id(*key): error for key, error in LIKELIHOOD_SPACES.items() if key[0] is cls}
    assert None in errors.values(), f"{cls.__name__} builds on no tiny space: {errors}"
    assert all(e is None or e.startswith("ValueError") for e in errors.values()), errors


@pytest.mark.parametrize("cls,shape,data", [pytest.param(*key, id=space_id(*key))
                                            for key, error in LIKELIHOOD_SPACES.items() if error is None])
def test_likelihood_sums_to_one_over_a_tiny_space(cls, shape, data):
    model = construct(cls, data, shape)
    if likelihood_is_exact(model):
        sharpen(model)  # an estimate stays at the initialisation, where importance weights are well behaved
    for labels in range(2) if model.conditional else [None]:
        assert_normalised(model, labels)


#: Where an exact likelihood's sampler is checked against it: 16 binary 2x2 images; 27 3-level colour pixels.
SAMPLER_SPACES = [((1, 2, 2), Data("binary", 1, 2)), ((3, 1, 1), Data("rgb3", 3, 3))]


@pytest.mark.parametrize("cls,shape,data", [
    pytest.param(cls, shape, data, id=f"{cls.__name__}-{data}") for cls in MODELS if exact(cls)
    for shape, data in SAMPLER_SPACES if build_error(cls, shape, data) is None])
def test_exact_likelihood_sampler_draws_from_it(cls, shape, data):
    assert_samples_follow_likelihood(sharpen(construct(cls, data, shape), 3.0))


# Of likelihood kind "exact" only: a small RBM's likelihood is exact too (log Z enumerated) but not a product of
# conditionals.
@pytest.mark.parametrize("cls,data", cases(lambda cls, data: cls.likelihood_kind == "exact" and exact(cls, data)))
def test_exact_likelihood_is_a_product_of_causal_conditionals(cls, data):
    model = sharpen(build(cls, data))
    assert_autoregressive(model, model.sample(8, generator=torch.Generator().manual_seed(0)))


# ---- checkpoints -------------------------------------------------------------------------------------------------
def fit(cls, data, root: Path) -> Path:
    side, _ = BUILDS[(cls, data)]
    data_args = tiny_data_args(data, side)
    model_args = ["--model.init_args.conditional", "true"] if data.conditional else []
    return fit_one_step(f"{cls.__module__}.{cls.__qualname__}", data_args, root, model_args)


@pytest.mark.parametrize("cls,data", cases(lambda cls, data: data is BINARY or data.conditional))
def test_checkpoint_round_trip_through_run(cls, data, tmp_path):
    """One step of ``lightning_gen fit``; the run opened from its checkpoint or its folder gives the trained model
    back (state, seeded samples and likelihoods), and the data module it was trained on."""
    checkpoint = fit(cls, data, tmp_path)
    expected = torch.load(tmp_path / "outputs.pt", weights_only=True)
    run = Run.open(checkpoint)
    model = run.model(map_location="cpu")
    assert type(model) is cls and not model.training
    assert_same_outputs(expected, model)
    assert run.checkpoint == checkpoint and run.folder == tmp_path
    assert run.checkpoint_sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert run.config["model"]["class_path"] == f"{cls.__module__}.{cls.__qualname__}"
    datamodule = run.datamodule()
    assert (datamodule.image_shape, datamodule.num_levels, datamodule.num_classes) == (
        model.image_shape, model.num_levels, model.num_classes)
    assert_same_outputs(expected, Run.open(tmp_path).model())


def test_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    checkpoint = fit(MODELS[0], BINARY, tmp_path / "run")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Run.open(truncated).model()
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="names no model class"):
        Run.open(foreign).model()


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_trains_under_bf16_mixed_on_the_cpu(cls, tmp_path):
    """configs/trainer/cpu_bf16.yaml (and the GPU presets, bf16-mixed too): a training step under autocast works for
    every model and leaves float32, finite weights and buffers."""
    side, _ = BUILDS[(cls, BINARY)]
    checkpoint = fit_one_step(f"{cls.__module__}.{cls.__qualname__}", tiny_data_args(BINARY, side), tmp_path,
                              ["--trainer.precision", "bf16-mixed"])
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    floats = {k: v for k, v in state.items() if v.is_floating_point()}
    assert floats and all(v.dtype in (torch.float32, torch.float64) for v in floats.values()), \
        {k: v.dtype for k, v in floats.items() if v.dtype not in (torch.float32, torch.float64)}
    assert all(torch.isfinite(v).all() for v in floats.values())
