"""Train the digit classifier behind the ``mnist-lenet`` / ``digits-lenet`` feature extractors and save its weights.

    python scripts/train_classifier.py --dataset mnist --data-root /work/shared/data
    python scripts/train_classifier.py --dataset digits --epochs 60 --batch-size 64 --max-shift 1
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from lightning_gen.data import MNIST, Digits
from lightning_gen.metrics.classifier import SPECS, record_kid_feature_scale, save_weights, train_classifier

#: The data module each classifier learns from (its splits are the ones the benchmark scores against).
DATA = {"digits": Digits, "mnist": MNIST}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(SPECS), required=True)
    parser.add_argument("--data-root", default=None, help="data root (default $LIGHTNING_GEN_DATA)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-shift", type=int, default=0, help="random translation augmentation, in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="weights file (default: the packaged weights file)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = DATA[args.dataset](args.data_root)
    data.prepare_data()  # downloads only missing files; offline, a quick error that says where to get them
    splits = data.splits()
    model, scores = train_classifier(args.dataset, splits, epochs=args.epochs,
                                     batch_size=args.batch_size, lr=args.lr, max_shift=args.max_shift,
                                     seed=args.seed)
    print(" ".join(f"{k} accuracy {v:.4f}" for k, v in scores.items() if k != "seconds"), f"({scores['seconds']} s)")
    command = "python scripts/train_classifier.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    path = save_weights(model, args.dataset, args.out, record={
        "accuracy": {k: round(v, 4) for k, v in scores.items() if k != "seconds"},
        "command": command, "torch": torch.__version__, "train_seconds": scores["seconds"],
    } if args.out is None else None)
    # KID's kernel assumes unit-scale features: the scale belongs to these exact weights (keyed by their sha256).
    scale = record_kid_feature_scale(args.dataset, splits["train"][0], path)
    print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB), KID feature scale {scale:.4f}")


if __name__ == "__main__":
    main()
