"""Every command that opens a checkpoint reads it weights-only: a checkpoint carrying a pickled payload is refused
with a short message (exit status 2) and its code never runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import CONFIGS
from lightning_gen.app.cli import main
from lightning_gen.models.fvsbn import FVSBN


class _Payload:
    """Unpickled, it creates the file ``marker``: the code a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def poisoned(tmp_path) -> tuple[Path, Path]:
    """``(checkpoint, marker)``: a training checkpoint of the digits FVSBN, in the layout `fit` writes, with a
    pickled payload beside its weights and optimizer state."""
    model = FVSBN(image_shape=(1, 8, 8), num_levels=2)
    marker = tmp_path / "payload_ran"
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    optimizer = torch.optim.Adam(model.parameters())
    torch.save({"state_dict": model.state_dict(), "epoch": 0, "global_step": 0,
                "hyper_parameters": {"_class_path": "lightning_gen.models.fvsbn.FVSBN", "image_shape": [1, 8, 8],
                                     "num_levels": 2},
                "optimizer_states": [optimizer.state_dict()], "pytorch-lightning_version": "2.6.0",
                "payload": _Payload(marker)}, checkpoint)
    return checkpoint, marker


def test_the_payload_is_live_when_unpickled_in_full(poisoned):
    """The refusals below mean something: loading the file the unsafe way runs its code."""
    checkpoint, marker = poisoned
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


def _commands(checkpoint: Path, tmp_path: Path) -> dict[str, list[str]]:
    fit_args = ["--config", str(CONFIGS / "fvsbn_digits.yaml"), "--ckpt_path", str(checkpoint),
                "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.logger", "false"]
    return {
        "sample": ["sample", str(checkpoint), "--num-samples", "4", "--out", str(tmp_path / "grid.png")],
        "sample run folder": ["sample", str(checkpoint.parents[1]), "--out", str(tmp_path / "grid.png")],
        "benchmark": ["benchmark", str(checkpoint), "--num-samples", "0", "--no-store"],
        "probe": ["probe", str(checkpoint), "--data", "Digits", "--data-arg", "binarize=true"],
        "pictures": ["pictures", str(checkpoint), "--out", str(tmp_path / "pictures"), "--data", "Digits"],
        "set-lr": ["set-lr", "--ckpt", str(checkpoint), "--lr", "0.1", "--out", str(tmp_path / "stage.ckpt")],
        **{command: [command, *fit_args] for command in ("fit", "validate", "test", "predict")},
    }


COMMANDS_THAT_OPEN_CHECKPOINTS = ("sample", "sample run folder", "benchmark", "probe", "pictures", "set-lr", "fit",
                                  "validate", "test", "predict")


@pytest.mark.parametrize("command", COMMANDS_THAT_OPEN_CHECKPOINTS)
def test_every_command_refuses_a_checkpoint_with_a_pickled_payload_unexecuted(command, poisoned, tmp_path, capsys):
    checkpoint, marker = poisoned
    code = main(_commands(checkpoint, tmp_path)[command])
    err = capsys.readouterr().err
    assert not marker.exists(), f"{command} ran the checkpoint's pickled code"
    assert code == 2, err[-2000:]
    assert "refused unexecuted" in err and str(checkpoint) in err, err[-2000:]
    assert "Traceback" not in err
    assert not (tmp_path / "stage.ckpt").exists() and not (tmp_path / "grid.png").exists()


def test_the_lightning_commands_keep_weights_only_loading_on(poisoned, tmp_path, capsys):
    checkpoint, marker = poisoned
    code = main([*_commands(checkpoint, tmp_path)["validate"], "--weights_only", "false"])
    err = capsys.readouterr().err
    assert code == 2 and "--weights_only false" in err and "weights-only" in err, err[-2000:]
    assert not marker.exists()
