"""Images per second of full training epochs: the resumable training loader against the plain in-memory loader it
replaced (a shuffling DataLoader over the same tensors), and optionally against torchvision's MNIST.

The two loaders run alternately in one process, ``--repeats`` epochs each, on MNIST (8-bit), MNIST with dynamic
binarization (drawn in the loader against drawn in the dataset) and the 8x8 digits (where per-batch overhead shows
most). Both read the same real files under the data root (``--root``, else ``$LIGHTNING_GEN_DATA``); the data root is
never written to. The last line printed is ``key=value`` ratios, resumable / plain images per second of each
loader's fastest epoch (the least disturbed on a shared machine): ``mnist=... mnist_dynamic=... digits=... min=...``.

    LIGHTNING_GEN_DATA=/work/shared/data python benchmarks/bench_data.py
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lightning_gen.data import MNIST, BinarizedMNIST, Digits
from lightning_gen.data.base import InMemoryImages
from lightning_gen.data.readers import existing, read_bytes

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def images_per_second(loader) -> float:
    count, start = 0, time.perf_counter()
    for x, _ in loader:
        count += x.shape[0]
    return count / (time.perf_counter() - start)


def plain_loader(dm) -> DataLoader:
    """The training loader before resumable loading: shuffled by a RandomSampler from the global RNG, the training
    transform (dynamic binarization) applied in the dataset."""
    train = dm.datasets["train"]
    dataset = InMemoryImages(train.images, train.labels, dm.train_transform())
    return DataLoader(dataset, batch_size=dm.batch_size, shuffle=True, collate_fn=lambda batch: batch)


def alternated_ratio(dm, repeats: int) -> tuple[float, float, float]:
    """Resumable / plain images per second of each loader's fastest of ``repeats`` epochs, run in alternated pairs
    (the order swapped every pair), and those two speeds."""
    dm.setup()
    resumable, plain = dm.train_dataloader(), plain_loader(dm)
    images_per_second(resumable), images_per_second(plain)  # warm-up
    ours, theirs = [], []
    for r in range(repeats):
        pair = (resumable, plain) if r % 2 == 0 else (plain, resumable)
        speeds = {id(loader): images_per_second(loader) for loader in pair}
        ours.append(speeds[id(resumable)])
        theirs.append(speeds[id(plain)])
    return max(ours) / max(theirs), max(ours), max(theirs)


def unpack_mnist(src: Path, dst: Path) -> None:
    """``src/MNIST/raw/*[.gz]`` -> unpacked copies in ``dst/MNIST/raw/``, where torchvision looks for them."""
    raw = dst / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_NAMES:
        path = existing(src / "MNIST" / "raw" / name)
        if path is None:
            raise SystemExit(f"{src / 'MNIST' / 'raw' / name}[.gz] not found; set --root or LIGHTNING_GEN_DATA")
        if path.suffix == ".gz":
            (raw / name).write_bytes(read_bytes(path)[0])
        else:
            shutil.copyfile(path, raw / name)


def torchvision_images_per_second(root: Path, batch_size: int) -> float:
    import torchvision
    from torchvision.transforms import ToTensor

    with tempfile.TemporaryDirectory() as tmp:
        unpack_mnist(root, Path(tmp))
        dataset = torchvision.datasets.MNIST(tmp, train=True, download=False, transform=ToTensor())
        return images_per_second(DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None, help="data root (default $LIGHTNING_GEN_DATA)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10, help="alternated epoch pairs per data set")
    parser.add_argument("--torchvision", action="store_true", help="also time torchvision's MNIST + ToTensor")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same single thread for both; the machine may be shared
    torch.manual_seed(0)

    cases = {"mnist": MNIST(root=args.root, batch_size=args.batch_size, download=False),
             "mnist_dynamic": BinarizedMNIST(root=args.root, batch_size=args.batch_size, binarization="dynamic",
                                             download=False),
             "digits": Digits(batch_size=args.batch_size)}
    ratios = {}
    for name, dm in cases.items():
        ratio, ours, theirs = alternated_ratio(dm, args.repeats)
        ratios[name] = ratio
        print(f"{name}: resumable {ours:,.0f} images/s, plain {theirs:,.0f} images/s, ratio {ratio:.3f} "
              f"(fastest of {args.repeats} alternated epochs of {len(dm.datasets['train'])} images each)")
    if args.torchvision:
        theirs = torchvision_images_per_second(cases["mnist"].root, args.batch_size)
        print(f"torchvision MNIST + ToTensor: {theirs:,.0f} images/s (float batches)")
    print(" ".join(f"{name}={ratio:.3f}" for name, ratio in ratios.items()) + f" min={min(ratios.values()):.3f}")


if __name__ == "__main__":
    main()
