"""Feature extractors for FID / IS / KID, by name: ``get_extractor("inception")``, ``get_extractor("mnist-lenet")``.

Every extractor is an ``nn.Module`` that takes uint8 images ``(N, C, H, W)`` in 0..255 (the project's one image
currency) and returns :class:`Extracted` ``(features, logits)``: float32 features ``(N, D)`` and, where the
network has a classifier head, float32 logits ``(N, K)`` for the Inception Score (``None`` otherwise). Each
carries what a cached statistic depends on: ``name``, ``feature_layer``, ``input_size`` and the sha256 of its
weights file (``weights_sha256``).

- ``inception``: the 2015-12-05 TensorFlow Inception-v3 [1] as ported by pytorch-fid / torch-fidelity
  (``FeatureExtractorInceptionV3``): pool3 features (2048-d), unbiased logits (1008 classes, torch-fidelity's
  IS layer), TF1-compatible bilinear resize to 299x299 inside the network; grey images are repeated to RGB.
  Only with these exact weights are FID/IS comparable with published numbers.
- ``mnist-lenet`` / ``digits-lenet``: the project's small digit classifiers
  (:mod:`lightning_gen.metrics.classifier`), 128-d penultimate features and 10-way logits, weights shipped in
  the package. Their scores are comparable only with scores computed with the same weights file.

[1] arXiv 1512.00567 (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision").
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lightning_gen.files import online
from lightning_gen.metrics.classifier import SPECS, kid_feature_scale_of

INCEPTION_WEIGHTS_ENV = "LIGHTNING_GEN_FID_WEIGHTS"
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"
#: torch.hub convention: the file name carries the first hex digits of the file's sha256.
INCEPTION_SHA256_PREFIX = "6726825d"


class ExtractorWeightsMissing(FileNotFoundError):
    """The weights of a feature extractor are not on this machine and cannot be downloaded."""


class Extracted(NamedTuple):
    features: Tensor  # (N, D) float32
    logits: Tensor | None  # (N, K) float32, or None for an extractor without a classifier head


class FeatureExtractor(nn.Module):
    """Base class: a frozen network from uint8 images to features (and logits).

    Subclasses set the attributes below and implement :meth:`extract` for images that passed
    :meth:`check_images`. The module stays in eval mode whatever ``.train()`` a parent module calls, so that
    dropout and batch-norm statistics never change the features.
    """

    name: str = ""
    #: The layer the features come from, in the network's own terms ("2048" = Inception pool3).
    feature_layer: str = ""
    #: The side of the square input the network sees.
    input_size: int = 0
    #: Whether images of any size are resized to ``input_size`` (else they must already have that size).
    resizes: bool = False
    #: Channel counts accepted (grey is repeated to RGB where the network wants RGB).
    channels: tuple[int, ...] = (1,)
    weights_sha256: str = ""
    #: Length of the feature vectors: FID needs more samples than this (a smaller set has a singular covariance).
    feature_dim: int = 0
    #: KID divides the features by this before the cubic kernel ``(x.y/D + 1)^3``, so that ``x.y/D`` is O(1) as for
    #: Inception, for which the kernel was designed; ``None``: raw features (Inception, keeping published KIDs
    #: comparable). See :func:`~lightning_gen.metrics.functional.kid_kernel`.
    kid_feature_scale: float | None = None

    def train(self, mode: bool = True) -> "FeatureExtractor":
        return super().train(False)

    @property
    def expected_shape(self) -> str:
        c = self.channels[0] if len(self.channels) == 1 else " or ".join(map(str, self.channels))
        size = "H, W" if self.resizes else f"{self.input_size}, {self.input_size}"
        return f"(N, {c}, {size})"

    def check_images(self, images: Tensor) -> Tensor:
        """Reject anything but uint8 ``(N, C, H, W)`` images this network accepts, saying what was expected."""
        if not isinstance(images, Tensor):
            raise TypeError(f"expected a torch.Tensor of uint8 images {self.expected_shape}, "
                            f"got {type(images).__name__}")
        if images.dtype != torch.uint8:
            hint = " (floats in [0, 1]?)" if images.is_floating_point() else ""
            raise TypeError(
                f"{self.name} expects uint8 images in 0..255, got dtype {images.dtype}{hint}; convert first, e.g. "
                "(x * 255).round().clamp(0, 255).to(torch.uint8)"
            )
        if (images.dim() != 4 or images.shape[1] not in self.channels
                or (not self.resizes and tuple(images.shape[2:]) != (self.input_size, self.input_size))):
            raise ValueError(f"{self.name} expects images of shape {self.expected_shape}, got {tuple(images.shape)}")
        return images

    def extract(self, images: Tensor) -> Extracted:
        raise NotImplementedError

    def forward(self, images: Tensor) -> Extracted:
        return self.extract(self.check_images(images))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_layer={self.feature_layer!r}, weights_sha256={self.weights_sha256[:12]}"


# ---- registry ----------------------------------------------------------------------------------------------------
_REGISTRY: dict[str, Callable[..., FeatureExtractor]] = {}


def register_extractor(name: str):
    """Class (or factory) decorator: make an extractor available as ``get_extractor(name, **kwargs)``."""

    def decorator(factory):
        if name in _REGISTRY:
            raise ValueError(f"extractor {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_extractors() -> list[str]:
    return sorted(_REGISTRY)


def get_extractor(name: str, **kwargs) -> FeatureExtractor:
    """Build the extractor registered as ``name`` (``kwargs`` go to its constructor)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown extractor {name!r}; expected one of {', '.join(available_extractors())}")
    return _REGISTRY[name](**kwargs)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- Inception-v3 ------------------------------------------------------------------------------------------------
def _missing_inception_weights(reason: str) -> ExtractorWeightsMissing:
    return ExtractorWeightsMissing(
        f"Inception-v3 weights for FID/IS/KID: {reason}.\n"
        f"Get the file {INCEPTION_WEIGHTS_FILE} from\n  {INCEPTION_WEIGHTS_URL}\n"
        f"on a machine with internet access, copy it here, and pass its path with --fid-weights PATH "
        f"(weights_path=...) or the environment variable {INCEPTION_WEIGHTS_ENV}=PATH.\n"
        f"(For grey digits without Inception, the 'mnist-lenet' / 'digits-lenet' extractors need no download.)"
    )


def resolve_inception_weights(weights_path: str | os.PathLike | None = None) -> Path:
    """Where the Inception weights are: ``weights_path``, else ``$LIGHTNING_GEN_FID_WEIGHTS``, else the torch hub
    cache, downloading them there if this machine is online. Offline without weights: an error within seconds."""
    env = os.environ.get(INCEPTION_WEIGHTS_ENV)
    for given, source in ((weights_path, "weights_path"), (env, INCEPTION_WEIGHTS_ENV)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise _missing_inception_weights(f"{source} points to {path}, which does not exist")
            return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    if cached.is_file():
        return cached
    # torch.hub would hang for minutes on a compute node without internet; a 3 s connect says so at once.
    if not online("github.com", 443, timeout=3.0):
        raise _missing_inception_weights(f"not found at {cached} and github.com cannot be reached from this machine")
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(cached), hash_prefix=INCEPTION_SHA256_PREFIX)
    return cached


@register_extractor("inception")
class InceptionV3(FeatureExtractor):
    """torch-fidelity's Inception-v3 (the 2015-12-05 TF graph): pool3 features and unbiased logits.

    Args:
        weights_path: the ``.pth`` state dict (default: ``$LIGHTNING_GEN_FID_WEIGHTS``, else torch hub's cache,
            downloading when online).
        feature_layer: "2048" (pool3, the FID/KID standard), or "768", "192", "64" for lower layers.
    """

    name = "inception"
    input_size = 299
    resizes = True
    channels = (1, 3)
    FEATURE_LAYERS = ("64", "192", "768", "2048")

    def __init__(self, weights_path: str | os.PathLike | None = None, *, feature_layer: str = "2048") -> None:
        super().__init__()
        if feature_layer not in self.FEATURE_LAYERS:
            raise ValueError(f"unknown feature_layer {feature_layer!r}; "
                             f"expected one of {', '.join(self.FEATURE_LAYERS)}")
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = resolve_inception_weights(weights_path)
        # torch-fidelity unpickles the file with weights_only=False; refuse anything that is not plain tensors first.
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path} is not a plain state dict of Inception weights ({err})") from err
        self.weights_sha256 = file_sha256(path)
        if not self.weights_sha256.startswith(INCEPTION_SHA256_PREFIX):
            warnings.warn(
                f"{path} (sha256 {self.weights_sha256[:12]}...) is not {INCEPTION_WEIGHTS_FILE}: its FID/IS are not "
                "comparable with published values", stacklevel=2,
            )
        self.feature_layer = feature_layer
        self.feature_dim = int(feature_layer)
        self.with_logits = feature_layer == "2048"  # torch-fidelity stops at the requested layer otherwise
        layers = [feature_layer, "logits_unbiased"] if self.with_logits else [feature_layer]
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", layers, feature_extractor_weights_path=str(path))

    def extract(self, images: Tensor) -> Extracted:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)  # grey -> RGB, as torch-fidelity does for 1-channel input
        out = self.net(images)
        return Extracted(out[0], out[1] if self.with_logits else None)


# ---- the project's digit classifiers ---------------------------------------------------------------------------
class LeNetFeatures(FeatureExtractor):
    """A packaged :class:`~lightning_gen.metrics.classifier.LeNet`: 128-d penultimate features, 10-way logits."""

    feature_layer = "fc"
    channels = (1,)

    def __init__(self, dataset: str, weights_path: str | os.PathLike | None = None) -> None:
        super().__init__()
        spec = SPECS[dataset]
        path = Path(weights_path) if weights_path is not None else spec.weights_path
        if not path.is_file():
            raise ExtractorWeightsMissing(
                f"{dataset} classifier weights {path} not found; train them with "
                f"`python scripts/train_classifier.py --dataset {dataset}`"
            )
        self.name = f"{dataset}-lenet"
        self.input_size = spec.input_size
        self.feature_dim = spec.feature_dim
        self.net = spec.build()
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.weights_sha256 = file_sha256(path)
        # The scale is measured once per weights file on its training split and kept in the manifest beside its
        # sha256; other weights (a retrained file not yet measured) fall back to the raw features, and the
        # record's protocol.kid_kernel says which it was.
        self.kid_feature_scale = kid_feature_scale_of(path, self.weights_sha256)
        self.requires_grad_(False)
        self.eval()

    def extract(self, images: Tensor) -> Extracted:
        return Extracted(*self.net(images))


@register_extractor("mnist-lenet")
def mnist_lenet(weights_path: str | os.PathLike | None = None) -> LeNetFeatures:
    """The MNIST classifier (28x28 grey)."""
    return LeNetFeatures("mnist", weights_path)


@register_extractor("digits-lenet")
def digits_lenet(weights_path: str | os.PathLike | None = None) -> LeNetFeatures:
    """The scikit-learn digits classifier (8x8 grey)."""
    return LeNetFeatures("digits", weights_path)
