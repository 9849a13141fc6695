"""The command table: every routine job is a ``lightning-gen`` command with its own --help, the overview loads none
of them, and the app stays a set of small files that ask models what they can do instead of probing them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

from helpers import REPO
from lightning_gen.app import cli

APP = REPO / "lightning_gen" / "app"


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {cli.PROG} {command}"), out[:300]


def test_the_overview_imports_no_command():
    """``lightning-gen --help`` answers without torch or Lightning: each command is imported when it runs."""
    code = ("import sys; from lightning_gen.app.cli import main; main(['--help']); "
            "print(sorted(m for m in ('torch', 'lightning', 'jsonargparse') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-2000:]


def test_app_files_are_small_and_ask_rather_than_probe():
    """STYLE.md: a file holds one thing (about 400 lines at most); what a model can do is declared, not probed with
    hasattr or a getattr default."""
    for path in sorted(APP.glob("*.py")):
        source = path.read_text()
        assert len(source.splitlines()) <= 400, f"{path.name}: {len(source.splitlines())} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                probing = node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 3)
                assert not probing, f"{path.name}:{node.lineno}: {node.func.id}(...) probes an object"


def test_developer_benchmarks_stay_out_of_the_installed_package():
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    installed = find_packages(where=REPO, include=find["include"])
    assert "lightning_gen.app" in installed
    assert not any(p.split(".")[0] in ("benchmarks", "scripts", "tests") for p in installed), installed
    assert (REPO / "benchmarks" / "throughput.py").is_file() and not (APP / "throughput.py").exists()


def test_probe_and_pictures_run_on_a_vae_checkpoint(tmp_path, capsys):
    """The two former scripts as commands: the probe prints its accuracies as JSON, pictures writes its PNG files
    (the manifold too: a 2-D latent space)."""
    import json

    from test_benchmark import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", "lightning_gen.models.vae.VAE",
                            image_shape=[1, 8, 8], num_levels=2, arch="mlp", hidden_sizes=[16], z_dim=2)
    data = ["--data", "Digits", "--data-arg", "binarize=true"]
    assert cli.main(["probe", str(ckpt), *data, "--max-train", "300", "--max-test", "100"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["probe_acc"] <= 1.0 and result["n_train"] == 300 and result["n_test"] == 100, result

    assert cli.main(["pictures", str(ckpt), "--out", str(tmp_path / "pictures"), *data, "--manifold-side", "4"]) == 0
    written = {Path(line).name for line in capsys.readouterr().out.split()}
    assert written and all((tmp_path / "pictures" / name).is_file() for name in written)
    assert any("manifold" in name for name in written), written


def test_model_options_given_with_a_checkpoint_win_over_the_ones_saved_in_it(tmp_path, monkeypatch):
    """``test --ckpt_path C --model.init_args.ais_temperatures 123``: the option evaluates the checkpoint, though
    LightningCLI lays a checkpoint's saved hyperparameters over the command line (the slower anneal that an RBM's
    unconverged AIS asks for would otherwise silently run with the saved 1,000)."""
    import yaml

    monkeypatch.chdir(tmp_path)
    common = ["--config", str(REPO / "configs/rbm_digits.yaml"), "--trainer.default_root_dir", str(tmp_path),
              "--trainer.enable_progress_bar", "false"]
    assert cli.main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                     "--trainer.limit_val_batches", "1"]) == 0
    (ckpt,) = tmp_path.glob("**/last.ckpt")
    assert cli.main(["test", *common, "--ckpt_path", str(ckpt), "--trainer.limit_test_batches", "1",
                     "--model.init_args.ais_temperatures", "123", "--model.init_args.ais_runs=7"]) == 0
    config = yaml.safe_load(max(tmp_path.glob("**/config.yaml"), key=lambda p: p.stat().st_mtime).read_text())
    assert config["model"]["init_args"]["ais_temperatures"] == 123 and config["model"]["init_args"]["ais_runs"] == 7
    assert config["model"]["init_args"]["hidden_size"] == 100  # the rest from the checkpoint, as before
