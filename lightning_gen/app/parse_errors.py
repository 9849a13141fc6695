"""What a LightningCLI parse error meant: a misspelt option or class name, with the closest correct one."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re

from lightning_gen.app.cli import PROG, TRAINER_COMMANDS, closest
from lightning_gen.data.base import ImageDataModule
from lightning_gen.models.base import GenerativeModule


def class_names(base: type) -> list[str]:
    """The classes of the package a ``--model`` / ``--data`` option may name (the base modules' interfaces aside)."""
    found, todo = set(), [base]
    while todo:
        for cls in todo.pop().__subclasses__():
            todo.append(cls)
            if cls.__module__.startswith("lightning_gen.") and not cls.__module__.endswith(".base") \
                    and not cls.__name__.startswith("_"):
                found.add(cls.__name__)
    return sorted(found)


def _init_options(class_path: str) -> list[str]:
    """The constructor arguments of ``class_path`` (empty if it does not import)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        parameters = inspect.signature(cls).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
    return [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _given_option(argv: list[str], key: str) -> str | None:
    """The command-line option (name only) whose last component is ``key``, as the user typed it."""
    for token in argv:
        name = token.split("=", 1)[0]
        if name.startswith("--") and (name == f"--{key}" or name.endswith(f".{key}")):
            return name
    return None


def explain_parse_error(message: str, argv: list[str], known: set[str]) -> str:
    """A few lines for jsonargparse's parse error ``message``: what was wrong and, for a misspelt option or class
    name, what was probably meant (``known``: the parser's option names, without dashes)."""
    command = argv[0] if argv and argv[0] in TRAINER_COMMANDS else None
    help_hint = f"`{PROG} {command or 'fit'} --help` lists the options"
    # A class name that names no class: --model GANN, --data Digitz, class_path: GANN in a config.
    section = re.search(r'Parser key "(model|data)"', message)
    bad_class = re.search(r"dot import path string: (\S+)|has no attribute '(\w+)'", message)
    if section and bad_class:
        kind = section.group(1)
        name = (bad_class.group(1) or bad_class.group(2)).rpartition(".")[2]
        classes = class_names(GenerativeModule if kind == "model" else ImageDataModule)
        guess = closest(name, classes)
        meant = f"; did you mean --{kind} {guess}?" if guess else ""
        return f"--{kind} {name}: no such {kind} class{meant}\n{kind.capitalize()} classes: {', '.join(classes)}."
    # An option a class does not take: --model.init_args.g_widht, or a misspelt key under init_args in a config.
    not_accepted = re.search(r"Option '([\w.]+)' is not accepted", message)
    if not_accepted:
        key = not_accepted.group(1).rpartition(".")[2]
        class_paths = re.findall(r"class_path[ =]'([\w.]+)'", message)
        owner = class_paths[-1] if class_paths else None
        options = _init_options(owner) if owner else []
        guess = closest(key, options)
        typed = _given_option(argv, key)
        owner_name = owner.rpartition(".")[2] if owner else "the class"
        if typed:
            meant = f"; did you mean {typed[: -len(key)]}{guess}?" if guess else ""
            head = f"{typed}: {owner_name} takes no option {key!r}{meant}"
        else:
            meant = f"; did you mean {guess!r}?" if guess else ""
            head = f"a --config file gives {owner_name} the option {key!r}, which it does not take{meant}"
        listing = f"{owner_name}'s options: {', '.join(options)}." if options else help_hint + "."
        return f"{head}\n{listing}"
    # An option the parser does not know at all: --trainer.max_epohcs, --ckpt_pth.
    unrecognized = re.search(r"nrecognized arguments: (.+)", message)
    if unrecognized:
        lines = []
        for token in unrecognized.group(1).split():
            if not token.startswith("--"):
                continue
            name = token[2:].split("=", 1)[0]
            guess = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            lines.append(f"unknown option --{name}" + (f"; did you mean --{guess[0]}?" if guess else ""))
        if lines:
            return "\n".join(lines) + f"\n{help_hint}."
    # Anything else: jsonargparse's own message, shortened.
    lines = [line for line in message.splitlines() if line.strip()]
    shown = "\n".join(lines[:6]) + ("\n  ..." if len(lines) > 6 else "")
    return f"{shown}\n{help_hint}; --debug shows the parser's whole report."


