"""The command table: every routine job is a ``lightning-gen`` command with its own --help, the overview loads none
of them, and the app stays a set of small files that ask models what they can do instead of probing them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib

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
