"""The benchmark data sets as :class:`ImageDataModule` subclasses: MNIST, binarized MNIST, Fashion-MNIST, CIFAR-10,
and any folder of images (CelebA 64x64 among them).

Files live under the data root (``--data.root``, else ``$LIGHTNING_GEN_DATA``, else ``~/.cache/lightning_gen``) in
the layout torchvision uses, so an existing torchvision download is found as it is. ``prepare_data`` (run once
per node by Lightning) downloads what is missing when ``download=True``; a machine that cannot reach the server,
or ``download=False``, gets a :class:`DataFilesMissing` within seconds that lists the files and where to get them.
Nothing is written under the data root unless a download is needed, so a shared read-only root works.
"""

from __future__ import annotations

import re
import shutil
import urllib.request
import zlib
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import torch
from torch import Tensor

from lightning_gen.data.base import DataFilesMissing, ImageDataModule, held_out_suffix, missing_files_error
from lightning_gen.data.readers import (class_names, existing, read_amat, read_cifar_batch, read_idx_pair,
                                        read_image_folder)
from lightning_gen.files import atomic_write, cache_root, online

BINARIZATIONS = ("static", "dynamic")
LAROCHELLE_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _idx_expected_files() -> list[str]:
    return [f"{name}.gz" for pair in _IDX_FILES.values() for name in pair]


def _read_idx_split(folder: Path, split: str) -> tuple[Tensor, Tensor]:
    images, labels = (existing(folder / name) for name in _IDX_FILES[split])
    return read_idx_pair(images, labels, image_size=(28, 28), num_classes=10)


def _torchvision_download(name: str, root: Path) -> None:
    import torchvision

    # The test split is the smaller one to load once the download is done.
    getattr(torchvision.datasets, name)(str(root), train=False, download=True)


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    return online(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


class _DownloadableDataModule(ImageDataModule):
    """Shared logic of the data sets that come as files from a server: which files, present or not, download.

    Subclasses set :attr:`folder`, :attr:`source_url` and implement :meth:`expected_files`, :meth:`_fetch`.
    """

    #: Where the files can be had by hand; also the server that the connectivity check tries.
    source_url: str = ""

    def __init__(self, root: str | None = None, batch_size: int = 64, *, download: bool = True, val_size: int = 5000,
                 num_workers: int = 0, pin_memory: bool = False, split_seed: int = 0) -> None:
        super().__init__(root, batch_size, num_workers=num_workers, pin_memory=pin_memory, val_size=val_size,
                         split_seed=split_seed)
        self.save_hyperparameters()  # collects the arguments of a subclass's own __init__ too
        self.download = download

    @property
    def folder(self) -> Path:
        raise NotImplementedError

    def expected_files(self) -> list[str]:
        """The files the data set needs, relative to :attr:`folder`; ``name.gz`` may also be present unpacked."""
        raise NotImplementedError

    def _fetch(self) -> None:
        """Download the files into :attr:`folder`."""
        raise NotImplementedError

    def missing_files(self) -> list[str]:
        return [f for f in self.expected_files() if existing(self.folder / f.removesuffix(".gz")) is None]

    def _missing_error(self, missing: list[str], why: str) -> DataFilesMissing:
        how = (f"{why}\nGet them from {self.source_url} and put them into {self.folder} "
               "(gzipped .gz files are read as they are; unpacked ones work too).")
        return missing_files_error(type(self).__name__, self.folder, missing, how)

    def prepare_data(self) -> None:
        missing = self.missing_files()
        if not missing:
            return
        if not self.download:
            raise self._missing_error(missing, "Downloading is off (download=False).")
        if not _reachable(self.source_url):
            raise self._missing_error(missing, f"This machine cannot reach {urlsplit(self.source_url).hostname}.")
        try:
            self._fetch()
        except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision raises RuntimeError
            raise self._missing_error(missing, f"Downloading failed: {err}") from err
        missing = self.missing_files()
        if missing:
            raise self._missing_error(missing, "The download finished without producing them.")

    def require_files(self) -> None:
        """Raise :class:`DataFilesMissing` unless every file is there (used before reading, on every rank)."""
        missing = self.missing_files()
        if missing:
            raise self._missing_error(missing, "Run prepare_data() with download=True (the Trainer calls it), or:")


class _IDXDataModule(_DownloadableDataModule):
    """MNIST-like data sets: IDX files in ``<root>/<name>/raw/``, 60,000 train and 10,000 test 28x28 images."""

    image_shape = (1, 28, 28)
    num_levels = 256
    num_classes = 10
    _torchvision_name: str = ""

    @property
    def folder(self) -> Path:
        return self.root / self._torchvision_name / "raw"

    def expected_files(self) -> list[str]:
        return _idx_expected_files()

    def _fetch(self) -> None:
        _torchvision_download(self._torchvision_name, self.root)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        self.require_files()
        return _read_idx_split(self.folder, split)


class MNIST(_IDXDataModule):
    """MNIST handwritten digits (LeCun, Cortes, Burges): 8-bit grey ``(1, 28, 28)``, 256 levels, 10 classes.

    60,000 training and 10,000 test images; ``val_size`` (default 5,000) images of the training set are held out
    for validation by a fixed permutation drawn with ``split_seed``, leaving 55,000. Files:
    ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``, downloaded with torchvision.
    """

    source_url = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    _torchvision_name = "MNIST"
    default_extractor: ClassVar[str] = "mnist-lenet"
    # The official test split: val_size and split_seed only move training images into validation.
    dataset_id: ClassVar[str] = "mnist"


class FashionMNIST(_IDXDataModule):
    """Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, arXiv 1708.07747): Zalando article images in MNIST's format.

    8-bit grey ``(1, 28, 28)``, 256 levels, 10 classes; 60,000 training images (``val_size``, default 5,000, held
    out for validation with ``split_seed``) and 10,000 test images. Files:
    ``<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``, downloaded with torchvision.
    """

    source_url = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    _torchvision_name = "FashionMNIST"
    dataset_id: ClassVar[str] = "fashion-mnist"
    # A stand-in: a classifier of digits, not of clothes (the benchmark says so when it uses it).
    default_extractor: ClassVar[str] = "mnist-lenet"


class DynamicBinarize:
    """uint8 batch -> a fresh Bernoulli(x / 255) draw per pixel, as 0/255, from ``generator``.

    The training loader (:class:`~lightning_gen.data.base.ResumableLoader`) passes a generator seeded from the
    run's seed, the epoch and the rank, so every epoch sees a new binarization, a seeded run is reproducible and a
    resumed one draws what the uninterrupted one drew.
    """

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return binarize(x, generator)


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """uint8 images -> 0/255 images with P(255) = x / 255 per pixel."""
    u = torch.rand(x.shape, generator=generator)
    return (u * 255 < x).to(torch.uint8) * 255


class BinarizedMNIST(_DownloadableDataModule):
    """Binary MNIST ``(1, 28, 28)``, ``num_levels=2``, values 0/255, in one of two standard forms.

    ``binarization="static"``: the fixed binarization of Larochelle & Murray (AISTATS 2011), the data set of the
    PixelRNN and NADE likelihood tables: its official 50,000 / 10,000 / 10,000 train / valid / test split, no
    labels (``y = -1``, ``num_classes=0``). Files: ``<root>/BinarizedMNIST/binarized_mnist_{train,valid,test}.amat``
    (or ``.amat.gz``), downloaded from the authors' server.

    ``binarization="dynamic"``: the 8-bit MNIST images (files as for :class:`MNIST`) drawn as Bernoulli(x / 255)
    afresh every time a training batch is drawn (as in the IWAE paper, Burda et al. 2015, arXiv 1509.00519);
    validation and test images are binarized once with ``binarization_seed`` so evaluation is deterministic.
    Labels are kept (``num_classes=10``); 60,000 / 10,000 images with ``val_size`` (default 5,000) of the
    training set held out by ``split_seed``.
    """

    image_shape = (1, 28, 28)
    num_levels = 2
    default_extractor: ClassVar[str] = "mnist-lenet"

    def __init__(self, root: str | None = None, batch_size: int = 64, *, binarization: str = "static",
                 download: bool = True, val_size: int = 5000, binarization_seed: int = 0, num_workers: int = 0,
                 pin_memory: bool = False, split_seed: int = 0) -> None:
        if binarization not in BINARIZATIONS:
            raise ValueError(f"unknown binarization {binarization!r}; expected one of {BINARIZATIONS}")
        super().__init__(root, batch_size, download=download, num_workers=num_workers, pin_memory=pin_memory,
                         val_size=val_size, split_seed=split_seed)
        self.binarization = binarization
        self.binarization_seed = binarization_seed
        self.has_val_split = binarization == "static"
        self.num_classes = 0 if binarization == "static" else 10
        self.source_url = LAROCHELLE_URL.rsplit("/", 1)[0] + "/" if binarization == "static" else MNIST.source_url

    @property
    def dataset_id(self) -> str:
        # Static and dynamic binarization are different data sets (88.71 vs 86.76 nats for one VAE in the IWAE
        # paper). binarization_seed is not part of it: it redraws the same test images from the same Bernoulli
        # distribution, as every published dynamic number does with its own draw.
        return f"binarized-mnist-{self.binarization}"

    @property
    def folder(self) -> Path:
        return self.root / ("BinarizedMNIST" if self.binarization == "static" else "MNIST/raw")

    def expected_files(self) -> list[str]:
        if self.binarization == "dynamic":
            return _idx_expected_files()
        return [f"binarized_mnist_{split}.amat.gz" for split in ("train", "valid", "test")]

    def _fetch(self) -> None:
        if self.binarization == "dynamic":
            return _torchvision_download("MNIST", self.root)
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in self.missing_files():
            split = name.split("_")[-1].split(".")[0]
            target = self.folder / name.removesuffix(".gz")
            # A download cut short leaves no file that looks complete.
            with atomic_write(target) as f, urllib.request.urlopen(LAROCHELLE_URL.format(split=split),
                                                                   timeout=60) as response:
                shutil.copyfileobj(response, f, 1 << 20)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        self.require_files()
        if self.binarization == "dynamic":
            return _read_idx_split(self.folder, split)  # 8-bit; binarized in splits() and train_transform()
        name = {"train": "train", "val": "valid", "test": "test"}[split]
        bits = read_amat(existing(self.folder / f"binarized_mnist_{name}.amat"))
        images = (bits * 255).view(-1, 1, 28, 28)  # (N, 784) in {0, 1} -> (N, 1, 28, 28) in {0, 255}
        return images, torch.full((images.shape[0],), -1, dtype=torch.long)

    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        out = super().splits()
        if self.binarization == "dynamic":
            for split in ("val", "test"):
                x, y = out[split]
                seed = zlib.crc32(f"{split}:{self.binarization_seed}".encode())  # stable across processes
                out[split] = binarize(x, torch.Generator().manual_seed(seed)), y
        return out

    def train_transform(self):
        return DynamicBinarize() if self.binarization == "dynamic" else None


class CIFAR10(_DownloadableDataModule):
    """CIFAR-10 (Krizhevsky 2009): 8-bit RGB ``(3, 32, 32)``, 256 levels, 10 classes.

    50,000 training images (``val_size``, default 5,000, held out for validation by ``split_seed``) and 10,000
    test images. Files: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}``, the python version, downloaded
    and unpacked by torchvision (the archive ``cifar-10-python.tar.gz`` is left beside the folder).
    """

    image_shape = (3, 32, 32)
    num_levels = 256
    num_classes = 10
    source_url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    dataset_id: ClassVar[str] = "cifar10"
    _files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}

    @property
    def folder(self) -> Path:
        return self.root / "cifar-10-batches-py"

    def expected_files(self) -> list[str]:
        return self._files["train"] + self._files["test"]

    def missing_files(self) -> list[str]:
        return [f for f in self.expected_files() if not (self.folder / f).is_file()]

    def _fetch(self) -> None:
        import torchvision

        torchvision.datasets.CIFAR10(str(self.root), train=False, download=True)

    def _missing_error(self, missing: list[str], why: str) -> DataFilesMissing:
        how = f"{why}\nGet {self.source_url} and unpack it in {self.root} (it holds the folder cifar-10-batches-py)."
        return missing_files_error(type(self).__name__, self.folder, missing, how)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        self.require_files()
        batches = [read_cifar_batch(self.folder / name) for name in self._files[split]]
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


class ImageFolder(ImageDataModule):
    """Any folder of images, e.g. CelebA at 64x64 (``folder=celeba/img_align_celeba``): 8-bit, 256 levels.

    Every png/jpg/jpeg/bmp/gif/webp file under ``folder`` (recursively) is loaded as RGB (``channels=3``) or grey
    (``channels=1``), its shorter side resized to ``size`` and centre-cropped to ``(channels, size, size)``.
    Labels are the sorted first-level subfolder names (``num_classes`` of them); a folder without subfolders has
    no labels (``y = -1``, ``num_classes=0``). A relative ``folder`` is taken under the data root. There is no
    official split: ``test_size`` and ``val_size`` images (defaults 5,000 each) are held out by fixed
    permutations drawn with ``split_seed``. The decoded images are cached in ``$LIGHTNING_GEN_CACHE/image_folder/`` (default ``~/.cache/lightning_gen/cache``) (keyed
    by folder, size, channels and every file's size and modification time) when the root is writable.
    """

    num_levels = 256

    def __init__(self, folder: str, size: int = 64, channels: int = 3, root: str | None = None, batch_size: int = 64,
                 *, val_size: int = 5000, test_size: int = 5000, cache: bool = True, num_workers: int = 0,
                 pin_memory: bool = False, split_seed: int = 0) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        super().__init__(root, batch_size, num_workers=num_workers, pin_memory=pin_memory, val_size=val_size,
                         split_seed=split_seed)
        self.save_hyperparameters()
        self.folder = self.root / Path(folder).expanduser()  # an absolute folder replaces the root
        self.size, self.channels, self.test_size, self.cache = size, channels, test_size, cache
        self.image_shape = (channels, size, size)
        self._all: tuple[Tensor, Tensor] | None = None

    @property
    def dataset_id(self) -> str:
        """``imagefolder-<folder name>-<size>``, ``-grey`` for one channel, and the held-out split where it is not
        the default; the folder's last name only, so the same images under another root keep their id."""
        name = re.sub(r"[^a-z0-9]+", "-", self.folder.name.lower()).strip("-") or "root"
        grey = "-grey" if self.channels == 1 else ""
        return f"imagefolder-{name}-{self.size}{grey}" + held_out_suffix(self.test_size, self.split_seed, (5000, 0))

    @property
    def num_classes(self) -> int:
        # Known before loading (the CLI links it to the model at construction): the subfolders are the classes.
        return len(class_names(self.folder))

    def prepare_data(self) -> None:
        if not self.folder.is_dir():
            raise missing_files_error(type(self).__name__, self.folder.parent, [self.folder.name],
                                      "Put the image files (in class subfolders, if they have labels) into it.")

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        self.prepare_data()
        if self._all is None:
            cache_dir = cache_root() / "image_folder" if self.cache else None
            x, y, _ = read_image_folder(self.folder, size=self.size, channels=self.channels, cache_dir=cache_dir)
            self._all = x, y
        x, y = self._all
        if not 0 < self.test_size < x.shape[0] - 1:
            raise ValueError(f"test_size must be in 1..{x.shape[0] - 2} for the {x.shape[0]} images in {self.folder}, "
                             f"got {self.test_size}")
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.split_seed + 1))
        test_idx, train_idx = perm[: self.test_size].sort().values, perm[self.test_size :].sort().values
        idx = test_idx if split == "test" else train_idx
        return x[idx], y[idx]
