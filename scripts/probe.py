"""Linear-probe accuracy of a checkpointed model's representation (``encode(x)``, else ``features(x)``): a logistic
regression fitted on the training split's features, scored on the test split.

    python scripts/probe.py runs/ae_mnist/.../checkpoints/last.ckpt --data MNIST --data-root ../shared/data
    python scripts/probe.py CKPT --data Digits --data-arg binarize=true --max-train 1000
"""

from __future__ import annotations

import argparse
import json

import yaml

from lightning_gen.app.probe import probe_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint or its run folder")
    parser.add_argument("--data", default=None, help="data module: a class of lightning_gen.data or a full path "
                                                     "(default: the run's config.yaml)")
    parser.add_argument("--data-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="data module argument, value parsed as YAML (repeatable)")
    parser.add_argument("--data-root", "--root", dest="root", default=None,
                        help="data root (default $LIGHTNING_GEN_DATA), as benchmark's --data-root")
    parser.add_argument("--max-train", type=int, default=None, help="fit on a random subset of this size")
    parser.add_argument("--max-test", type=int, default=None, help="score on a random subset of this size")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    data_args = {k: yaml.safe_load(v) for k, _, v in (a.partition("=") for a in args.data_arg)}
    result = probe_checkpoint(args.checkpoint, args.data, root=args.root, data_args=data_args,
                              max_train=args.max_train, max_test=args.max_test, device=args.device)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
