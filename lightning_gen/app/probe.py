"""``lightning-gen probe``: linear-probe accuracy of a checkpointed model's representation (``representation(x)``
of the models that declare one: encoders, GAN discriminators): a logistic regression fitted on the training split's
features, scored on the test split. Prints one JSON line.

    lightning-gen probe runs/ae_mnist/.../checkpoints/last.ckpt --data MNIST --data-root DATA
    lightning-gen probe CKPT --data Digits --data-arg binarize=true --max-train 1000
"""

from __future__ import annotations

import argparse
import json
import os

from lightning_gen.app.cli import PROG
from lightning_gen.app.run import Run
from lightning_gen.data.base import ImageDataModule
from lightning_gen.metrics.probe import Data, linear_probe


def probe_splits(datamodule: ImageDataModule) -> Data:
    """``(train_x, train_y, test_x, test_y)`` of a data module, each split read through its dataset so a training
    transform (dynamic binarization) applies as in training."""
    datamodule.setup("fit")
    out = []
    for split in ("train", "test"):
        dataset = datamodule.datasets[split]
        out += dataset.__getitems__(list(range(len(dataset))))
    return tuple(out)  # type: ignore[return-value]


def probe_checkpoint(checkpoint: str | os.PathLike, data: str | None = None, *, root: str | None = None,
                     data_args: dict | None = None, max_train: int | None = None, max_test: int | None = None,
                     device: str = "cpu") -> dict:
    """:func:`~lightning_gen.metrics.probe.linear_probe` of a checkpoint's (or run folder's) model on the data
    module its run config names, or ``data``."""
    run = Run.open(checkpoint)
    model = run.model(map_location=device)
    datamodule = run.datamodule(data=data, root=root, **(data_args or {}))
    datamodule.prepare_data()
    return linear_probe(model.representation, probe_splits(datamodule), max_train, max_test=max_test, device=device)


def data_arguments(pairs: list[str]) -> dict:
    """``--data-arg KEY=VALUE`` options as keyword arguments, each value parsed as YAML (``binarize=true``)."""
    import yaml

    return {key: yaml.safe_load(value) for key, _, value in (pair.partition("=") for pair in pairs)}


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--data-arg`` and ``--data-root``: the data of a checkpoint's run, as ``probe`` and ``pictures``
    take them."""
    parser.add_argument("--data", default=None, help="data module: a class of lightning_gen.data or a full path "
                                                     "(default: the run's config.yaml)")
    parser.add_argument("--data-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="data module argument, value parsed as YAML (repeatable)")
    parser.add_argument("--data-root", "--root", dest="root", default=None,
                        help="data root (default $LIGHTNING_GEN_DATA), as benchmark's --data-root")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint or its run folder")
    add_data_options(parser)
    parser.add_argument("--max-train", type=int, default=None, help="fit on a random subset of this size")
    parser.add_argument("--max-test", type=int, default=None, help="score on a random subset of this size")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    result = probe_checkpoint(args.checkpoint, args.data, root=args.root, data_args=data_arguments(args.data_arg),
                              max_train=args.max_train, max_test=args.max_test, device=args.device)
    print(json.dumps(result))
    return 0
