"""The spine: model interface, reference model, CLI, configs, W&B logging, checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from contracts import assert_causal, input_dependencies, raster_order
from helpers import REPO, config_paths, ddp_fit_states, run_cli
from lightning_gen.app.cli import main
from lightning_gen.app.run import CheckpointError, load_model
from lightning_gen.data.base import DATA_ENV, resolve_root
from lightning_gen.models import FVSBN, from_levels, to_levels


# ---- interface and reference model -------------------------------------------------------------------
@pytest.mark.parametrize("levels", [2, 3, 17, 256])
def test_levels_round_trip(levels):
    idx = torch.arange(levels)
    assert torch.equal(to_levels(from_levels(idx, levels), levels), idx)
    assert from_levels(idx, levels)[0] == 0 and from_levels(idx, levels)[-1] == 255


def test_every_pixel_value_maps_to_its_nearest_level():
    """For every level count, the float computation agrees with integer arithmetic: floor((x (L-1) + 127) / 255)."""
    x = torch.arange(256, dtype=torch.uint8)
    for levels in range(2, 257):
        expected = torch.tensor([(v * (levels - 1) + 127) // 255 for v in range(256)])
        assert torch.equal(to_levels(x, levels), expected), levels


def test_fvsbn_is_causal_in_raster_order():
    """The logits of sub-pixel i depend on the sub-pixels before i in raster order (colours innermost) only, and on
    each of them: the mask is the full lower triangle."""
    model = FVSBN((2, 3, 3), num_levels=4)
    torch.nn.init.normal_(model.net.weight)
    c, h, w = model.image_shape

    def logits(x):
        flat = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # (B, C, H, W) -> (B, H, W, C) -> (B, D): raster
        return model.net(flat).view(-1, h, w, c, 4).permute(0, 3, 4, 1, 2)  # (B, D * P) -> (B, C, P, H, W)

    deps = input_dependencies(logits, torch.rand(1, c, h, w))
    assert_causal(deps)
    order = raster_order(model.image_shape)
    for s, seen in deps.items():
        assert torch.equal(seen, order < order[s]), f"sub-pixel {s} does not see every earlier sub-pixel"


# ---- data root ----------------------------------------------------------------------------------------
def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root(None) == tmp_path / "env"
    monkeypatch.delenv(DATA_ENV)
    assert resolve_root(None) == Path.home() / ".cache" / "lightning_gen"


# ---- CLI ----------------------------------------------------------------------------------------------
def test_cli_unknown_class_fails_clearly(tmp_path):
    proc = run_cli(["fit", "--model", "NoSuchModel", "--data", "Digits"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--model NoSuchModel: no such model class" in proc.stderr and "FVSBN" in proc.stderr  # the classes there are


def test_cli_unknown_option_fails_clearly(tmp_path):
    proc = run_cli(["fit", "--config", str(REPO / "configs/fvsbn_digits.yaml"), "--model.init_args.no_such_option", "1"],
                   cwd=tmp_path)
    assert proc.returncode != 0 and "no_such_option" in proc.stderr


def test_print_config_round_trips(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(REPO / "configs/fvsbn_digits.yaml"), "--print_config"])
    assert exit_.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["class_path"].endswith("FVSBN")
    assert config["data"]["class_path"].endswith("Digits")


def test_any_model_pairs_with_any_data_from_the_command_line(tmp_path, monkeypatch):
    """Shape, levels and classes come from the data module: FVSBN on binarized digits needs no model options."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--model", "FVSBN", "--data", "Digits", "--data.binarize", "true", "--trainer.fast_dev_run", "true",
          "--trainer.logger", "false"])


#: Paper-sized configs too large for one CPU step in CI shrink the net; a folder of 40 fake images cannot hold the
#: default 5,000 + 5,000 held-out CelebA images. Everything else is the config as shipped.
CPU_DEBUG_OVERRIDES = {
    "dcgan_celeba64": ["--data.init_args.val_size", "8", "--data.init_args.test_size", "8"],
    "gated_pixelcnn_cifar10": ["--model.init_args.layers", "2", "--model.init_args.channels", "12",
                               "--model.init_args.head_channels", "24", "--data.init_args.batch_size", "8"],
}


@pytest.mark.parametrize("config", config_paths(), ids=lambda p: p.stem)
def test_config_fast_dev_run(config, fake_data_root, tmp_path, monkeypatch):
    """Every model config in configs/ trains and validates one batch (on tiny fake files in the real formats)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(fake_data_root))
    main(["fit", "--config", str(config), "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu",
          "--trainer.devices", "1", "--trainer.default_root_dir", str(tmp_path),
          *CPU_DEBUG_OVERRIDES.get(config.stem, [])])


def test_validate_test_and_predict_subcommands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in ("validate", "test", "predict"):
        main([command, "--config", str(REPO / "configs/fvsbn_digits.yaml"), "--trainer.limit_test_batches", "2",
              "--trainer.limit_val_batches", "2", "--trainer.limit_predict_batches", "2", "--trainer.logger", "false"])


# ---- checkpoints --------------------------------------------------------------------------------------
def test_checkpoint_loads_weights_only_and_samples(trained_fvsbn, tmp_path):
    model = load_model(trained_fvsbn)
    assert isinstance(model, FVSBN) and model.image_shape == (1, 8, 8) and model.num_levels == 256
    out = tmp_path / "grid.png"
    assert main(["sample", str(trained_fvsbn), "--num-samples", "16", "--out", str(out)]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.std() > 0


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_with_pickled_code_is_refused(trained_fvsbn, tmp_path):
    ckpt = torch.load(trained_fvsbn, weights_only=True)
    ckpt["hyper_parameters"]["evil"] = _Payload()
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="refused unexecuted"):
        load_model(bad)


# ---- W&B -----------------------------------------------------------------------------------------------
def test_wandb_offline_without_credentials_stores_the_saved_grid(tmp_path):
    """No key, no terminal, WANDB_MODE unset: the run goes offline (no prompt, no hang), says how to sync, and
    the sample grid W&B stored is the PNG saved in the run folder, not a blank image."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_gen", "fit", "--config", str(REPO / "configs/fvsbn_digits.yaml"),
         "--config", str(REPO / "configs/logger/wandb.yaml"), "--trainer.max_epochs", "1",
         "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "run")],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wandb sync" in proc.stdout + proc.stderr
    (stored,) = tmp_path.glob("run/lightning_logs/version_0/wandb/offline-run-*/files/media/images/samples_*.png")
    (saved,) = tmp_path.glob("run/lightning_logs/version_0/samples/step_*.png")  # one run folder for both
    stored_px, saved_px = np.asarray(Image.open(stored).convert("L")), np.asarray(Image.open(saved).convert("L"))
    assert stored_px.std() > 10, "the grid W&B stored is blank"
    assert np.array_equal(stored_px, saved_px)


# ---- DDP -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fvsbn_ddp_two_processes_keep_identical_parameters(tmp_path):
    init = FVSBN((1, 8, 8), num_levels=256).state_dict()
    states = ddp_fit_states(REPO / "configs/fvsbn_digits.yaml", tmp_path, steps=3)
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name
    assert not torch.equal(states[0]["net.weight"], init["net.weight"])
