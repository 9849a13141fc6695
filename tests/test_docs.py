"""The README and the manual in docs/ stay true: the manual builds with ``mkdocs build --strict`` (a broken link or a
missing image fails), and every command line in their ```bash blocks runs, at least as far as ``--help`` or
``--print_config``, so a renamed command, option, script or config cannot leave a page stale.

    python -m pytest tests/test_docs.py            # after renaming anything a page mentions

How a line is checked (``check_command``): ``lightning-gen fit|validate|test|predict ...`` with its own arguments and
``--print_config`` (the config and every option must parse); any other ``lightning-gen COMMAND``, and
``python scripts/X.py`` / ``python benchmarks/X.py``, with ``--help``, which must list every option the line uses;
``make TARGET``: the Makefile has the target; shell scripts, ``sbatch`` and ``wandb``: the script and every
``configs/...yaml`` the line names exist.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def code_lines(page: Path) -> list[tuple[int, str]]:
    """(line number, command) for each command in the page's ```bash blocks: continuations joined, comments and
    ``[optional ...]`` parts removed."""
    found, in_block, pending, start = [], False, "", 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = line.strip() == "```bash" and not in_block
            continue
        if not in_block:
            continue
        if not pending:
            start = number
        pending += line.rstrip("\\").strip() + " "
        if line.rstrip().endswith("\\"):
            continue
        command = re.sub(r"\s#.*$|^#.*$", "", pending.strip()).strip()
        command = re.sub(r"\s\[[^\]]*\]", "", command)
        pending = ""
        if command:
            found.append((start, command))
    return found


def commands() -> list:
    return [pytest.param(page, command, id=f"{page.relative_to(REPO)}:{line}")
            for page in PAGES for line, command in code_lines(page)]


def _words(command: str) -> list[str]:
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before the command
        words.pop(0)
    return words


def _configs_exist(words: list[str]) -> None:
    for word in words:
        if word.startswith("configs/") and word.endswith(".yaml") and "<" not in word:
            assert (REPO / word).is_file(), f"{word} does not exist"


def _run_cli(args: list[str]) -> tuple[int, str]:
    """``lightning-gen ARGS`` in this process: (exit status, output)."""
    from lightning_gen.app.cli import main

    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(args) or 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue()


def _options_in_help(words: list[str], help_text: str) -> None:
    """Every ``--option`` the page's command uses is one its ``--help`` lists."""
    for word in words:
        option = word.split("=", 1)[0]
        if re.fullmatch(r"--[a-z][\w-]*", option):
            assert re.search(rf"{re.escape(option)}\b(?!-)", help_text), f"{option} is not in the command's --help"


def check_command(command: str) -> None:
    words = _words(command)
    _configs_exist(words)
    if words[:3] == ["python", "-m", "lightning_gen"]:
        words = ["lightning-gen", *words[3:]]
    program = words[0]
    if program == "lightning-gen":
        args = words[1:]
        if not args or args[0].startswith("-"):
            args = ["--help"]
        elif args[0] in LIGHTNING_COMMANDS:
            args = [*args, "--print_config"] if "--print_config" not in args else args
        else:
            args = [args[0], "--help"]
        code, output = _run_cli(args)
        assert code == 0, f"`lightning-gen {' '.join(args)}` exited {code}:\n{output[-2000:]}"
        if args[-1] == "--help":
            _options_in_help(words, output)
    elif program == "python":
        script = REPO / words[1]
        assert script.is_file(), f"{words[1]} does not exist"
        done = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, f"{words[1]} --help:\n{done.stderr[-2000:]}"
        _options_in_help(words, done.stdout)
    elif program == "make":
        makefile = (REPO / "Makefile").read_text()
        for target in words[1:]:
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"no make target {target}"
    elif program in ("sbatch", "bash") or program.startswith("scripts/"):
        scripts = [w for w in words if w.startswith("scripts/")]
        assert scripts and all((REPO / s).is_file() for s in scripts), f"no such script in {command!r}"
    elif program in ("wandb", "source", "mkdocs"):
        pass  # external programs; their config paths are checked above
    else:
        pytest.fail(f"no rule checks {program!r}: add one to tests/test_docs.py")


@pytest.mark.parametrize("page, command", commands())
def test_every_command_in_the_readme_and_the_manual_runs(page, command, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    check_command(command)


def test_readme_is_a_front_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "make demo" in readme and "make test" in readme
    assert ".venv/bin/lightning-gen" not in readme
    for target in re.findall(r"\]\(([^)#\s]+)", readme):  # README links and pictures (the manual checks its own)
        assert target.startswith("http") or (REPO / target).is_file(), f"README.md links to a missing {target}"


def test_the_manual_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).with_name("mkdocs"))
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1",
                                                                            "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
