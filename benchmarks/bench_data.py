"""Images per second of a full MNIST training epoch: lightning_gen's MNIST data module vs torchvision's MNIST.

Both read the same real files under the data root (``--root``, else ``$LIGHTNING_GEN_DATA``). torchvision's reader
wants the IDX files unpacked, so they are gunzipped into a temporary folder (the data root is never written to).
The last line printed is ``speedup=<x>``.

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
from tqdm import tqdm

from lightning_gen.data import MNIST
from lightning_gen.data.readers import existing, read_bytes

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def images_per_second(loader, desc: str) -> float:
    count, start = 0, time.perf_counter()
    for x, _ in tqdm(loader, desc=desc, unit="batch", mininterval=0.5):
        count += x.shape[0]
    return count / (time.perf_counter() - start)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None, help="data root (default $LIGHTNING_GEN_DATA)")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the same single thread for both; the machine may be shared

    dm = MNIST(root=args.root, batch_size=args.batch_size, download=False)
    start = time.perf_counter()
    dm.setup()
    print(f"lightning_gen MNIST: read and split {sum(map(len, dm.datasets.values()))} images in "
          f"{time.perf_counter() - start:.2f} s (once per run)")
    ours = images_per_second(dm.train_dataloader(), "lightning_gen MNIST")

    import torchvision
    from torchvision.transforms import ToTensor

    with tempfile.TemporaryDirectory() as tmp:
        unpack_mnist(dm.root, Path(tmp))
        dataset = torchvision.datasets.MNIST(tmp, train=True, download=False, transform=ToTensor())
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=0)
        theirs = images_per_second(loader, "torchvision MNIST")

    print(f"lightning_gen MNIST: {ours:,.0f} images/s (uint8 batches, full epoch of {len(dm.datasets['train'])})")
    print(f"torchvision MNIST + ToTensor: {theirs:,.0f} images/s (float batches, full epoch of {len(dataset)})")
    print(f"speedup={ours / theirs:.1f}")


if __name__ == "__main__":
    main()
