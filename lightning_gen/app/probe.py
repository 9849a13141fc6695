"""Linear probe of a checkpointed model's representation on the train and test splits of a data module.

    python scripts/probe.py runs/ae_mnist/.../checkpoints/last.ckpt --data MNIST --root /work/shared/data
"""

from __future__ import annotations

import os

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
