"""The base data module: uint8 image tensors held in memory, fixed seeded splits, batched without per-sample work.

Every data module yields batches ``(x, y)``: ``x`` uint8 ``(B, C, H, W)`` in 0..255 (binary data is 0/255),
``y`` int64 ``(B,)`` class labels (-1 where the data has none). Models do their own scaling
(:func:`lightning_gen.models.base.to_levels`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

DATA_ENV = "LIGHTNING_GEN_DATA"
SPLITS = ("train", "val", "test")


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The data root: the argument, else ``$LIGHTNING_GEN_DATA``, else ``~/.cache/lightning_gen``."""
    if root is None or str(root) == "":
        root = os.environ.get(DATA_ENV) or Path.home() / ".cache" / "lightning_gen"
    return Path(root).expanduser()


def held_out_suffix(test_size: int, split_seed: int, default: tuple[int, int]) -> str:
    """The part of a ``dataset_id`` that names a test split drawn from the data (no official one): empty for the
    ``default`` ``(test_size, split_seed)``, else ``-test<N>-seed<S>``. Another draw is another test set, and its
    training images overlap the default test images."""
    return "" if (test_size, split_seed) == default else f"-test{test_size}-seed{split_seed}"


class DataFilesMissing(FileNotFoundError):
    """The files of a data set are not under the data root and cannot be downloaded."""


def missing_files_error(name: str, folder: Path, files: list[str], how: str) -> DataFilesMissing:
    """The error naming the files expected under ``folder`` and ``how`` to get them. It names the environment
    variable, which every command reads; each command adds its own data-root option (``--data.init_args.root``
    for ``fit``, ``--data-root`` for ``benchmark``) where it reports the error."""
    listing = "\n".join(f"  {folder / f}" for f in files)
    return DataFilesMissing(
        f"{name}: data files not found and they cannot be downloaded from this machine.\n"
        f"Expected:\n{listing}\n{how}\n"
        f"Set the data root with the environment variable {DATA_ENV}=PATH."
    )


class InMemoryImages(Dataset):
    """uint8 images and int64 labels in memory; the DataLoader fetches whole batches with one index operation.

    ``transform`` (optional) maps a uint8 batch to a uint8 batch, e.g. dynamic binarization.
    """

    def __init__(self, images: Tensor, labels: Tensor, transform=None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        self.images, self.labels, self.transform = images, labels.long(), transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        x, y = self.__getitems__([i])
        return x[0], y[0]

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[idx]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[idx]


def _collate_batch(batch):
    # __getitems__ already returns the stacked batch.
    return batch


class ImageDataModule(L.LightningDataModule):
    """Base class: subclasses set ``image_shape``, ``num_levels``, ``num_classes`` and implement :meth:`load`.

    Args:
        root: data root (default ``$LIGHTNING_GEN_DATA``, else ``~/.cache/lightning_gen``).
        batch_size: per-device batch size.
        num_workers: DataLoader workers (0 is fastest for in-memory data).
        pin_memory: pin host memory for faster host-to-GPU copies.
        val_size: images held out from the training split for validation, when the data set has no official
            validation split. The split is a fixed permutation drawn with ``split_seed``.
        split_seed: seed of that permutation: the same seed gives the same split on every machine.
    """

    image_shape: tuple[int, int, int] = (1, 28, 28)
    num_levels: int = 256
    num_classes: int = 0
    #: Whether :meth:`load` returns an official "val" split (otherwise it is carved out of "train").
    has_val_split: bool = False
    #: The feature extractor (:mod:`lightning_gen.metrics.features`) sample metrics of this data use by default:
    #: Inception-v3, the only one whose FIDs compare with published ones, unless a data set names a better fit.
    default_extractor: ClassVar[str] = "inception"

    @property
    def dataset_id(self) -> str:
        """Which data set the numbers measured on this module belong to, as the leaderboard files them: two
        modules with one id give comparable test numbers. Every init argument that changes the test images or
        their distribution (binarization, levels, image size, which images are held out for test) is part of it;
        loader settings (root, batch size, workers) never are. Subclasses state theirs (a class attribute, or a
        property where init arguments decide it); this fallback is the class name in kebab case."""
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", type(self).__name__).lower()

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_size: int = 5000,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.root = resolve_root(root)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.val_size = val_size
        self.split_seed = split_seed
        self.datasets: dict[str, InMemoryImages] = {}

    # ---- subclass hooks -----------------------------------------------------------------------------------
    def load(self, split: str) -> tuple[Tensor, Tensor]:
        """Read one split ("train", "test", and "val" if ``has_val_split``): uint8 images, int64 labels."""
        raise NotImplementedError

    def train_transform(self):
        """A uint8-batch -> uint8-batch transform applied to training batches only (default: none)."""
        return None

    # ---- LightningDataModule ------------------------------------------------------------------------------
    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """All three splits as ``{split: (images, labels)}``, with val carved from train where needed."""
        out = {"train": self.load("train"), "test": self.load("test")}
        if self.has_val_split:
            out["val"] = self.load("val")
        else:
            x, y = out["train"]
            if not 0 < self.val_size < x.shape[0]:
                raise ValueError(f"val_size must be in 1..{x.shape[0] - 1} for {type(self).__name__}, got {self.val_size}")
            perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.split_seed))
            val_idx, train_idx = perm[: self.val_size].sort().values, perm[self.val_size :].sort().values
            out["train"], out["val"] = (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])
        for split, (x, _) in out.items():
            if tuple(x.shape[1:]) != tuple(self.image_shape):
                raise ValueError(f"{type(self).__name__} {split} images have shape {tuple(x.shape[1:])}, expected {self.image_shape}")
        return out

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            for split, (x, y) in self.splits().items():
                self.datasets[split] = InMemoryImages(x, y, self.train_transform() if split == "train" else None)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=_collate_batch,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
