"""The small digit classifiers whose features stand in for Inception on grey digits (``mnist-lenet``, ``digits-lenet``).

Inception-v3 features of 28x28 grey digits upsampled to 299x299 RGB say little about digit quality, and the
network needs weights that offline machines do not have. A LeNet-style CNN [1] trained here on the same data is
the domain-specific alternative (as in the "FID with an MNIST classifier" variants used by many GAN papers): its
penultimate layer (128-d, after ReLU) gives the features for FID/KID and its 10-way logits give an "Inception
Score" over digit classes (at most 10).

The weights ship in ``lightning_gen/metrics/weights/`` as plain state dicts; ``scripts/train_classifier.py``
rebuilds them (seeded, a few minutes on two CPU cores), and ``weights/manifest.json`` records their sha256, test
accuracy and the command. Retraining changes the sha256 and so every cached reference statistic keyed on it.

[1] LeCun et al. 1998, "Gradient-based learning applied to document recognition". Differences: ReLU, batch norm and
max pooling instead of tanh and subsampling, 32/64 channels, dropout before the classifier.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ClassifierSpec:
    """What a packaged classifier is: its input size, architecture and weights file."""

    dataset: str
    input_size: int
    kernel_size: int
    weights_file: str
    feature_dim: int = 128
    num_classes: int = 10

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / self.weights_file

    def build(self) -> "LeNet":
        return LeNet(self.input_size, kernel_size=self.kernel_size, feature_dim=self.feature_dim,
                     num_classes=self.num_classes)


SPECS = {
    "mnist": ClassifierSpec("mnist", input_size=28, kernel_size=5, weights_file="mnist_lenet.pt"),
    "digits": ClassifierSpec("digits", input_size=8, kernel_size=3, weights_file="digits_lenet.pt"),
}


class LeNet(nn.Module):
    """Two conv-BN-ReLU-maxpool blocks, a ``feature_dim`` ReLU layer (the features), a linear classifier.

    Takes uint8 ``(N, 1, S, S)`` images, so training and feature extraction scale pixels the same way. Batch norm
    makes a few epochs enough; in eval mode it is a fixed affine map, so features do not depend on the batch.
    """

    def __init__(self, input_size: int, *, kernel_size: int = 5, feature_dim: int = 128, num_classes: int = 10,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if input_size % 4:
            raise ValueError(f"input_size must be a multiple of 4 (two 2x2 poolings), got {input_size}")
        pad = kernel_size // 2
        self.input_size = input_size
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size, padding=pad, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size, padding=pad, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(64 * (input_size // 4) ** 2, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 images ``(N, 1, S, S)`` -> (features ``(N, feature_dim)``, logits ``(N, num_classes)``)."""
        h = self.conv(x.float() / 255.0)
        features = F.relu(self.fc(h.flatten(1)))  # (N, 64, S/4, S/4) -> (N, 64 * S * S / 16) -> (N, 128)
        return features, self.head(self.dropout(features))


# ---- training --------------------------------------------------------------------------------------------------
@torch.no_grad()
def accuracy(model: LeNet, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, images.shape[0], batch_size):
        _, logits = model(images[i : i + batch_size])
        correct += int((logits.argmax(1) == labels[i : i + batch_size]).sum())
    return correct / images.shape[0]


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each uint8 image by up to ``max_shift`` pixels (zero fill): cheap augmentation for digits."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (N, 1, W)
    shifted = padded[:, 0][torch.arange(n)[:, None, None], rows, cols]  # (N, H, W)
    return shifted.unsqueeze(1)


def train_classifier(dataset: str, splits: dict[str, tuple[Tensor, Tensor]], *, epochs: int = 3,
                     batch_size: int = 128, lr: float = 1e-3, max_shift: int = 0, seed: int = 0,
                     log=print) -> tuple[LeNet, dict]:
    """Train the ``dataset`` classifier with Adam and a cosine learning-rate decay on ``splits`` (``{"train",
    "val", "test"}: (uint8 images, int64 labels)``, the data module's splits); returns it and its scores.

    Seeded: the same arguments give the same weights on the same machine and thread count.
    """
    spec = SPECS.get(dataset)
    if spec is None:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(SPECS)}")
    x_train, y_train = splits["train"]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = spec.build()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(x_train.shape[0] / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(x_train.shape[0], generator=generator)
        total = 0.0
        for i in range(0, x_train.shape[0], batch_size):
            idx = perm[i : i + batch_size]
            x = random_shift(x_train[idx], max_shift, generator)
            _, logits = model(x)
            loss = F.cross_entropy(logits, y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * idx.numel()
        val_acc = accuracy(model, *splits["val"])
        log(f"epoch {epoch + 1}/{epochs}: train loss {total / x_train.shape[0]:.4f}, val accuracy {val_acc:.4f} "
            f"({time.perf_counter() - start:.0f} s)")
    scores = {split: accuracy(model, *splits[split]) for split in ("train", "val", "test")}
    scores["seconds"] = round(time.perf_counter() - start, 1)
    return model.eval(), scores


def save_weights(model: LeNet, dataset: str, path: str | Path | None = None, *, record: dict | None = None) -> Path:
    """Save the plain state dict (loadable with ``weights_only=True``) and record it in ``manifest.json``."""
    path = Path(path) if path is not None else SPECS[dataset].weights_path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)
    if record is not None:
        manifest_path = path.parent / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        manifest[path.name] = {
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "bytes": path.stat().st_size,
            **record,
        }
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


# ---- the KID feature scale -------------------------------------------------------------------------------------
#: Manifest field of a weights file: the RMS of its feature entries on its training split (see below).
KID_SCALE_KEY = "kid_feature_scale"


@torch.no_grad()
def feature_rms(model: LeNet, images: Tensor, batch_size: int = 1000) -> float:
    """``sqrt(mean_x |f(x)|^2 / D)``, the root mean square of the feature entries over ``images``.

    KID's kernel ``(x.y/D + 1)^3`` was designed for Inception pool3 features, whose entries are O(1); dividing a
    classifier's features by this makes ``x.y/D`` O(1) too (about 1 for a vector with itself)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, images.shape[0], batch_size):
        features, _ = model(images[i : i + batch_size])
        total += float(features.double().square().sum())
        count += features.shape[0] * features.shape[1]
    return math.sqrt(total / count)


def record_kid_feature_scale(dataset: str, train_images: Tensor, path: str | Path | None = None) -> float:
    """Measure :func:`feature_rms` of the packaged ``dataset`` classifier on its training images and store it in
    ``manifest.json`` under its weights file (with the split it was measured on); returns it."""
    path = Path(path) if path is not None else SPECS[dataset].weights_path
    model = SPECS[dataset].build()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    scale = feature_rms(model, train_images)
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    entry = manifest.setdefault(path.name, {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    entry[KID_SCALE_KEY] = round(scale, 6)
    entry[f"{KID_SCALE_KEY}_images"] = f"train split, {train_images.shape[0]} images"
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return scale


def kid_feature_scale_of(path: str | Path, sha256: str) -> float | None:
    """The KID feature scale the manifest beside ``path`` records for exactly this file (its ``sha256``), else
    ``None``."""
    path = Path(path)
    manifest_path = path.parent / "manifest.json"
    try:
        entry = json.loads(manifest_path.read_text()).get(path.name, {})
    except (OSError, ValueError):
        return None
    scale = entry.get(KID_SCALE_KEY)
    return float(scale) if entry.get("sha256") == sha256 and isinstance(scale, (int, float)) and scale > 0 else None
