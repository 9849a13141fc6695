"""scikit-learn's bundled handwritten digits: the embedded default data set, no download needed."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from lightning_gen.data.base import ImageDataModule, held_out_suffix


class Digits(ImageDataModule):
    """The 1,797 8x8 digits of scikit-learn (UCI optical recognition of handwritten digits), 10 classes.

    Served at their native size, ``(1, 8, 8)``. The originals have 17 grey levels, counts 0..16 of "on" pixels in
    a 4x4 block; level ``v`` becomes the 8-bit value ``(255 * v + 8) // 16`` (0, 16, 32, ..., 239, 255), so
    0 -> 0 and 16 -> 255 and the 17 levels stay distinct. With ``binarize=True`` a pixel is 255 where ``v >= 8``
    and 0 elsewhere (``num_levels=2``).

    There is no official split: ``test_size`` and ``val_size`` images are held out by a fixed permutation drawn
    with ``split_seed`` (defaults 300 and 200, leaving 1,297 for training).
    """

    image_shape = (1, 8, 8)
    num_classes = 10
    # Inception would see 8x8 images blown up 37 times; a classifier trained on these digits sees them as they are.
    default_extractor: ClassVar[str] = "digits-lenet"

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        *,
        binarize: bool = False,
        test_size: int = 300,
        val_size: int = 200,
        num_workers: int = 0,
        pin_memory: bool = False,
        split_seed: int = 0,
    ) -> None:
        super().__init__(root, batch_size, num_workers=num_workers, pin_memory=pin_memory, val_size=val_size,
                         split_seed=split_seed)
        self.binarize = binarize
        self.test_size = test_size
        self.num_levels = 2 if binarize else 256

    @property
    def dataset_id(self) -> str:
        """``digits-8bit`` or ``digits-binary``, plus the held-out split where it is not the default 300 images of
        ``split_seed`` 0 (``val_size`` only moves training images into validation)."""
        levels = "binary" if self.binarize else "8bit"
        return f"digits-{levels}" + held_out_suffix(self.test_size, self.split_seed, (300, 0))

    def _all(self) -> tuple[Tensor, Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        v = torch.as_tensor(digits.images, dtype=torch.long)  # (1797, 8, 8), values 0..16
        x = (v >= 8).long() * 255 if self.binarize else (255 * v + 8) // 16
        return x.to(torch.uint8).unsqueeze(1), torch.as_tensor(digits.target, dtype=torch.long)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        x, y = self._all()
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.split_seed + 1))
        test_idx, train_idx = perm[: self.test_size].sort().values, perm[self.test_size :].sort().values
        idx = test_idx if split == "test" else train_idx
        return x[idx], y[idx]
