"""``lightning-gen check MODULE.CLASS``: the model contract's checks (:mod:`lightning_gen.contracts`, the ones
``tests/test_contract.py`` runs on the suite's own models) on any importable model class, one line each.

    lightning-gen check my_models.MyModel
    lightning-gen check my_models.MyModel --shape 3 4 4 --levels 4 --init-args '{"hidden": 8}'
    lightning-gen check my_models.MyModel --data Digits --conditional

The class is built from its constructor defaults (plus ``--init-args``) and the data attributes the CLI links in,
on tiny images of ``--shape`` and ``--levels``; the likelihood checks that need every image of a space use the
largest image of that many channels whose space is small enough. Each check prints ``PASS``, ``SKIP`` (with why)
or ``FAIL`` with a one-line reason naming what to fix. The ``checkpoint`` check trains one step with ``lightning-gen
fit`` on random images and opens the checkpoint as every command does (weights-only): the model must come back
computing the same samples and likelihoods. Exit status: 0 when nothing fails, 1 when a check fails,
2 for a usage mistake (a class that cannot be imported, bad arguments).
"""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from lightning_gen import contracts
from lightning_gen.app.cli import PROG, UserError
from lightning_gen.app.parse_errors import explain_unimportable
from lightning_gen.app.roundtrip import assert_round_trip
from lightning_gen.models.base import GenerativeModule

#: Images of a space summed over for normalisation, and sampled for the sampler check, at most.
NORMALISATION_SPACE, SAMPLER_SPACE = 1024, 64


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODULE.CLASS", help="the model class, importable (PYTHONPATH or pip install -e)")
    p.add_argument("--data", metavar="NAME", help="a data module of lightning_gen.data (e.g. Digits): its channels, "
                   "levels and classes replace C, --levels and --classes; the images stay H x W")
    p.add_argument("--shape", type=int, nargs=3, default=(1, 4, 4), metavar=("C", "H", "W"),
                   help="image shape to build the model on (default: 1 4 4)")
    p.add_argument("--levels", type=int, default=2, help="levels per sub-pixel, 2 (binary) to 256 (default: 2)")
    p.add_argument("--classes", type=int, default=0, help="number of classes; with --conditional, conditioned on")
    p.add_argument("--conditional", action="store_true", help="pass conditional=True (class conditioning)")
    p.add_argument("--init-args", default="{}", metavar="JSON", help="more constructor arguments, as a JSON object")
    return p


def import_class(path: str, argv: list[str]) -> type[GenerativeModule]:
    """The class ``MODULE.CLASS`` names; a :class:`UserError` saying how to make it importable, if it is not."""
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise UserError(f"{path}: name the class with its module, MODULE.CLASS (e.g. my_models.MyModel)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UserError(explain_unimportable(path, e.name or module_name, ["check", *argv])) from e
    cls = vars(module).get(name)
    if not (isinstance(cls, type) and issubclass(cls, GenerativeModule)):
        raise UserError(f"{path}: {module_name} defines no GenerativeModule subclass {name!r}")
    return cls


def data_of(name: str, asked: contracts.Data) -> contracts.Data:
    """The channels, levels and classes of the data module ``lightning_gen.data.<name>`` (built from its defaults),
    with the class conditioning ``asked`` for."""
    import lightning_gen.data

    from lightning_gen.data import ImageDataModule

    known = {n: c for n, c in vars(lightning_gen.data).items()
             if isinstance(c, type) and issubclass(c, ImageDataModule) and c is not ImageDataModule}
    data_cls = known.get(name)
    if data_cls is None:
        raise UserError(f"--data {name}: lightning_gen.data has no such data module; one of {', '.join(sorted(known))}")
    module = data_cls()
    return contracts.Data(name, module.image_shape[0], module.num_levels, module.num_classes, asked.conditional)


def tiny_shape(channels: int, levels: int, limit: int) -> tuple[int, int, int] | None:
    """The largest image of ``channels`` channels (3x3, 2x2, 1x2, 1x1) whose space has at most ``limit`` images."""
    for h, w in ((3, 3), (2, 2), (1, 2), (1, 1)):
        if levels ** (channels * h * w) <= limit:
            return channels, h, w
    return None


def run_checks(cls: type[GenerativeModule], data: contracts.Data, shape: tuple[int, int, int],
               init_args: dict) -> list[tuple[str, str, str]]:
    """``(check, PASS | SKIP | FAIL, reason)`` for each check of the contract, in order."""
    def make(at: tuple[int, int, int]) -> GenerativeModule:
        torch.manual_seed(0)
        options = {"conditional": True} if data.conditional else {}
        return cls(image_shape=at, num_levels=data.num_levels, num_classes=data.num_classes, **options,
                   **init_args).eval()

    results: list[tuple[str, str, str]] = []

    def attempt(name: str, check: Callable[[], str | None]) -> None:
        try:
            skipped = check()
        except Exception as e:  # noqa: BLE001  (every failure is reported, on one line)
            lines = str(e).strip().splitlines()
            reason = lines[0] if lines else ""
            results.append((name, "FAIL", reason if isinstance(e, AssertionError) else f"{type(e).__name__}: {reason}"))
        else:
            results.append((name, "SKIP" if skipped else "PASS", skipped or ""))

    try:
        model = contracts.sharpen(make(shape))  # larger weights than the initialisation's: samples that differ
    except Exception as e:  # noqa: BLE001
        return [("build", "FAIL", f"{cls.__name__}(image_shape={shape}, num_levels={data.num_levels}, ...) raised "
                                  f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")]
    results.append(("build", "PASS", ""))
    def family() -> None:
        try:
            declared = cls.family
        except AttributeError:
            declared = None
        assert isinstance(declared, str) and declared, "declare family: ClassVar[str] (e.g. 'autoregressive')"

    def checkpoint() -> None:
        with tempfile.TemporaryDirectory() as root:
            assert_round_trip(cls, data, shape[1], Path(root), init_args)

    attempt("family", family)
    attempt("sample", lambda: contracts.assert_sample_contract(model))
    x = model.sample(5, generator=contracts.generator(0))
    attempt("log_prob", lambda: contracts.assert_log_prob_contract(model, x))
    if shape[1] == shape[2]:
        attempt("checkpoint", checkpoint)
    if not cls.has_likelihood:
        return results
    exact = contracts.likelihood_is_exact(model)

    def normalised() -> str | None:
        at = tiny_shape(shape[0], data.num_levels, NORMALISATION_SPACE)
        if at is None:
            return f"no image of {shape[0]} channels on {data.num_levels} levels has a space small enough"
        tiny = make(at)
        if exact:
            contracts.sharpen(tiny)  # an estimate stays at the initialisation, where it is well behaved
        for labels in range(2) if tiny.conditional else [None]:
            contracts.assert_normalised(tiny, labels)
        return None

    def sampler() -> str | None:
        if not exact:
            return "the likelihood is an estimate"
        at = tiny_shape(shape[0], data.num_levels, SAMPLER_SPACE)
        if at is None:
            return f"no image of {shape[0]} channels on {data.num_levels} levels has a space small enough"
        contracts.assert_samples_follow_likelihood(make(at), labels=0 if data.conditional else None)
        return None

    def causal() -> str | None:
        if not exact:
            return "the likelihood is an estimate"
        contracts.assert_autoregressive(model, model.sample(8, generator=contracts.generator(0)))
        return None

    attempt("sums to one", normalised)
    attempt("samples follow log_prob", sampler)
    attempt("causality", causal)
    return results


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if not 2 <= args.levels <= 256:
        raise UserError(f"--levels {args.levels}: between 2 and 256")
    try:
        init_args = json.loads(args.init_args)
    except json.JSONDecodeError as e:
        raise UserError(f"--init-args {args.init_args!r} is not JSON: {e}") from e
    if not isinstance(init_args, dict):
        raise UserError(f"--init-args {args.init_args!r}: a JSON object, e.g. '{{\"hidden\": 8}}'")
    cls = import_class(args.model, argv)
    shape = tuple(args.shape)
    data = contracts.Data("check", shape[0], args.levels, args.classes, args.conditional)
    if args.data:
        data = data_of(args.data, data)
        shape = (data.channels, *shape[1:])
    results = run_checks(cls, data, shape, init_args)
    width = max(len(name) for name, _, _ in results)
    for name, verdict, reason in results:
        print((f"{verdict:<4}  {name:<{width}}" + (f"  {reason}" if reason else "")).rstrip())
    failed = [name for name, verdict, _ in results if verdict == "FAIL"]
    print(f"{args.model}: " + (f"{len(failed)} of {len(results)} checks failed" if failed else
                               f"keeps the contract ({len(results)} checks)"))
    return 1 if failed else 0
