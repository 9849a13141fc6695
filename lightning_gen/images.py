"""uint8 image grids: the one picture format shared by callbacks, scripts, the benchmark and the dashboard."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lightning_gen.files import atomic_write


def image_grid(images: Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 128) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` -> one uint8 ``(H', W', C)`` array (C is 1 or 3), ``nrow`` images per row.

    Refuses float input: W&B and PIL cast floats straight to uint8, which turns a [0, 1] grid black.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"image_grid takes uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = math.ceil(n / nrow)
    grid = torch.full((c, ncol * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, dtype=torch.uint8)
    for k in range(n):
        r, q = divmod(k, nrow)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top : top + h, left : left + w] = images[k].cpu()
    return grid.permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 ``(H, W, C)`` array as PNG atomically (a crash never leaves half a file), with the user's
    umask (:func:`lightning_gen.files.atomic_write`)."""
    from PIL import Image

    path = Path(path)
    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    with atomic_write(path) as f:
        img.save(f, format="PNG")
    return path
