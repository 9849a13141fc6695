"""LightningDataModules: in-memory uint8 images with fixed seeded splits."""

from lightning_gen.data.base import DataFilesMissing, ImageDataModule, InMemoryImages, resolve_root
from lightning_gen.data.digits import Digits

__all__ = ["DataFilesMissing", "Digits", "ImageDataModule", "InMemoryImages", "resolve_root"]
