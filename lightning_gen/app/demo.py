"""``lightning-gen demo`` (what ``make demo`` runs): the main job on the embedded digits data, end to end.

Trains every ``configs/*_digits.yaml`` model, saves each one's sample grid, benchmarks the checkpoints into the
results store (``results/leaderboard.sqlite``) and builds the leaderboard dashboard from them. Each step is a normal
CLI call, printed before it runs, so the demo doubles as a worked example. It ends with one table: each model's data
set, test NLL in bits/dim, FID, training time and sample grid.

A class-conditional model's numbers (log p(x|y); samples with balanced labels) are ranked in a section of their own
(marked ``cond.`` in the table); a model trained only conditionally has no unconditional entry to compare with the
others, and the demo says so (:func:`only_conditional`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from lightning_gen.app.cli import PROG
from lightning_gen.app.run import CheckpointNotFound, choose_checkpoint
from lightning_gen.leaderboard.ranking import build_entries
from lightning_gen.leaderboard.sections import anchor_arguments

REPO = Path(__file__).resolve().parents[2]
#: The command every step runs: the venv's ``lightning-gen`` is ``python -m lightning_gen`` of this interpreter.
CLI = [sys.executable, "-m", "lightning_gen"]


def run(cmd: list[str]) -> None:
    """Run one step, printed first; a step that fails stops the demo with its command and exit status (its own
    message is printed just above), not a traceback of this script."""
    print("\n$ " + shlex.join(cmd), flush=True)
    status = subprocess.run(cmd, cwd=REPO).returncode
    if status:
        raise SystemExit(f"\n{PROG} demo: this step failed (exit status {status}); its message is above:\n  "
                         f"{shlex.join(cmd)}\nRerun it alone to see the error again, or --configs to run other models.")


def train(config: Path, out: Path, extra: list[str]) -> Path:
    """Fit one config into ``out/<config name>`` and return the checkpoint the benchmark should score: the newest
    run's ``best.ckpt`` (by the config's monitored metric), else its ``last.ckpt``, as ``benchmark RUN_DIR`` picks."""
    root = out / config.stem
    run([*CLI, "fit", "--config", str(config.relative_to(REPO)), "--trainer.default_root_dir", str(root), *extra])
    folders = sorted(root.glob("**/checkpoints"), key=lambda p: p.stat().st_mtime)
    try:
        return choose_checkpoint(folders[-1].parent if folders else root)
    except CheckpointNotFound:
        raise SystemExit(f"{config.name}: training wrote no checkpoint under {root}") from None


def sample_grid(run_dir: Path) -> Path | None:
    """The newest grid of samples a run saved: ``samples/step_*.png`` (SampleGrid), else the autoencoders'
    ``pictures/samples_step_*.png`` (VAEPictures)."""
    for pattern in ("samples/step_*.png", "pictures/samples_step_*.png"):
        grids = sorted(run_dir.glob(pattern))
        if grids:
            return grids[-1]
    return None


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def only_conditional(records: list[dict]) -> list[tuple[str, str]]:
    """``(run name, dataset id)`` of the class-conditional runs with no unconditional twin on their data set (the
    same model class and options but ``conditional``): nothing of theirs is in the unconditional ranking."""
    def twin(e) -> tuple[str, str, str]:
        model = ((e.record or {}).get("config") or {}).get("model")
        args = model.get("init_args", {}) if isinstance(model, dict) else {}
        shape = {k: v for k, v in args.items() if k != "conditional" and "optimizer" not in k}
        return e.model, e.dataset_id, json.dumps(shape, sort_keys=True, default=str)

    entries = build_entries(records, include_published=False, aggregate=False)
    unconditional = {twin(e) for e in entries if not e.conditional}
    return sorted((e.label, e.dataset_id) for e in entries if e.conditional and twin(e) not in unconditional)


def summary(rows: list[dict]) -> str:
    """One screen: model, data set, NLL bits/dim, FID, training time and grid of each run."""
    head = f"{'config':<24} {'model':<14} {'data set':<18} {'bits/dim':>8} {'FID':>8} {'train':>7}  sample grid"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['config'][:24]:<24} {r['model'][:14]:<14} {r['dataset'][:18]:<18} "
                     f"{_cell(r['nll_bpd'], '.3f'):>8} {_cell(r['fid'], '.2f'):>8} {r['train_s']:>6.0f}s  "
                     f"{r['grid'] or '-'}")
    return "\n".join(lines)


def _shown(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    trained = {}
    for config in configs:
        began = time.time()
        ckpt = train(config, args.out.resolve(), extra)
        trained[config.stem] = (ckpt, sample_grid(ckpt.parents[1]), time.time() - began)
    print(f"\nTrained {len(trained)} models in {time.time() - start:.0f} s:")
    for name, (ckpt, grid, _) in trained.items():
        print(f"  {name:28s} checkpoint {_shown(ckpt)}\n  {'':28s} samples    {_shown(grid)}")

    results = args.results.resolve()
    db, records_file = results / "leaderboard.sqlite", results / "demo_records.json"
    run([*CLI, "benchmark", *(str(c) for c, _, _ in trained.values()), "--num-samples", str(args.num_samples),
         "--iw-samples", str(args.iw_samples), "--db", str(db), "--out", str(records_file)])
    # One "real data" row per data set the demo trained on: real training images under the same protocol.
    anchors = {shlex.join(a): a for r in json.loads(records_file.read_text()) if (a := anchor_arguments(r))}
    for anchor in anchors.values():
        run([*CLI, "benchmark", *anchor, "--db", str(db)])
    board = results / "leaderboard" / "index.html"
    run([*CLI, "leaderboard", "--db", str(db), "--out", str(board), "--ranks"])

    benchmarked = json.loads(records_file.read_text())
    for name, dataset_id in only_conditional(benchmarked):
        print(f"note: {name} is class-conditional with no unconditional twin on {dataset_id}: its numbers (log "
              f"p(x|y), samples with balanced labels) rank in the class-conditional section, not with the others")
    records = {Path(r["checkpoint"]).resolve(): r for r in benchmarked}
    rows = []
    for name, (ckpt, grid, seconds) in trained.items():
        record = records.get(ckpt.resolve(), {})
        metrics = record.get("metrics", {})
        rows.append({"config": name, "model": record.get("model", "?"),
                     "dataset": (record.get("dataset_id") or record.get("dataset", "?"))
                     + (" cond." if record and build_entries([record], include_published=False)[0].conditional
                        else ""),
                     "nll_bpd": metrics.get("nll_bpd"), "fid": metrics.get("fid"), "train_s": seconds,
                     "grid": _shown(grid)})
    print(f"\nDemo done in {time.time() - start:.0f} s. Leaderboard: {_shown(board)}\n")
    print(summary(rows))
    return 0
