"""Data readers and data modules: bad files fail loudly and name the file, real data has the published sizes.

Small files in the real formats are written into ``tmp_path``; the tests on the real MNIST files run when
``$LIGHTNING_GEN_DATA`` holds them (CI sets it to /work/shared/data, which must never be written to).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gen.data import (CIFAR10, MNIST, BadDataFile, BinarizedMNIST, DataFilesMissing, FashionMNIST,
                                ImageFolder)
from helpers import require_real_data
from lightning_gen.data import datamodules, readers
from lightning_gen.data.readers import (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, existing, read_amat, read_cifar_batch,
                                        read_idx, read_idx_pair, read_image_folder)

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# ---- writers of the real formats -----------------------------------------------------------------------------------
def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def numbered_images(n: int, offset: int = 0) -> np.ndarray:
    """(n, 28, 28) uint8 images whose first two pixels spell their number, so splits can be traced."""
    x = np.random.default_rng(offset).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    ids = np.arange(offset, offset + n)
    x[:, 0, 0], x[:, 0, 1] = ids % 256, ids // 256
    return x


def image_ids(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()).tolist()


def write_idx_dataset(folder: Path, n_train: int = 60, n_test: int = 20) -> None:
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 1000)):
        write(folder / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(numbered_images(n, offset), IDX_IMAGES_MAGIC))
        labels = np.arange(offset, offset + n) % 10
        write(folder / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(labels, IDX_LABELS_MAGIC))


def amat_text(bits: np.ndarray) -> bytes:
    return "".join(" ".join(map(str, row)) + "\n" for row in bits).encode()


def cifar_pickle(data, labels) -> bytes:
    """A batch as the 2009 files have it: bytes keys, and numpy's array global under its old module name."""
    s = pickle.dumps({b"batch_label": b"batch", b"labels": labels, b"data": data, b"filenames": []}, protocol=3)
    return s.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def write_cifar(root: Path, n_per_batch: int = 12, n_test: int = 10) -> None:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else n_per_batch
        data = np.zeros((n, 3072), dtype=np.uint8)
        data[:, :1024], data[:, 1024:2048], data[:, 2048:] = 10, 20, 30  # red, green, blue planes
        data[:, 0] = np.arange(n) + 40 * k  # first red pixel: which image this is
        write(root / "cifar-10-batches-py" / name, cifar_pickle(data, [int(i) % 10 for i in range(n)]))


# ---- IDX -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"])
def test_idx_truncated_payload_names_file_and_sizes(tmp_path, name):
    full = idx_bytes(numbered_images(5), IDX_IMAGES_MAGIC)
    path = write(tmp_path / name, full[:-100])
    with pytest.raises(BadDataFile, match="truncated") as err:
        read_idx(path, IDX_IMAGES_MAGIC, item_shape=(28, 28))
    assert str(path) in str(err.value)
    assert f"expected {5 * 784} bytes of pixels, found {5 * 784 - 100}" in str(err.value)
    assert "download again" in str(err.value)


def test_idx_gzip_cut_short_is_truncated(tmp_path):
    packed = gzip.compress(idx_bytes(numbered_images(50), IDX_IMAGES_MAGIC))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(packed[: len(packed) // 2])  # an interrupted download
    with pytest.raises(BadDataFile, match="truncated") as err:
        read_idx(path, IDX_IMAGES_MAGIC)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("damage", ["not gzip", "flipped bytes"])
def test_idx_corrupt_gzip_names_file(tmp_path, damage):
    packed = bytearray(gzip.compress(idx_bytes(numbered_images(50), IDX_IMAGES_MAGIC)))
    if damage == "not gzip":
        packed = b"<html>404 Not Found</html>"
    else:
        packed[len(packed) // 2 : len(packed) // 2 + 64] = bytes(64)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(BadDataFile) as err:
        read_idx(path, IDX_IMAGES_MAGIC)
    assert str(path) in str(err.value) and "download again" in str(err.value)


def test_idx_wrong_magic_names_file(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.arange(10), IDX_LABELS_MAGIC))
    with pytest.raises(BadDataFile, match="magic number 2049") as err:
        read_idx(path, IDX_IMAGES_MAGIC)
    assert str(path) in str(err.value)


def test_idx_wrong_image_size_is_refused(tmp_path):
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros((3, 32, 32)), IDX_IMAGES_MAGIC))
    with pytest.raises(BadDataFile, match=r"\(32, 32\)") as err:
        read_idx(path, IDX_IMAGES_MAGIC, item_shape=(28, 28))
    assert str(path) in str(err.value)


def test_idx_label_count_mismatch_names_both_files(tmp_path):
    images = write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(numbered_images(30), IDX_IMAGES_MAGIC))
    labels = write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.arange(29) % 10, IDX_LABELS_MAGIC))
    with pytest.raises(BadDataFile, match="30 images .* 29 labels") as err:
        read_idx_pair(images, labels)
    assert str(images) in str(err.value) and str(labels) in str(err.value)


def test_idx_gz_and_unpacked_read_the_same(tmp_path):
    x = numbered_images(7)
    plain = write(tmp_path / "a" / "train-images-idx3-ubyte", idx_bytes(x, IDX_IMAGES_MAGIC))
    packed = write(tmp_path / "b" / "train-images-idx3-ubyte.gz", idx_bytes(x, IDX_IMAGES_MAGIC))
    assert existing(tmp_path / "a" / "train-images-idx3-ubyte") == plain
    assert existing(tmp_path / "b" / "train-images-idx3-ubyte") == packed
    np.testing.assert_array_equal(read_idx(plain, IDX_IMAGES_MAGIC), x)
    np.testing.assert_array_equal(read_idx(packed, IDX_IMAGES_MAGIC), x)


# ---- .amat ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["binarized_mnist_test.amat", "binarized_mnist_test.amat.gz"])
def test_amat_reads_bits(tmp_path, name):
    bits = np.random.default_rng(0).integers(0, 2, (6, 784))
    path = write(tmp_path / name, amat_text(bits))
    out = read_amat(path)
    assert out.dtype == torch.uint8 and out.shape == (6, 784)
    np.testing.assert_array_equal(out.numpy(), bits)


def test_amat_row_of_wrong_length_names_file_and_line(tmp_path):
    lines = amat_text(np.zeros((5, 784), dtype=int)).decode().splitlines()
    lines[2] = lines[2][:-2]  # line 3 loses its last value
    path = write(tmp_path / "binarized_mnist_train.amat.gz", ("\n".join(lines) + "\n").encode())
    with pytest.raises(BadDataFile, match="line 3: 783 values") as err:
        read_amat(path)
    assert str(path) in str(err.value)


def test_amat_value_other_than_0_1_names_file_line_and_value(tmp_path):
    bits = np.zeros((4, 784), dtype=int)
    bits[1, 99] = 2
    path = write(tmp_path / "binarized_mnist_valid.amat", amat_text(bits))
    with pytest.raises(BadDataFile, match="line 2, value 100: '2' is not 0 or 1") as err:
        read_amat(path)
    assert str(path) in str(err.value)


# ---- CIFAR-10 ------------------------------------------------------------------------------------------------------
def test_cifar_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    path = write(tmp_path / "data_batch_1", pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(BadDataFile, match="not allowed") as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_cifar_wrong_shape_and_label_count_name_file(tmp_path):
    path = write(tmp_path / "data_batch_1", cifar_pickle(np.zeros((4, 3000), np.uint8), [0] * 4))
    with pytest.raises(BadDataFile, match=r"expected uint8 \(N, 3072\)") as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)
    path = write(tmp_path / "data_batch_2", cifar_pickle(np.zeros((4, 3072), np.uint8), [0] * 3))
    with pytest.raises(BadDataFile, match="4 images but labels of shape") as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)


def test_cifar10_fake_batches(tmp_path):
    write_cifar(tmp_path)
    dm = CIFAR10(root=str(tmp_path), batch_size=8, val_size=10, download=False)
    dm.prepare_data()  # files present: nothing to do, no network
    dm.setup()
    sizes = {split: len(ds) for split, ds in dm.datasets.items()}
    assert sizes == {"train": 5 * 12 - 10, "val": 10, "test": 10}
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 32, 32) and y.dtype == torch.int64
    test = dm.datasets["test"]
    # Channel-major rows: the three 1,024-byte planes are red, green, blue.
    assert (test.images[:, 1] == 20).all() and (test.images[:, 2] == 30).all()
    assert test.images[:, 0, 0, 0].tolist() == list(range(200, 210))  # test_batch is batch k=5
    assert test.labels.tolist() == [i % 10 for i in range(10)]
    train_ids = sorted(torch.cat([dm.datasets[s].images[:, 0, 0, 0] for s in ("train", "val")]).tolist())
    assert train_ids == sorted(40 * k + i for k in range(5) for i in range(12))  # all five batches, once each


# ---- image folders -------------------------------------------------------------------------------------------------
def save_image(path: Path, color, size=(20, 16), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def test_image_folder_resizes_shorter_side_and_centre_crops(tmp_path):
    img = np.zeros((20, 100, 3), np.uint8)  # (H, W, C): red | green | blue, the green band 60 wide
    img[:, :20, 0], img[:, 20:80, 1], img[:, 80:, 2] = 255, 255, 255
    (tmp_path / "imgs").mkdir()
    Image.fromarray(img).save(tmp_path / "imgs" / "wide.png")
    x, y, classes = read_image_folder(tmp_path / "imgs", size=10, channels=3)
    assert x.shape == (1, 3, 10, 10) and x.dtype == torch.uint8
    assert (x[0, 1] > 245).all() and (x[0, 0] < 10).all() and (x[0, 2] < 10).all()  # only the middle survives
    assert y.tolist() == [-1] and classes == []
    grey, _, _ = read_image_folder(tmp_path / "imgs", size=10, channels=1)
    assert grey.shape == (1, 1, 10, 10)


def test_image_folder_labels_from_sorted_subfolders(tmp_path):
    save_image(tmp_path / "dog" / "a.PNG", "white")
    save_image(tmp_path / "cat" / "deep" / "b.jpg", "black")
    save_image(tmp_path / "cat" / "c.webp", "black")
    save_image(tmp_path / "bird" / "d.bmp", "red")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    x, y, classes = read_image_folder(tmp_path, size=8, channels=3)
    assert classes == ["bird", "cat", "dog"]
    assert sorted(y.tolist()) == [0, 1, 1, 2]
    assert (x[y == 2] > 245).all() and (x[y == 1] < 10).all()  # each image carries its own folder's label


def test_image_folder_skips_unreadable_files_with_warning(tmp_path):
    for i in range(3):
        save_image(tmp_path / "ok" / f"{i}.png", "blue")
    bad = [tmp_path / "ok" / "broken.png", tmp_path / "ok" / "empty.jpg"]
    bad[0].write_bytes(b"\x89PNG\r\n\x1a\n not really")
    bad[1].write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped 2 unreadable image files") as record:
        x, y, _ = read_image_folder(tmp_path, size=8, channels=3)
    message = str(record[0].message)
    assert all(str(p) in message for p in bad)
    assert x.shape == (3, 3, 8, 8) and y.tolist() == [0, 0, 0]


def test_image_folder_with_nothing_readable_names_folder(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    (folder / "b.jpeg").write_bytes(b"more garbage")
    with pytest.raises(BadDataFile, match="none of the 2 image files") as err:
        read_image_folder(folder, size=8)
    assert str(folder) in str(err.value)


def test_image_folder_cache_is_reused_and_follows_changes(tmp_path, monkeypatch):
    folder, cache = tmp_path / "imgs", tmp_path / "cache"
    save_image(folder / "a.png", "red")
    first = read_image_folder(folder, size=8, cache_dir=cache)
    assert len(list(cache.glob("*.pt"))) == 1 and not list(cache.glob("*.tmp"))

    def no_decoding(*args):
        raise AssertionError("the cached images should have been used")

    with monkeypatch.context() as m:
        m.setattr(readers, "load_image", no_decoding)
        again = read_image_folder(folder, size=8, cache_dir=cache)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    save_image(folder / "b.png", "green")  # a new file: a new key, decoded again
    assert read_image_folder(folder, size=8, cache_dir=cache)[0].shape[0] == 2
    assert read_image_folder(folder, size=16, cache_dir=cache)[0].shape[-1] == 16
    assert len(list(cache.glob("*.pt"))) == 3


def test_image_folder_datamodule_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_GEN_CACHE", str(tmp_path / "cache"))
    for i in range(30):
        save_image(tmp_path / "faces" / ("a" if i % 3 else "b") / f"{i:02d}.png", (i, 2 * i, 3 * i))
    dm = ImageFolder("faces", size=16, root=str(tmp_path), val_size=5, test_size=4, batch_size=4)
    assert dm.num_classes == 2 and dm.image_shape == (3, 16, 16)
    dm.prepare_data()
    dm.setup()
    ids = {split: set(ds.images[:, 0, 0, 0].tolist()) for split, ds in dm.datasets.items()}
    assert {s: len(v) for s, v in ids.items()} == {"train": 21, "val": 5, "test": 4}
    assert ids["train"] | ids["val"] | ids["test"] == set(range(30))  # disjoint, and nothing lost
    assert list((tmp_path / "cache" / "image_folder").glob("*.pt"))  # decoded once, kept for the next run


# ---- data modules on fake IDX files --------------------------------------------------------------------------------
def test_fashion_mnist_fake_files(tmp_path):
    write_idx_dataset(tmp_path / "FashionMNIST" / "raw", n_train=60, n_test=20)
    dm = FashionMNIST(root=str(tmp_path), batch_size=16, val_size=12, download=False)
    dm.prepare_data()
    dm.setup()
    assert {s: len(ds) for s, ds in dm.datasets.items()} == {"train": 48, "val": 12, "test": 20}
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 1, 28, 28) and y.dtype == torch.int64
    for split, ds in dm.datasets.items():
        # Labels travel with their images through the split: image i has label i % 10.
        assert ds.labels.tolist() == [i % 10 for i in image_ids(ds.images)], split
    assert set(image_ids(dm.datasets["test"].images)) == set(range(1000, 1020))


def test_splits_are_deterministic_and_disjoint(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw", n_train=200, n_test=10)

    def split_ids(seed):
        dm = MNIST(root=str(tmp_path), val_size=50, split_seed=seed, download=False)
        dm.setup()
        return {s: image_ids(ds.images) for s, ds in dm.datasets.items()}

    a, b, c = split_ids(0), split_ids(0), split_ids(1)
    assert a == b
    assert a["val"] != c["val"]
    assert not set(a["train"]) & set(a["val"])
    assert sorted(a["train"] + a["val"]) == list(range(200))


def test_dynamic_binarization_on_fake_files(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw", n_train=100, n_test=30)
    make = lambda: BinarizedMNIST(root=str(tmp_path), binarization="dynamic", val_size=20, download=False)
    a, b = make(), make()
    a.setup(), b.setup()
    assert a.num_levels == 2 and a.num_classes == 10
    for split in ("val", "test"):  # binarized once, the same in every run
        assert torch.equal(a.datasets[split].images, b.datasets[split].images)
        assert set(a.datasets[split].images.unique().tolist()) <= {0, 255}
    with pytest.raises(ValueError, match="unknown binarization 'adaptive'"):
        BinarizedMNIST(binarization="adaptive")


# ---- what the classes declare --------------------------------------------------------------------------------------
def test_every_data_module_names_a_registered_default_extractor():
    """The benchmark scores samples through the data module's ``default_extractor``: it must be registered, and the
    digit sets use the classifiers trained on digits (Inception would see grey digits blown up many times)."""
    import lightning_gen.data as data
    from lightning_gen.metrics.features import available_extractors

    modules = [obj for obj in vars(data).values()
               if isinstance(obj, type) and issubclass(obj, data.ImageDataModule) and obj is not data.ImageDataModule]
    assert len(modules) >= 7 and all(m.default_extractor in available_extractors() for m in modules)
    assert data.Digits.default_extractor == "digits-lenet"
    assert {m.default_extractor for m in (MNIST, BinarizedMNIST, FashionMNIST)} == {"mnist-lenet"}
    assert CIFAR10.default_extractor == ImageFolder.default_extractor == "inception"


# ---- dataset identity ----------------------------------------------------------------------------------------------
#: (data module, init arguments) -> the dataset id the leaderboard files its numbers under.
DATASET_IDS = [
    ("MNIST", {}, "mnist"),
    ("FashionMNIST", {}, "fashion-mnist"),
    ("CIFAR10", {}, "cifar10"),
    ("BinarizedMNIST", {}, "binarized-mnist-static"),
    ("BinarizedMNIST", {"binarization": "dynamic"}, "binarized-mnist-dynamic"),
    ("Digits", {}, "digits-8bit"),
    ("Digits", {"binarize": True}, "digits-binary"),
    ("Digits", {"test_size": 500}, "digits-8bit-test500-seed0"),
    ("Digits", {"binarize": True, "split_seed": 3}, "digits-binary-test300-seed3"),
    ("ImageFolder", {"folder": "celeba/img_align_celeba"}, "imagefolder-img-align-celeba-64"),
    ("ImageFolder", {"folder": "Faces 2", "size": 32, "channels": 1}, "imagefolder-faces-2-32-grey"),
    ("ImageFolder", {"folder": "faces", "test_size": 1000}, "imagefolder-faces-64-test1000-seed0"),
    ("RingOfGaussians", {}, "ring-8modes-r2-std0.02"),
    ("RingOfGaussians", {"num_modes": 25, "radius": 1.5, "std": 0.05}, "ring-25modes-r1.5-std0.05"),
]


@pytest.mark.parametrize("cls, args, expected", DATASET_IDS)
def test_dataset_id_names_the_data(tmp_path, cls, args, expected):
    import lightning_gen.data as data
    from lightning_gen.leaderboard.record import validate_dataset_id

    module = getattr(data, cls)(root=str(tmp_path), **args)
    assert module.dataset_id == expected
    validate_dataset_id(module.dataset_id)  # the spelling a leaderboard record accepts


#: One module, two sets of init arguments whose numbers must never be ranked together.
INCOMPARABLE = [
    ("BinarizedMNIST", {"binarization": "static"}, {"binarization": "dynamic"}),
    ("Digits", {"binarize": False}, {"binarize": True}),
    ("Digits", {}, {"test_size": 400}),  # another test set drawn from the 1,797 images
    ("Digits", {}, {"split_seed": 1}),
    ("ImageFolder", {"folder": "a"}, {"folder": "b"}),
    ("ImageFolder", {"folder": "a"}, {"folder": "a", "size": 32}),
    ("ImageFolder", {"folder": "a"}, {"folder": "a", "channels": 1}),
    ("ImageFolder", {"folder": "a"}, {"folder": "a", "test_size": 100}),
    ("ImageFolder", {"folder": "a"}, {"folder": "a", "split_seed": 1}),
    ("RingOfGaussians", {}, {"num_modes": 25}),
    ("RingOfGaussians", {}, {"radius": 1.0}),
    ("RingOfGaussians", {}, {"std": 0.05}),
]
#: Loader settings and the training images held out for validation: the test numbers stay comparable.
COMPARABLE = [
    ("MNIST", {}, {"batch_size": 7, "num_workers": 2, "pin_memory": True, "val_size": 100, "split_seed": 5,
                   "download": False}),
    ("FashionMNIST", {}, {"batch_size": 7, "val_size": 100}),
    ("CIFAR10", {}, {"batch_size": 7, "val_size": 100, "split_seed": 1}),
    ("BinarizedMNIST", {}, {"batch_size": 3, "download": False}),
    ("BinarizedMNIST", {"binarization": "dynamic"},
     {"binarization": "dynamic", "batch_size": 3, "val_size": 10, "split_seed": 2, "binarization_seed": 4}),
    ("Digits", {}, {"batch_size": 8, "val_size": 50, "num_workers": 1}),
    ("ImageFolder", {"folder": "a"}, {"folder": "/elsewhere/a", "batch_size": 5, "cache": False, "val_size": 10}),
    ("RingOfGaussians", {}, {"batch_size": 5, "extent": 3.0, "num_train": 100, "num_test": 50, "split_seed": 2}),
]


@pytest.mark.parametrize("cls, a, b", INCOMPARABLE)
def test_dataset_id_changes_with_what_changes_the_numbers(tmp_path, cls, a, b):
    import lightning_gen.data as data

    first, second = (getattr(data, cls)(root=str(tmp_path), **args) for args in (a, b))
    assert first.dataset_id != second.dataset_id


@pytest.mark.parametrize("cls, a, b", COMPARABLE)
def test_dataset_id_ignores_loader_settings_and_the_root(tmp_path, cls, a, b):
    import lightning_gen.data as data

    here = getattr(data, cls)(root=str(tmp_path), **a)
    elsewhere = getattr(data, cls)(root=str(tmp_path / "other"), **b)
    assert here.dataset_id == elsewhere.dataset_id


def test_every_data_module_states_its_dataset_id(tmp_path):
    """A data set's identity is an attribute of its class (a class attribute, or a property where init arguments
    decide it), never the fallback; a module someone adds without one gets its class name."""
    import lightning_gen.data as data

    modules = [obj for obj in vars(data).values()
               if isinstance(obj, type) and issubclass(obj, data.ImageDataModule) and obj is not data.ImageDataModule]
    assert {m.__name__ for m in modules} >= {cls for cls, _, _ in DATASET_IDS}
    assert [m.__name__ for m in modules if "dataset_id" not in vars(m)] == []

    class MyFaces(data.ImageDataModule):
        pass

    assert MyFaces(root=str(tmp_path)).dataset_id == "my-faces"


# ---- missing files, offline ----------------------------------------------------------------------------------------
EXPECTED = {
    MNIST: [f"MNIST/raw/{n}.gz" for n in IDX_NAMES],
    FashionMNIST: [f"FashionMNIST/raw/{n}.gz" for n in IDX_NAMES],
    BinarizedMNIST: [f"BinarizedMNIST/binarized_mnist_{s}.amat.gz" for s in ("train", "valid", "test")],
    CIFAR10: [f"cifar-10-batches-py/{n}" for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]],
}


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_offline_prepare_data_fails_fast_listing_files(tmp_path, monkeypatch, cls):
    monkeypatch.setattr(datamodules, "online", lambda host, port=443, timeout=3.0: False)
    start = time.monotonic()
    with pytest.raises(DataFilesMissing) as err:
        cls(root=str(tmp_path)).prepare_data()
    assert time.monotonic() - start < 10
    assert all(str(tmp_path / f) in str(err.value) for f in EXPECTED[cls])
    assert "cannot reach" in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing written into the data root


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_download_false_never_goes_online(tmp_path, monkeypatch, cls):
    def no_network(*args, **kwargs):
        raise AssertionError("download=False must not touch the network")

    monkeypatch.setattr(datamodules, "online", no_network)
    with pytest.raises(DataFilesMissing, match="download=False"):
        cls(root=str(tmp_path), download=False).prepare_data()
    with pytest.raises(DataFilesMissing):  # setup without prepare_data: the same clear error, not a traceback
        cls(root=str(tmp_path), download=False).setup()


def test_missing_files_fail_within_seconds_with_the_real_connectivity_check(tmp_path, monkeypatch):
    # The real online() check runs; should this machine be online, the download itself is stubbed out.
    monkeypatch.setattr(MNIST, "_fetch", lambda self: None)
    start = time.monotonic()
    with pytest.raises(DataFilesMissing) as err:
        MNIST(root=str(tmp_path)).prepare_data()
    assert time.monotonic() - start < 10
    assert all(str(tmp_path / f) in str(err.value) for f in EXPECTED[MNIST])


def test_binarized_mnist_download_writes_complete_files(tmp_path, monkeypatch):
    bits = np.random.default_rng(1).integers(0, 2, (3, 784))
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return io.BytesIO(amat_text(bits))

    monkeypatch.setattr(datamodules, "online", lambda host, port=443, timeout=3.0: True)
    monkeypatch.setattr(datamodules.urllib.request, "urlopen", fake_urlopen)
    dm = BinarizedMNIST(root=str(tmp_path))
    dm.prepare_data()
    assert sorted(p.name for p in (tmp_path / "BinarizedMNIST").iterdir()) == [
        f"binarized_mnist_{s}.amat" for s in ("test", "train", "valid")]  # no partial files left behind
    assert all(u.startswith("http://www.cs.toronto.edu/~larocheh/") for u in urls) and len(urls) == 3
    dm.setup()
    assert torch.equal(dm.datasets["train"].images.view(3, 784), torch.from_numpy(bits).to(torch.uint8) * 255)
    dm.prepare_data()  # everything there now: nothing fetched again
    assert len(urls) == 3


# ---- real data -----------------------------------------------------------------------------------------------------
def snapshot(root: str) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(root).rglob("*"))


def test_real_mnist():
    root = require_real_data(*(f"MNIST/raw/{n}" for n in IDX_NAMES))
    before = snapshot(root)
    dm = MNIST(root=root, batch_size=256)
    dm.prepare_data()
    train, test = dm.load("train"), dm.load("test")
    assert train[0].shape == (60000, 1, 28, 28) and test[0].shape == (10000, 1, 28, 28)
    for x, y in (train, test):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.max() == 255 and x.min() == 0
        assert y.min() == 0 and y.max() == 9 and (torch.bincount(y) > 800).all()  # every digit, none rare
    assert train[1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the well-known first training labels
    assert abs(train[0].float().mean().item() / 255 - 0.1307) < 1e-3  # the usual normalisation mean
    dm.setup()
    assert {s: len(ds) for s, ds in dm.datasets.items()} == {"train": 55000, "val": 5000, "test": 10000}
    assert snapshot(root) == before  # a shared data root is only read


def test_real_binarized_mnist_static():
    root = require_real_data(*(f"BinarizedMNIST/binarized_mnist_{s}.amat" for s in ("train", "valid", "test")))
    before = snapshot(root)
    dm = BinarizedMNIST(root=root)
    dm.prepare_data()
    dm.setup()
    assert dm.num_levels == 2 and dm.num_classes == 0
    assert {s: len(ds) for s, ds in dm.datasets.items()} == {"train": 50000, "val": 10000, "test": 10000}
    for ds in dm.datasets.values():
        assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (1, 28, 28)
        assert ((ds.images == 0) | (ds.images == 255)).all() and (ds.images == 255).any()
        assert (ds.labels == -1).all()
        assert 0.12 < ds.images.float().mean().item() / 255 < 0.145  # ink fraction of MNIST digits
    assert snapshot(root) == before


def test_real_dynamic_binarization():
    root = require_real_data(*(f"MNIST/raw/{n}" for n in IDX_NAMES))
    dm = BinarizedMNIST(root=root, binarization="dynamic", batch_size=1000)
    dm.setup()
    grey = dm.datasets["train"].images
    torch.manual_seed(0)
    epoch_sums = []
    loader = dm.train_dataloader()
    for _ in range(2):
        total = 0
        for x, y in loader:
            assert ((x == 0) | (x == 255)).all()
            total += int(x.long().sum())
        epoch_sums.append(total / 255)
    assert epoch_sums[0] != epoch_sums[1]  # each epoch draws its own binarization
    expected = grey.double().sum().item() / 255  # E[Bernoulli(x / 255)] summed over the epoch
    assert all(abs(s - expected) / expected < 2e-3 for s in epoch_sums)
    # Same images, two draws: pixels at 0 or 255 are certain, grey pixels vary.
    x = grey[:2000]
    a, b = dm.train_transform()(x), dm.train_transform()(x)
    assert not torch.equal(a, b)
    assert (a[x == 0] == 0).all() and (a[x == 255] == 255).all()
    test_grey = MNIST(root=root).load("test")[0]  # test set binarized once: its mean still follows the grey levels
    assert abs(dm.datasets["test"].images.float().mean().item() - test_grey.float().mean().item()) < 0.5
