"""Published results the leaderboard shows next to our own runs, marked "published".

Copied from ``REFERENCE.md`` (the project's table of facts from papers and public benchmark tables), one row per
number, each with the evaluation protocol and the source it came from: a number is only comparable under the
same protocol, so the board prints the protocol beside it. Dataset names and metric keys are the ones benchmark
records use (``"BinarizedMNIST"``, ``"CIFAR10"``; ``nll_nats``, ``nll_bpd``, ``fid``, ``is_mean``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PUBLISHED", "Reference", "published_entries"]


@dataclass(frozen=True)
class Reference:
    """One published number."""

    model: str
    family: str
    dataset: str
    metric: str
    value: float
    protocol: str
    source: str
    note: str | None = None


_PIXELRNN = "van den Oord et al. 2016, arXiv 1601.06759"
_IWAE = "Burda et al. 2015 (IWAE)"
_STUDIOGAN = "PyTorch-StudioGAN benchmark"
_MIMICRY = "mimicry"

_BMNIST = "BinarizedMNIST"
_CIFAR = "CIFAR10"

PUBLISHED: tuple[Reference, ...] = (
    # Binarized MNIST, test NLL in nats per image (784 binary pixels).
    Reference("PixelRNN (Diagonal BiLSTM, 7 layers, h=16)", "autoregressive", _BMNIST, "nll_nats", 79.20,
              "exact NLL, test set", f"{_PIXELRNN}, Table 4"),
    Reference("PixelRNN (Row LSTM)", "autoregressive", _BMNIST, "nll_nats", 80.54,
              "exact NLL, test set", _PIXELRNN, note="not re-checked"),
    Reference("PixelCNN", "autoregressive", _BMNIST, "nll_nats", 81.30,
              "exact NLL, test set", _PIXELRNN),
    Reference("Gated PixelCNN", "autoregressive", _BMNIST, "nll_nats", 81.50,
              "exact NLL, dynamic binarization", "pytorch-generative README"),
    Reference("VAE (1 stochastic layer)", "latent", _BMNIST, "nll_nats", 86.76,
              "importance-weighted k=5000, dynamic binarization", f"{_IWAE}, Table 1"),
    Reference("IWAE k=50 (1 stochastic layer)", "latent", _BMNIST, "nll_nats", 84.78,
              "importance-weighted k=5000, dynamic binarization", f"{_IWAE}, Table 1"),
    Reference("VAE (1 layer, k=1 training)", "latent", _BMNIST, "nll_nats", 88.71,
              "static binarization", f"{_IWAE}, Appendix D"),
    Reference("IWAE (1 layer, k=5 training)", "latent", _BMNIST, "nll_nats", 87.63,
              "static binarization", f"{_IWAE}, Appendix D"),
    Reference("IWAE (1 layer, k=50 training)", "latent", _BMNIST, "nll_nats", 87.10,
              "static binarization", f"{_IWAE}, Appendix D"),
    # CIFAR-10, test bits per dimension (8-bit RGB, 3072 dims).
    Reference("PixelCNN", "autoregressive", _CIFAR, "nll_bpd", 3.14, "exact NLL, test set",
              f"{_PIXELRNN}, Table 5"),
    Reference("PixelRNN (Row LSTM)", "autoregressive", _CIFAR, "nll_bpd", 3.07, "exact NLL, test set",
              f"{_PIXELRNN}, Table 5"),
    Reference("PixelRNN (Diagonal BiLSTM)", "autoregressive", _CIFAR, "nll_bpd", 3.00, "exact NLL, test set",
              f"{_PIXELRNN}, Table 5"),
    Reference("Gated PixelCNN", "autoregressive", _CIFAR, "nll_bpd", 3.03, "exact NLL, test set",
              "van den Oord et al. 2016b, arXiv 1606.05328"),
    Reference("PixelCNN++", "autoregressive", _CIFAR, "nll_bpd", 2.92, "exact NLL, test set",
              "Salimans et al. 2017", note="about 5 days on 8 GPUs"),
    # CIFAR-10 sample quality, Inception-v3 features.
    Reference("DCGAN", "gan", _CIFAR, "is_mean", 6.16, "Inception-v3 IS",
              "WGAN-GP paper (Gulrajani et al. 2017), Table 3"),
    Reference("WGAN-GP (ResNet)", "gan", _CIFAR, "is_mean", 7.86, "Inception-v3 IS",
              "WGAN-GP paper (Gulrajani et al. 2017), Table 3"),
    Reference("DCGAN", "gan", _CIFAR, "is_mean", 6.11, "Inception-v3, 50k samples vs train", _STUDIOGAN),
    Reference("DCGAN", "gan", _CIFAR, "fid", 48.29, "Inception-v3, 50k samples vs train", _STUDIOGAN),
    Reference("WGAN-GP", "gan", _CIFAR, "is_mean", 5.22, "Inception-v3, 50k samples vs train", _STUDIOGAN),
    Reference("WGAN-GP", "gan", _CIFAR, "fid", 53.98, "Inception-v3, 50k samples vs train", _STUDIOGAN),
    Reference("WGAN (weight clipping)", "gan", _CIFAR, "is_mean", 3.59, "Inception-v3, 50k samples vs train",
              _STUDIOGAN),
    Reference("WGAN (weight clipping)", "gan", _CIFAR, "fid", 107.68, "Inception-v3, 50k samples vs train",
              _STUDIOGAN),
    Reference("DCGAN", "gan", _CIFAR, "fid", 28.95, "Inception-v3, 10k vs 10k", _MIMICRY,
              note="paper reports 28.12"),
    Reference("WGAN-GP", "gan", _CIFAR, "fid", 26.08, "Inception-v3, 50k vs 50k", _MIMICRY,
              note="paper reports 29.3"),
    Reference("CIFAR-10 training images (real data)", "baseline", _CIFAR, "is_mean", 11.24,
              "Inception-v3 IS of the training set", "torch-fidelity README"),
)


def published_entries(dataset: str | None = None) -> list[dict[str, Any]]:
    """The published numbers grouped into board rows: one row per model, source and protocol.

    StudioGAN's DCGAN, for example, becomes one row with both its IS and its FID. Each row is a dict with
    ``model, family, dataset, metrics, protocol, source, note``.
    """
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for ref in PUBLISHED:
        if dataset is not None and ref.dataset != dataset:
            continue
        key = (ref.dataset, ref.model, ref.source, ref.protocol)
        row = rows.setdefault(key, {"model": ref.model, "family": ref.family, "dataset": ref.dataset,
                                    "metrics": {}, "protocol": ref.protocol, "source": ref.source, "note": None})
        row["metrics"][ref.metric] = ref.value
        if ref.note:
            row["note"] = ref.note if row["note"] is None else f"{row['note']}; {ref.note}"
    return list(rows.values())
