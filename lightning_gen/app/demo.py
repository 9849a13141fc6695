"""``make demo``: the main job on the embedded digits data, end to end.

Trains every ``configs/*_digits.yaml`` model, saves each one's sample grid, benchmarks the checkpoints into the
results store (``results/leaderboard.sqlite``) and builds the leaderboard dashboard from them. Each step is a normal CLI call, printed before it runs, so
the demo doubles as a worked example.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(cmd: list[str]) -> None:
    print("\n$ " + shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def train(config: Path, out: Path, extra: list[str]) -> Path:
    """Fit one config into ``out/<config name>`` and return its last checkpoint."""
    root = out / config.stem
    run([sys.executable, "-m", "lightning_gen", "fit", "--config", str(config.relative_to(REPO)),
         "--trainer.default_root_dir", str(root), *extra])
    checkpoints = sorted(root.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not checkpoints:
        raise SystemExit(f"{config.name}: training wrote no checkpoint under {root}")
    return checkpoints[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "demo", help="where runs are written")
    p.add_argument("--configs", nargs="*", type=Path, help="configs to run (default: configs/*_digits.yaml)")
    p.add_argument("--max-epochs", type=int, help="override every config's epoch budget (e.g. 1 for a smoke run)")
    p.add_argument("--num-samples", type=int, default=1000, help="samples per model for FID / IS / KID")
    p.add_argument("--iw-samples", type=int, default=1000, help="importance samples k of the VAE's NLL estimate")
    p.add_argument("--results", type=Path, default=REPO / "results", help="results store and dashboard folder")
    args = p.parse_args(argv)
    configs = [c.resolve() for c in args.configs] if args.configs else sorted((REPO / "configs").glob("*_digits.yaml"))
    extra = ["--trainer.max_epochs", str(args.max_epochs)] if args.max_epochs else []
    start = time.time()
    results = {}
    for config in configs:
        ckpt = train(config, args.out.resolve(), extra)
        grids = sorted(ckpt.parents[1].glob("**/samples/step_*.png")) or sorted(ckpt.parents[2].glob("**/samples/step_*.png"))
        results[config.stem] = (ckpt, grids[-1] if grids else None)
    print(f"\nTrained {len(results)} models in {time.time() - start:.0f} s:")
    for name, (ckpt, grid) in results.items():
        print(f"  {name:28s} checkpoint {ckpt}\n  {'':28s} samples    {grid}")

    db = args.results.resolve() / "leaderboard.sqlite"
    run([sys.executable, "-m", "lightning_gen", "benchmark", *(str(c) for c, _ in results.values()),
         "--num-samples", str(args.num_samples), "--iw-samples", str(args.iw_samples), "--db", str(db)])
    board = args.results.resolve() / "leaderboard" / "index.html"
    run([sys.executable, "-m", "lightning_gen", "leaderboard", "--db", str(db), "--out", str(board)])
    print(f"\nDemo done in {time.time() - start:.0f} s. Leaderboard: {board}")
    return 0
