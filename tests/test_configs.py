"""The configs compose: shared defaults (configs/shared/defaults.yaml, loaded by the CLI itself), model/ and data/
groups, experiments as short files of differences; and every experiment resolves to the settings it had before.

``expected_configs.json`` holds each experiment's resolved ``--print_config`` as it was before the configs were split
into groups (the same dump after the split must match). Two differences are normalised away, both inert:
- class paths name the class wherever it is defined (``lightning_gen.models.MADE`` is
  ``lightning_gen.models.made.MADE``);
- ModelCheckpoint callbacks are compared as a set: Lightning moves every checkpoint callback to the end of the list,
  and ours all write to the same ``checkpoints/`` folder, so only their relative order changed (the shared ``last``
  checkpoint now comes first, from configs/shared/defaults.yaml; the other callbacks keep their order).
  One visible effect: Lightning's ``trainer.checkpoint_callback`` (the first ModelCheckpoint) is now the ``last`` one,
  which only matters to ``ckpt_path="best"`` within the same process; the suite's commands open best.ckpt by name.

Regenerate the expectations only for an intended change of a recipe:
    python tests/test_configs.py --write
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EXPECTED = Path(__file__).with_name("expected_configs.json")
#: Issue 24 brought the 47 experiments of the time to 999 lines; the flow, RBM and diffusion families (issue 27) added
#: 9 experiments and their model groups, 140 lines; the RBM's annealed rate and the cpu_bf16 preset (issue 28), 10.
MAX_YAML_LINES = 1160


def experiments() -> list[Path]:
    return sorted(CONFIGS.glob("*.yaml")) + sorted((CONFIGS / "repro").glob("*.yaml"))


def experiment_name(path: Path) -> str:
    return str(path.relative_to(CONFIGS))


def resolved(args: list[str]) -> dict:
    """``lightning-gen fit ARGS --print_config``, parsed."""
    from lightning_gen.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        main(["fit", *args, "--print_config"])
    assert out.getvalue(), f"fit {' '.join(args)} --print_config printed nothing:\n{err.getvalue()[-2000:]}"
    return yaml.safe_load(out.getvalue())


def canonical_class(path: str) -> str:
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return path
    return f"{cls.__module__}.{cls.__qualname__}"


def canonical(value):
    """``value`` with class paths canonical and ModelCheckpoint callbacks in a fixed order (module docstring)."""
    if isinstance(value, dict):
        out = {k: canonical(v) for k, v in value.items()}
        if isinstance(out.get("class_path"), str):
            out["class_path"] = canonical_class(out["class_path"])
        callbacks = out.get("callbacks")
        if isinstance(callbacks, list):
            is_ckpt = [isinstance(c, dict) and str(c.get("class_path", "")).endswith(".ModelCheckpoint")
                       for c in callbacks]
            checkpoints = sorted((c for c, k in zip(callbacks, is_ckpt) if k),
                                 key=lambda c: json.dumps(c, sort_keys=True))
            out["callbacks"] = [c for c, k in zip(callbacks, is_ckpt) if not k] + checkpoints
        return out
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def resolved_experiment(path: Path) -> dict:
    return canonical(resolved(["--config", str(path)]))


@pytest.mark.parametrize("config", experiments(), ids=experiment_name)
def test_every_experiment_resolves_to_its_recorded_settings(config, monkeypatch):
    monkeypatch.chdir(REPO)
    expected = canonical(json.loads(EXPECTED.read_text())[experiment_name(config)])  # class paths as they import now
    assert resolved_experiment(config.relative_to(REPO)) == expected


def test_all_yaml_together_is_short_and_every_experiment_is_a_file_of_differences():
    files = sorted(CONFIGS.rglob("*.yaml"))
    assert sum(len(p.read_text().splitlines()) for p in files) <= MAX_YAML_LINES
    for path in experiments():
        config = yaml.safe_load(path.read_text())
        up = "../" if path.parent.name == "repro" else ""
        assert config["model"].startswith(f"{up}model/") and config["data"].startswith(f"{up}data/"), path
        assert (path.parent / config["model"]).is_file() and (path.parent / config["data"]).is_file(), path
        assert "callbacks" not in config.get("trainer", {}), f"{path}: add callbacks with `callbacks+:`"


def test_one_class_path_convention():
    """Classes of this package by their package's name (``lightning_gen.models.MADE``), never a module inside it."""
    for path in sorted(CONFIGS.rglob("*.yaml")):
        for line in path.read_text().splitlines():
            if "class_path: lightning_gen." in line:
                name = line.split("class_path:")[1].split(",")[0].strip(" {}")
                assert name.count(".") == 2, f"{path}: {name}"


def test_shared_defaults_load_by_themselves(tmp_path, monkeypatch):
    """A run given only a model and a data module still gets the shared seed, devices and last.ckpt."""
    monkeypatch.chdir(tmp_path)
    config = resolved(["--model", "FVSBN", "--data", "Digits"])
    assert config["seed_everything"] == 0 and config["trainer"]["devices"] == 1
    assert [c["init_args"]["filename"] for c in config["trainer"]["callbacks"]] == ["last"]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import os

    os.chdir(REPO)
    table = {experiment_name(p): resolved_experiment(p.relative_to(REPO)) for p in experiments()}
    EXPECTED.write_text(json.dumps(table, sort_keys=True, separators=(",", ":")) + "\n")
