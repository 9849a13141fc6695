"""Strict readers for the on-disk formats of the data sets: IDX, ``.amat``, CIFAR-10 python batches, image folders.

Every reader checks what it reads and fails with a :class:`BadDataFile` that names the file and says what is
wrong with it, so that a truncated download or a wrong file is found at once instead of as a shape error, a
silent short data set, or a model trained on garbage. Readers return numpy/torch arrays in the format's own
terms; the data modules (:mod:`lightning_gen.data.datamodules`) turn them into uint8 ``(N, C, H, W)`` images.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lightning_gen.files import atomic_write

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
AMAT_PIXELS = 784
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

_DOWNLOAD_AGAIN = "delete it and download again"


class BadDataFile(ValueError):
    """A data file exists but its content is not what its format requires (truncated, corrupt, wrong file)."""


# ---- raw bytes ---------------------------------------------------------------------------------------------------
def existing(path: Path) -> Path | None:
    """``path`` or ``path.gz``, whichever exists, preferring the unpacked file (no decompression); else None."""
    path = Path(path)
    gz = path.with_name(path.name + ".gz")
    for candidate in (path, gz):
        if candidate.is_file():
            return candidate
    return None


def read_bytes(path: Path) -> tuple[bytes, bool]:
    """The content of ``path``, gunzipped if it ends in ``.gz``, and whether the gzip stream was complete.

    A gzip stream that ends early is returned as far as it goes (complete=False) so that the caller can say how
    much is missing; a corrupt one (bad header, bad data, CRC mismatch) raises :class:`BadDataFile`.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw, True
    chunks, rest = [], raw
    try:
        while True:  # a gzip file may hold several members, concatenated
            inflater = zlib.decompressobj(wbits=31)  # 31: expect a gzip header and trailer, check the CRC
            chunks.append(inflater.decompress(rest))
            if not inflater.eof:
                return b"".join(chunks), False
            rest = inflater.unused_data.lstrip(b"\0")  # gzip allows zero padding after the last member
            if not rest:
                return b"".join(chunks), True
    except zlib.error as err:
        raise BadDataFile(f"{path} is not a valid gzip file or is corrupt ({err}); {_DOWNLOAD_AGAIN}") from err


# ---- IDX (MNIST, Fashion-MNIST) ----------------------------------------------------------------------------------
def read_idx(path: Path, magic: int, *, item_shape: tuple[int, ...] = ()) -> np.ndarray:
    """One IDX file of unsigned bytes (``.gz`` or unpacked) as a uint8 array of the shape its header gives.

    Checks the magic number (2051 for images, 2049 for labels), that the item dimensions after the count equal
    ``item_shape`` where given, and that the payload has exactly the size the header announces.
    """
    path = Path(path)
    data, complete = read_bytes(path)
    kind = {IDX_IMAGES_MAGIC: "pixels", IDX_LABELS_MAGIC: "labels"}.get(magic, "data")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise BadDataFile(f"{path} is truncated: {len(data)} bytes, shorter than its {header}-byte IDX header; "
                          f"{_DOWNLOAD_AGAIN}")
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        what = {IDX_IMAGES_MAGIC: "an IDX image file", IDX_LABELS_MAGIC: "an IDX label file"}.get(
            found_magic, "not an IDX file of bytes")
        raise BadDataFile(f"{path}: magic number {found_magic} ({what}), expected {magic}; is it the right file?")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if item_shape and dims[1:] != tuple(item_shape):
        raise BadDataFile(f"{path}: header says items of shape {dims[1:]}, expected {tuple(item_shape)}")
    expected = int(np.prod(dims))
    found = len(data) - header
    if found < expected:
        raise BadDataFile(f"{path} is truncated: expected {expected} bytes of {kind}, found {found}; {_DOWNLOAD_AGAIN}")
    if not complete:
        raise BadDataFile(f"{path} is truncated: its gzip stream ends early; {_DOWNLOAD_AGAIN}")
    if found > expected:
        raise BadDataFile(f"{path} has {found - expected} bytes after the {expected} bytes of {kind} its header "
                          f"announces; {_DOWNLOAD_AGAIN}")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims).copy()


def read_idx_pair(images_path: Path, labels_path: Path, *, image_size: tuple[int, int] = (28, 28),
                  num_classes: int = 10) -> tuple[Tensor, Tensor]:
    """An IDX image file and its label file -> uint8 images ``(N, 1, H, W)`` and int64 labels ``(N,)``."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC, item_shape=image_size)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise BadDataFile(f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                          f"{labels.shape[0]} labels; the two files do not belong together")
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise BadDataFile(f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is outside 0..{num_classes - 1}")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()  # (N, H, W) -> (N, 1, H, W)


# ---- .amat (Larochelle's binarized MNIST) ------------------------------------------------------------------------
def read_amat(path: Path, *, num_values: int = AMAT_PIXELS) -> Tensor:
    """A ``.amat`` file (plain or ``.gz``) of rows of ``num_values`` values 0/1, single spaces between, one row
    per line -> uint8 ``(N, num_values)`` in {0, 1}.

    The whole file is checked at once with numpy (every row is exactly ``2 * num_values`` bytes); only when that
    fails are the lines walked, to name the first bad one.
    """
    path = Path(path)
    data, complete = read_bytes(path)
    if not complete:
        raise BadDataFile(f"{path} is truncated: its gzip stream ends early; {_DOWNLOAD_AGAIN}")
    if data and not data.endswith(b"\n"):
        data += b"\n"  # a missing final newline is harmless
    row_bytes = 2 * num_values  # values at even offsets, a space after each but the last, then the newline
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise BadDataFile(f"{path} is empty; {_DOWNLOAD_AGAIN}")
    if buf.size % row_bytes == 0:
        rows = buf.reshape(-1, row_bytes)
        bits = rows[:, 0::2] - np.uint8(ord("0"))  # uint8 wraps below '0', so anything but '0'/'1' is > 1
        if (bits.max() <= 1 and (rows[:, 1:-1:2] == ord(" ")).all() and (rows[:, -1] == ord("\n")).all()):
            return torch.from_numpy(bits)
    raise BadDataFile(_first_bad_amat_line(path, data, num_values))


def _first_bad_amat_line(path: Path, data: bytes, num_values: int) -> str:
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        values = line.split(b" ")
        if len(values) != num_values:
            return (f"{path} line {number}: {len(values)} values, expected {num_values} values 0/1 separated by "
                    f"single spaces")
        for column, value in enumerate(values, start=1):
            if value not in (b"0", b"1"):
                return f"{path} line {number}, value {column}: {value.decode(errors='replace')!r} is not 0 or 1"
    return f"{path}: not a .amat file of {num_values} values 0/1 per line"  # unreachable for any real input


# ---- CIFAR-10 python batches -------------------------------------------------------------------------------------
try:  # numpy >= 2 moved the array internals to numpy._core; pickles name either module
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: any other global (a function, a class) is refused, so a
    tampered pickle cannot run code."""

    def find_class(self, module: str, name: str):
        try:
            return _ARRAY_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file") from None


def read_cifar_batch(path: Path, *, num_classes: int = 10) -> tuple[Tensor, Tensor]:
    """One CIFAR-10 python batch (``data_batch_1``, ``test_batch``, ...) -> uint8 ``(N, 3, 32, 32)``, int64 ``(N,)``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise BadDataFile(f"{path} is not a readable CIFAR-10 batch ({err}); {_DOWNLOAD_AGAIN}") from err
    if not isinstance(batch, dict):
        raise BadDataFile(f"{path} holds a {type(batch).__name__}, expected the dict of a CIFAR-10 batch")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise BadDataFile(f"{path} has keys {sorted(map(str, batch))}, expected 'data' and 'labels'")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        raise BadDataFile(f"{path}: data is {found}, expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise BadDataFile(f"{path}: {data.shape[0]} images but labels of shape {labels.shape} and dtype {labels.dtype}")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise BadDataFile(f"{path}: label {labels[bad[0]]} at index {bad[0]} is outside 0..{num_classes - 1}")
    # Each row is the red plane, then green, then blue, each 32x32 row-major: (N, 3072) -> (N, 3, 32, 32).
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels.astype(np.int64))


# ---- image folders -----------------------------------------------------------------------------------------------
def class_names(folder: Path) -> list[str]:
    """The classes of an image folder: its first-level subfolders (hidden ones excepted), sorted; [] if none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder``, recursively, by extension (case-insensitive), in sorted order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image -> uint8 ``(channels, size, size)``: shorter side resized to ``size``, then centre-cropped."""
    from PIL import Image

    mode = {1: "L", 3: "RGB"}[channels]
    with Image.open(path) as img:
        img.draft(mode, (size, size))  # JPEG: decode at a reduced scale that is still >= size; a large speed-up
        img = img.convert(mode)
        w, h = img.size
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((new_w, new_h), Image.BICUBIC, reducing_gap=3.0)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)


def _try_load(path: Path, size: int, channels: int) -> np.ndarray | None:
    from PIL import Image

    try:
        return load_image(path, size, channels)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # PIL's errors for bad files
        return None


def read_image_folder(folder: Path, *, size: int, channels: int = 3, cache_dir: Path | None = None,
                      max_threads: int | None = None) -> tuple[Tensor, Tensor, list[str]]:
    """All images under ``folder`` -> uint8 ``(N, channels, size, size)``, int64 labels ``(N,)``, class names.

    Labels are indices into the sorted first-level subfolder names; a folder without subfolders gives labels -1
    and no classes (image files lying directly in a folder that has class subfolders are ignored, with a
    warning). Unreadable files are skipped with a warning naming how many and the first few; if none can be read,
    :class:`BadDataFile` names the folder. With ``cache_dir`` the decoded images are kept in
    ``cache_dir/<key>.pt``, the key hashing the folder, ``size``, ``channels`` and every file's path, size and
    modification time, so any change to the folder decodes it again; a cache that cannot be written (read-only
    data root) is skipped.
    """
    folder = Path(folder).expanduser().resolve()
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    classes = class_names(folder)
    files = image_files(folder)
    if classes:
        loose = [p for p in files if p.parent == folder]
        if loose:
            warnings.warn(f"{len(loose)} image files lie directly in {folder}, which has class subfolders "
                          f"{classes[:5]}; they are ignored", stacklevel=2)
        files = [p for p in files if p.parent != folder]
    if not files:
        raise BadDataFile(f"{folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")

    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha256(f"v1|{folder}|{size}|{channels}".encode())
        for p in files:
            st = p.stat()
            key.update(f"|{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}".encode())
        cache_file = Path(cache_dir) / f"{key.hexdigest()[:32]}.pt"
        cached = _load_cache(cache_file)
        if cached is not None:
            _warn_unreadable(cached["unreadable"])
            return cached["images"], cached["labels"], cached["classes"]

    images = np.empty((len(files), channels, size, size), dtype=np.uint8)  # filled in place: no second copy

    def decode(i: int) -> bool:
        array = _try_load(files[i], size, channels)
        if array is not None:
            images[i] = array
        return array is not None

    with ThreadPoolExecutor(max_threads or min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        ok = np.fromiter(pool.map(decode, range(len(files))), dtype=bool, count=len(files))
    unreadable = [str(p) for p, good in zip(files, ok) if not good]
    if not ok.any():
        raise BadDataFile(f"none of the {len(files)} image files under {folder} could be read, e.g. {unreadable[0]}")
    _warn_unreadable(unreadable)
    index = {name: i for i, name in enumerate(classes)}
    labels = torch.tensor([index[p.relative_to(folder).parts[0]] if classes else -1 for p in files], dtype=torch.long)
    if not ok.all():
        images, labels = images[ok], labels[torch.from_numpy(ok)]
    images = torch.from_numpy(images)
    if cache_file is not None:
        _save_atomic({"images": images, "labels": labels, "classes": classes, "unreadable": unreadable}, cache_file)
    return images, labels, classes


def _warn_unreadable(unreadable: list[str]) -> None:
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (", ..." if len(unreadable) > 5 else "")
        warnings.warn(f"skipped {len(unreadable)} unreadable image files: {shown}", stacklevel=3)


def _save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename: readers never see half a file."""
    try:
        with atomic_write(path) as f:
            torch.save(obj, f)
    except OSError:  # a read-only data root, a full disk: the cache is an optimisation, not a requirement
        return


def _load_cache(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # a damaged cache file is decoded again and overwritten
        return None
