"""FID and KID of degraded real images against the test split, per shipped extractor: the README's "Reading FID and
KID" table (:mod:`lightning_gen.metrics.calibration`).

    LIGHTNING_GEN_DATA=../shared/data python scripts/calibrate_fid.py                 # digits-lenet and mnist-lenet
    python scripts/calibrate_fid.py --datasets digits --record-kid-scale              # measure, store, then score
    python scripts/calibrate_fid.py --bootstrap                                       # FID bootstrap vs draws

``--bootstrap`` prints the FID bootstrap's std over the std across independent draws on synthetic Gaussians at
issue 25's (D, N) and the benchmark's digit setting (:func:`~lightning_gen.metrics.calibration.bootstrap_table`).

The last line holds the headline figures as ``key=value``.
"""

from __future__ import annotations

import argparse
import time

import torch

from lightning_gen.data import MNIST, Digits
from lightning_gen.metrics.calibration import (
    BOOTSTRAP_SETTINGS,
    bootstrap_table,
    calibration_rows,
    markdown_table,
    signal_to_noise,
)
from lightning_gen.metrics.classifier import record_kid_feature_scale
from lightning_gen.metrics.features import get_extractor

#: dataset -> (data module, extractor)
SETS = {"digits": (Digits, "digits-lenet"), "mnist": (MNIST, "mnist-lenet")}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(SETS), default=["digits", "mnist"])
    parser.add_argument("--data-root", default=None, help="data root (default $LIGHTNING_GEN_DATA)")
    parser.add_argument("--num-images", type=int, default=10_000, help="training images per row (the benchmark's "
                        "default sample count)")
    parser.add_argument("--real-draws", type=int, default=3, help="disjoint draws of real training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record-kid-scale", action="store_true", help="measure each classifier's feature RMS on "
                        "its training split and store it in weights/manifest.json first (the KID feature scale)")
    parser.add_argument("--bootstrap", action="store_true", help="only the FID bootstrap's calibration against "
                        "independent draws, on synthetic Gaussian features")
    parser.add_argument("--draws", type=int, default=100, help="independent draws per (D, N) (--bootstrap)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.bootstrap:
        table, ratios = bootstrap_table(BOOTSTRAP_SETTINGS + ((128, 10_000),), draws=args.draws, seed=args.seed)
        print(table)
        figures = {f"ratio_d{dim}_n{n}": round(r, 2) for (dim, n), r in ratios.items()}
        print("\n" + " ".join(f"{k}={v:g}" for k, v in figures.items()))
        return figures

    headline: dict[str, float] = {}
    for name in args.datasets:
        data_class, extractor_name = SETS[name]
        data = data_class(args.data_root) if name != "digits" else data_class()
        data.prepare_data()
        splits = data.splits()
        if args.record_kid_scale:
            scale = record_kid_feature_scale(name, splits["train"][0])
            print(f"{extractor_name}: KID feature scale {scale:.6g} (RMS feature entry, train split) recorded")
        extractor = get_extractor(extractor_name)
        start = time.perf_counter()
        rows = calibration_rows(extractor, splits["train"], splits["test"][0], num_images=args.num_images,
                                real_draws=args.real_draws, seed=args.seed)
        n_test = splits["test"][0].shape[0]
        print(f"\n{extractor_name} on {data.dataset_id}: {n_test:,} test images as reference, KID feature scale "
              f"{extractor.kid_feature_scale} ({time.perf_counter() - start:.0f} s)\n")
        print(markdown_table(rows, title=f"`{extractor_name}`, {data.dataset_id}"))
        by = {r.name: r for r in rows}
        headline[f"{name}_fid_real"] = round(max(by["real"].fid), 2)
        headline[f"{name}_fid_noise"] = round(by["noise"].fid[0], 1)
        headline[f"{name}_fid_class1"] = round(by["class1"].fid[0], 0)
        if by["real"].kid_scaled:
            headline[f"{name}_kid_scaled_noise_x1e3"] = round(1e3 * by["noise"].kid_scaled[0], 2)
            headline[f"{name}_kid_snr_scaled"] = round(signal_to_noise(rows, "kid_scaled"), 1)
        headline[f"{name}_kid_raw_noise_x1e3"] = round(1e3 * by["noise"].kid_raw[0], 0)
        headline[f"{name}_kid_snr_raw"] = round(signal_to_noise(rows, "kid_raw"), 1)
        headline[f"{name}_fid_snr"] = round(signal_to_noise(rows, "fid"), 1)
    print("\n" + " ".join(f"{k}={v:g}" for k, v in headline.items()))
    return headline


if __name__ == "__main__":
    main()
