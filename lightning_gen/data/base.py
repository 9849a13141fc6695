"""The base data module: uint8 image tensors held in memory, fixed seeded splits, batched without per-sample work.

Every data module yields batches ``(x, y)``: ``x`` uint8 ``(B, C, H, W)`` in 0..255 (binary data is 0/255),
``y`` int64 ``(B,)`` class labels (-1 where the data has none). Models do their own scaling
(:func:`lightning_gen.models.base.to_levels`).

Training batches come from a :class:`ResumableLoader`: each epoch's order is a permutation drawn from
``(seed, epoch)``, and a training transform draws from a generator of ``(seed, epoch, rank)``, so the loader's whole
state is two integers that Lightning saves in every checkpoint; a run resumed from any step sees the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightning_gen.seeds import derive_seed, run_seed

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


class ResumableLoader(DataLoader):
    """The training DataLoader whose position Lightning saves and restores: ``state_dict()`` is the epoch and the
    batches of it already served (Lightning 2.6 checkpoints any train loader with ``state_dict`` /
    ``load_state_dict`` and loads it back before the resumed epoch's first batch).

    Each epoch is this rank's share of a permutation drawn from ``(seed, epoch)`` (a ``DistributedSampler``'s order,
    padded to equal shares; being one, Lightning keeps it under DDP). ``transform`` (a uint8-batch -> uint8-batch
    function taking a ``generator``, e.g. dynamic binarization) runs here in the main process, drawing from one
    generator per epoch seeded from ``(seed, epoch, rank)``: its draws depend on the batch's place alone, not on
    workers or on what else drew from the global RNG. A resumed epoch replays the batches already served and
    drops them (at most one epoch of loading, with no training), so the draws after them are the uninterrupted
    run's. Without a Trainer to set the epoch, a finished pass moves on to the next epoch by itself.

    A resume inside an epoch needs the checkpoint's world size and batch size: another one would split the epoch
    differently, and :meth:`load_state_dict` refuses it; at an epoch's end either may change.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 transform=None, **kwargs) -> None:
        sampler = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self.transform = transform
        self.served = 0  # batches of the sampler's epoch handed out so far
        self._resume: tuple[int, int] | None = None  # (epoch, batches of it served before the checkpoint)

    def __iter__(self):
        sampler = self.sampler
        epoch = sampler.epoch
        served_before = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        generator = None
        if self.transform is not None:
            generator = torch.Generator().manual_seed(derive_seed(sampler.seed, epoch, sampler.rank))
        self.served = 0
        for x, y in super().__iter__():
            if generator is not None:
                x = self.transform(x, generator=generator)
            self.served += 1
            if self.served > served_before:
                yield x, y
        sampler.set_epoch(epoch + 1)
        self.served = 0

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches": self.served, "seed": self.sampler.seed,
                "world_size": self.sampler.num_replicas, "batch_size": self.batch_size, "batches_per_epoch": len(self)}

    def load_state_dict(self, state: dict) -> None:
        mid_epoch = 0 < state["batches"] < state["batches_per_epoch"]
        for key, what, fix in (("world_size", "processes", "--trainer.devices / --trainer.num_nodes"),
                               ("batch_size", "the per-process batch size", "--data.init_args.batch_size")):
            here = self.sampler.num_replicas if key == "world_size" else self.batch_size
            if mid_epoch and state[key] != here:
                raise ValueError(f"cannot resume mid-epoch exactly: the checkpoint was saved with {key}={state[key]} "
                                 f"({what}), this run has {key}={here}. Resume with the checkpoint's value "
                                 f"({fix}), or from a checkpoint saved at an epoch's end.")
        self.sampler.seed = state["seed"]
        if state["batches"] >= state["batches_per_epoch"]:  # saved after the epoch's last batch
            self.sampler.set_epoch(state["epoch"] + 1)
        else:
            self.sampler.set_epoch(state["epoch"])
            self._resume = (state["epoch"], state["batches"])


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
        """A ``(uint8 batch, generator=...) -> uint8 batch`` transform applied to training batches only, drawing its
        randomness from the generator it is given (default: none)."""
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
                self.datasets[split] = InMemoryImages(x, y)

    def _loader_options(self) -> dict:
        return dict(batch_size=self.batch_size, num_workers=self.num_workers, pin_memory=self.pin_memory,
                    collate_fn=_collate_batch, persistent_workers=self.num_workers > 0)

    def _loader(self, split: str) -> DataLoader:
        self.setup()
        return DataLoader(self.datasets[split], shuffle=False, **self._loader_options())

    def train_dataloader(self) -> ResumableLoader:
        """The training batches in an order drawn from the run's seed (``seed_everything``'s) and the epoch; under
        DDP each process gets its share of each epoch."""
        self.setup()
        trainer = self.trainer
        shares = (trainer.distributed_sampler_kwargs if trainer is not None else None) or {}
        return ResumableLoader(self.datasets["train"], seed=run_seed(), transform=self.train_transform(),
                               num_replicas=shares.get("num_replicas", 1), rank=shares.get("rank", 0),
                               **self._loader_options())

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
