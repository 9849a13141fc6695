"""Pictures of an autoencoder's or VAE's latent space from a checkpoint: reconstructions beside their inputs,
samples from the prior (drawn and mean images), interpolations between test images and, for a 2-D latent space,
the latent manifold. Written as PNG files into --out.

    python scripts/vae_pictures.py runs/vae_binarized_mnist/.../checkpoints/last.ckpt --out runs/pictures \\
        --data-root ../shared/data
    python scripts/vae_pictures.py CKPT --out DIR --data Digits --data-arg binarize=true
"""

from __future__ import annotations

import argparse

import yaml

from lightning_gen.app.pictures import pictures_from_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint or its run folder")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    parser.add_argument("--data", default=None, help="data module of the test images (default: the run's config.yaml)")
    parser.add_argument("--data-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="data module argument, value parsed as YAML (repeatable)")
    parser.add_argument("--data-root", "--root", dest="root", default=None,
                        help="data root (default $LIGHTNING_GEN_DATA), as benchmark's --data-root")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--manifold-side", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    data_args = {k: yaml.safe_load(v) for k, _, v in (a.partition("=") for a in args.data_arg)}
    paths = pictures_from_checkpoint(args.checkpoint, args.out, data=args.data, root=args.root, data_args=data_args,
                                     device=args.device, num_samples=args.num_samples,
                                     manifold_side=args.manifold_side, seed=args.seed)
    for path in paths.values():
        print(path)


if __name__ == "__main__":
    main()
