"""LightningDataModules: in-memory uint8 images with fixed seeded splits."""

from lightning_gen.data.base import DataFilesMissing, ImageDataModule, InMemoryImages, resolve_root
from lightning_gen.data.datamodules import CIFAR10, MNIST, BinarizedMNIST, FashionMNIST, ImageFolder
from lightning_gen.data.digits import Digits
from lightning_gen.data.readers import BadDataFile
from lightning_gen.data.toy import RingOfGaussians

__all__ = [
    "BadDataFile", "BinarizedMNIST", "CIFAR10", "DataFilesMissing", "Digits", "FashionMNIST", "ImageDataModule",
    "ImageFolder", "InMemoryImages", "MNIST", "RingOfGaussians", "resolve_root",
]
