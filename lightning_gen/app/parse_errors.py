"""What a LightningCLI parse or construction error meant: a misspelt option, class name or option value, or a
module that does not import, with the closest correct one or the fix."""

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
    # A class path whose module does not import: --model my_module.Model, class_path: my_module.Model in a config.
    unimportable = re.search(r"class_path '([\w.]+)':\s*No module named '([\w.]+)'", message)
    if unimportable:
        return explain_unimportable(unimportable.group(1), unimportable.group(2), argv)
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



def explain_unimportable(class_path: str, missing: str, argv: list[str]) -> str:
    """``class_path`` names a module that Python cannot find (``missing``): where Python looks, and how to add a
    folder or a package there."""
    typed = next((argv[i] for i in range(len(argv) - 1) if argv[i + 1] == class_path), None)
    head = f"{typed} {class_path}" if typed else f"class_path {class_path} (in a --config file)"
    top = missing.split(".")[0]
    return (f"{head}: Python cannot import {missing!r} (No module named {missing!r}).\n"
            f"Make it importable: run from the folder that holds {top}.py (or the package {top}/), prefix the command "
            f"with PYTHONPATH=<that folder>, or install your package (pip install -e <its folder>).")


#: What the constructors of the models and layers raise for a value they do not know.
_UNKNOWN_VALUE = re.compile(r"unknown ([\w ]+?) '([^']*)'; expected one of \(?([^)\n]*)\)?")


def explain_bad_value(error: BaseException, argv: list[str]) -> str | None:
    """A few lines for a constructor's ``ValueError("unknown <name> '<value>'; expected one of (...)")`` found in
    ``error`` or its causes (LightningCLI wraps it while building the classes): the option as the user typed it,
    the value probably meant and every allowed value. None where ``error`` holds no such message."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        found = _UNKNOWN_VALUE.search(str(error))
        if found:
            break
        error = error.__cause__ or error.__context__
    else:
        return None
    if error is None:
        return None
    name, value, listed = found.groups()
    choices = re.findall(r"'([^']*)'", listed) or [c.strip() for c in listed.split(",") if c.strip()]
    guess = closest(value, choices)
    key = name.replace(" ", "_")
    typed = _given_option(argv, key)
    meant = f"; did you mean {guess}?" if guess else ""
    if typed:
        head = f"{typed} {value}: no such {name}{meant}"
    else:
        head = f"{name} {value!r} (from a --config file): no such {name}{meant}"
    return f"{head}\nChoices of {name}: {', '.join(choices)}."
