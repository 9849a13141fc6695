"""The package's layering (STYLE.md "who may import whom"), read from the source: every import in every module of
lightning_gen/, lazy ones inside functions included, is checked against the parts it may import.

    app/                  may import everything; nothing imports it (only ``python -m lightning_gen``)
    evaluation, callbacks the library above the models: models, data, metrics, nn, images, pictures, loggers, compat
    pictures              models and images
    models/               nn, compat and metrics.nll (evaluation sums): never data modules, the app or the leaderboard
    metrics/              tensors and extractors: images and files (the cache folder, the network check), no data module
    nn/, data/            nothing else of the package but seeds; nn/ is plain torch (no Lightning)
    leaderboard/          nothing else of the package, and no torch
    images, compat, seeds nothing else of the package

Loading a checkpoint or building a data module by name (jsonargparse, the compat functions that rebuild a class
from its saved path) is the app's job alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = "lightning_gen"

#: What each part may import besides itself ("*": anything). A new top-level module fails until it is added here.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "app": ("*",),
    "__main__": ("app",),
    "evaluation": ("models", "data", "metrics", "nn", "images", "compat"),
    # Callbacks hook training into the evaluation's seeded sampling (evaluation never imports callbacks).
    "callbacks": ("evaluation", "models", "data", "metrics", "nn", "images", "files", "pictures", "loggers", "compat",
                  "seeds"),
    "pictures": ("models", "images"),
    "contracts": ("models",),  # the model contract's checkers: plain torch and the model interface
    "loggers": ("compat",),
    # The one evaluation-means accumulator, shared by the models' test steps and the benchmark.
    "models": ("nn", "compat", "metrics.nll"),
    "metrics": ("images", "files"),
    # Counter-based seeds: the GAN's noise, the training loader's order and binarization, the per-step streams.
    "nn": ("seeds",),
    "data": ("files", "seeds"),
    "leaderboard": ("files",),
    "images": ("files",),
    "files": (),
    "compat": (),
    "seeds": (),
    "": (),  # lightning_gen/__init__.py
}
#: Third-party imports a part must not make.
NO_THIRD_PARTY: dict[str, tuple[str, ...]] = {"nn": ("lightning",), "leaderboard": ("torch", "lightning")}
#: Imports that mean loading a checkpoint or building a class by name: only the app (and compat, which wraps them).
APP_ONLY = ("jsonargparse", "lightning.pytorch.cli.instantiate_module", "lightning_gen.compat.instantiate_class_path",
            "lightning_gen.compat.checkpoint_hparams_class")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """``(imported name, line)`` for every import in the file, at any depth; ``from a import b`` gives ``a.b``."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [(base if alias.name == "*" else f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def package_graph() -> dict[str, list[tuple[str, int]]]:
    return {module_name(path): imports_of(path) for path in sorted((REPO / PACKAGE).rglob("*.py"))}


def part(module: str) -> str:
    """``lightning_gen.models.gan`` -> ``models``; the package itself -> ``""``."""
    return module.split(".")[1] if module.count(".") else ""


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    """One line per import that breaks the layering, naming the file, the line and the import."""
    out = []
    for importer, imports in graph.items():
        layer = part(importer)
        where = importer.replace(".", "/") + ".py"
        if layer not in MAY_IMPORT:
            out.append(f"{where}: part {layer!r} is not in MAY_IMPORT; decide what it may import")
            continue
        allowed = MAY_IMPORT[layer]
        for name, line in imports:
            if _within(name, PACKAGE) and name != PACKAGE:
                target = name[len(PACKAGE) + 1:]
                ok = (part(name) == layer or "*" in allowed
                      or any(_within(target, a) for a in allowed))
                if not ok:
                    out.append(f"{where}:{line}: imports {name}, but {layer or PACKAGE} may import only "
                               f"{', '.join(allowed) or 'itself'}")
            if any(_within(name, banned) for banned in NO_THIRD_PARTY.get(layer, ())):
                out.append(f"{where}:{line}: imports {name}, which {layer}/ must not use")
            if layer not in ("app", "compat") and any(_within(name, job) for job in APP_ONLY):
                out.append(f"{where}:{line}: imports {name}: loading checkpoints and building classes by name is "
                           "the app's job")
    return out


def test_the_package_imports_only_downwards():
    graph = package_graph()
    assert {"lightning_gen.app.cli", "lightning_gen.models.gan", "lightning_gen.evaluation"} <= graph.keys()
    assert violations(graph) == []


def test_the_checker_finds_planted_violations_lazy_ones_included(tmp_path, monkeypatch):
    """A model reaching up into the app, nn/ importing Lightning, the leaderboard importing torch, metrics taking a
    data module, a new top-level module nobody placed: each is reported with its file and line."""
    fake = {
        "lightning_gen.models.gan": [("lightning_gen.nn.gan.MLPGenerator", 3), ("lightning_gen.app.run.Run", 40)],
        "lightning_gen.nn.conv": [("torch.nn", 1), ("lightning.pytorch", 2)],
        "lightning_gen.leaderboard.store": [("torch", 5)],
        "lightning_gen.metrics.classifier": [("lightning_gen.data.base.cache_root", 7), ("lightning_gen.data.Digits", 9)],
        "lightning_gen.evaluation": [("jsonargparse.ArgumentParser", 11)],
        "lightning_gen.app.benchmark": [("lightning_gen.evaluation.evaluate_model", 1), ("jsonargparse", 2)],
        "lightning_gen.gadgets": [],
    }
    assert violations(fake) == [
        "lightning_gen/models/gan.py:40: imports lightning_gen.app.run.Run, but models may import only nn, compat, "
        "metrics.nll",
        "lightning_gen/nn/conv.py:2: imports lightning.pytorch, which nn/ must not use",
        "lightning_gen/leaderboard/store.py:5: imports torch, which leaderboard/ must not use",
        "lightning_gen/metrics/classifier.py:7: imports lightning_gen.data.base.cache_root, but metrics may import "
        "only images, files",
        "lightning_gen/metrics/classifier.py:9: imports lightning_gen.data.Digits, but metrics may import only "
        "images, files",
        "lightning_gen/evaluation.py:11: imports jsonargparse.ArgumentParser: loading checkpoints and building "
        "classes by name is the app's job",
        "lightning_gen/gadgets.py: part 'gadgets' is not in MAY_IMPORT; decide what it may import",
    ]
    # The reader sees imports inside functions and resolves relative ones.
    source = tmp_path / PACKAGE / "models" / "lazy.py"
    source.parent.mkdir(parents=True)
    source.write_text("from .base import GenerativeModule\n\ndef f():\n    from lightning_gen.app import run\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    assert imports_of(source) == [("lightning_gen.models.base.GenerativeModule", 1), ("lightning_gen.app.run", 4)]


def test_every_package_file_holds_one_thing_within_400_lines():
    """STYLE.md: past about 400 lines a file holds a second thing; issue 23 made that a limit for the package."""
    long = {str(p.relative_to(REPO)): n for p in (REPO / PACKAGE).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"package files over 400 lines: {long}"
