"""``lightning-gen demo`` (what ``make demo`` runs): the main job on the embedded digits data, end to end.

Trains every ``configs/*_digits.yaml`` model, saves each one's sample grid, benchmarks the checkpoints into the
results store (``results/leaderboard.sqlite``) and builds the leaderboard dashboard from them. Each step is a normal
CLI call, printed before it runs, so the demo doubles as a worked example. Models are trained and benchmarked side by
side, one per core (``--jobs``), each on one thread with its output in ``<out>/<config>/demo.log``. It ends with one
table: each model's data set, test NLL in bits/dim, FID, training and benchmark time and sample grid.

A class-conditional model's numbers (log p(x|y); samples with balanced labels) are ranked in a section of their own
(marked ``cond.`` in the table); a model trained only conditionally has no unconditional entry to compare with the
others, and the demo says so (:func:`only_conditional`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from lightning_gen.app.cli import PROG
from lightning_gen.app.run import CheckpointNotFound, choose_checkpoint
from lightning_gen.leaderboard.ranking import build_entries
from lightning_gen.leaderboard.sections import anchor_arguments

REPO = Path(__file__).resolve().parents[2]
#: The command every step runs: the venv's ``lightning-gen`` is ``python -m lightning_gen`` of this interpreter.
CLI = [sys.executable, "-m", "lightning_gen"]
#: The digits configs by their measured time to train and benchmark, longest first: started first, the long ones
#: do not leave one core working alone at the end. Configs not listed start before these.
LONGEST_FIRST = ("diagonal_bilstm_digits", "row_lstm_digits", "dcgan_digits", "gan_digits", "dcgan_uncond_digits",
                 "vae_digits", "ae_digits", "ddpm_digits", "realnvp_digits", "rbm_digits", "pixelcnn_digits",
                 "gated_pixelcnn_digits", "gated_pixelcnn_uncond_digits", "fvsbn_digits", "nade_digits",
                 "made_digits")


def threads_per_job(jobs: int) -> int:
    """Threads each step may use when ``jobs`` steps run at once: the process's cores shared out, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (a job scheduler's share)
    except AttributeError:  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    return max(1, cores // jobs)


class StepFailed(Exception):
    """A step exited with a non-zero status; the message names it, its log and how to rerun it."""


def run(cmd: list[str], log: Path | None = None, threads: int | None = None) -> None:
    """Run one step, its command printed first. With ``log`` its output goes to that file (steps running side by
    side would interleave their progress bars) and a failure prints the log's last lines; ``threads`` sets
    ``OMP_NUM_THREADS`` unless the user set it. A failing step raises :class:`StepFailed`."""
    print(f"$ {_display(cmd)}" + (f"   > {_shown(log)}" if log else ""), flush=True)
    env = dict(os.environ)
    if threads and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    if log is None:
        status = subprocess.run(cmd, cwd=REPO, env=env).returncode
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            status = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    if status:
        tail = "".join(f"  | {line}\n" for line in _last_lines(log)) if log else ""
        raise StepFailed(f"this step failed (exit status {status}):\n  {_display(cmd)}\n"
                         + (f"the end of its log, {_shown(log)}:\n{tail}" if log else "its message is above.\n")
                         + "Rerun it alone to see the error again, or --configs to run other models.")


def _display(cmd: list[str]) -> str:
    """``cmd`` as a user would type it in the repository: ``lightning-gen ...`` with paths relative to it."""
    shown = ["lightning-gen", *cmd[len(CLI):]] if cmd[:len(CLI)] == CLI else cmd
    return shlex.join(shown).replace(f"{REPO}/", "")


def _last_lines(log: Path, n: int = 25) -> list[str]:
    # Progress bars rewrite one line with carriage returns: keep what each line finally showed.
    lines = [line.rsplit("\r", 1)[-1] for line in log.read_text(errors="replace").splitlines()]
    return [line for line in lines if line.strip()][-n:]


def train_and_benchmark(config: Path, out: Path, extra: list[str], benchmark: list[str], records: Path,
                        threads: int) -> dict:
    """One model, start to end: fit ``config`` into ``out/<config name>``, then benchmark the checkpoint ``benchmark
    RUN_DIR`` would pick (the newest run's ``best.ckpt`` by the config's monitored metric, else ``last.ckpt``) into
    ``records``. Both steps log to ``out/<config name>/demo.log``."""
    root = out / config.stem
    log = root / "demo.log"
    log.unlink(missing_ok=True)
    began = time.time()
    run([*CLI, "fit", "--config", _shown(config), "--trainer.default_root_dir", str(root), *extra],
        log, threads)
    trained = time.time()
    folders = sorted(root.glob("**/checkpoints"), key=lambda p: p.stat().st_mtime)
    try:
        ckpt = choose_checkpoint(folders[-1].parent if folders else root)
    except CheckpointNotFound:
        raise StepFailed(f"{config.name}: training wrote no checkpoint under {_shown(root)}") from None
    run([*CLI, "benchmark", str(ckpt), *benchmark, "--no-progress", "--out", str(records)], log, threads)
    done = {"config": config.stem, "checkpoint": ckpt, "grid": sample_grid(ckpt.parents[1]),
            "train_s": trained - began, "benchmark_s": time.time() - trained, "log": log}
    print(f"  done: {config.stem}, trained in {done['train_s']:.0f} s, benchmarked in {done['benchmark_s']:.0f} s",
          flush=True)
    return done


def in_parallel(jobs: int, tasks: list) -> list:
    """Run the zero-argument callables ``tasks``, ``jobs`` at a time, and return their results in order. The first
    failure stops new tasks from starting, lets the running ones finish, and ends the demo with its message."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            return [f.result() for f in futures]
        except StepFailed as failure:
            for f in futures:
                f.cancel()
            raise SystemExit(f"\n{PROG} demo: {failure}") from None


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
    """One screen: model, data set, NLL bits/dim, FID, training and benchmark time and grid of each run."""
    head = (f"{'config':<24} {'model':<14} {'data set':<18} {'bits/dim':>8} {'FID':>8} {'train':>6} {'bench':>6}  "
            "sample grid")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['config'][:24]:<24} {r['model'][:14]:<14} {r['dataset'][:18]:<18} "
                     f"{_cell(r['nll_bpd'], '.3f'):>8} {_cell(r['fid'], '.2f'):>8} {r['train_s']:>5.0f}s {r['bench_s']:>5.0f}s  "
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
    p.add_argument("--iw-samples", type=int, default=200,
                   help="k of the importance-weighted NLL (the VAE's latents, the flow's dequantization) and the RBM's AIS "
                        "runs")
    p.add_argument("--results", type=Path, default=REPO / "results", help="results store and dashboard folder")
    p.add_argument("--jobs", type=int, default=None,
                   help="models trained and benchmarked side by side, each on its share of the cores (default: one "
                        "per core, at most one per model)")
    args = p.parse_args(argv)
    configs = [c.resolve() for c in args.configs] if args.configs else sorted((REPO / "configs").glob("*_digits.yaml"))
    configs.sort(key=lambda c: LONGEST_FIRST.index(c.stem) if c.stem in LONGEST_FIRST else -1)
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs {args.jobs}: give at least 1")
    jobs = min(args.jobs or threads_per_job(1), len(configs))
    threads = threads_per_job(jobs)
    extra = ["--trainer.max_epochs", str(args.max_epochs)] if args.max_epochs else []
    results = args.results.resolve()
    db, records_file, parts = results / "leaderboard.sqlite", results / "demo_records.json", results / "demo_records"
    benchmark = ["--num-samples", str(args.num_samples), "--iw-samples", str(args.iw_samples), "--db", str(db)]
    print(f"Training and benchmarking {len(configs)} model{'s' * (len(configs) != 1)}, {jobs} at a time on {threads} "
          f"thread{'s' * (threads != 1)} each; each "
          f"model's output goes to its demo.log.\n", flush=True)
    start = time.time()
    done = in_parallel(jobs, [partial(train_and_benchmark, c, args.out.resolve(), extra, benchmark,
                                      parts / f"{c.stem}.json", threads) for c in configs])
    trained = {d["config"]: d for d in sorted(done, key=lambda d: d["config"])}
    benchmarked = [r for d in trained.values() for r in json.loads((parts / f"{d['config']}.json").read_text())]
    records_file.write_text(json.dumps(benchmarked, indent=1))
    print(f"\nTrained and benchmarked {len(trained)} models in {time.time() - start:.0f} s (records: "
          f"{_shown(records_file)}):")
    for name, d in trained.items():
        print(f"  {name:28s} checkpoint {_shown(d['checkpoint'])}\n  {'':28s} samples    {_shown(d['grid'])}")

    # One "real data" row per data set the demo trained on: real training images under the same protocol.
    anchors = {shlex.join(a): a for r in benchmarked if (a := anchor_arguments(r))}
    print()
    in_parallel(jobs, [partial(run, [*CLI, "benchmark", *a, "--db", str(db), "--no-progress"], None, threads)
                       for a in anchors.values()])
    board = results / "leaderboard" / "index.html"
    try:
        run([*CLI, "leaderboard", "--db", str(db), "--out", str(board), "--ranks"])
    except StepFailed as failure:
        raise SystemExit(f"\n{PROG} demo: {failure}") from None

    for name, dataset_id in only_conditional(benchmarked):
        print(f"note: {name} is class-conditional with no unconditional twin on {dataset_id}: its numbers (log "
              f"p(x|y), samples with balanced labels) rank in the class-conditional section, not with the others")
    records = {Path(r["checkpoint"]).resolve(): r for r in benchmarked}
    rows = []
    for name, d in trained.items():
        record = records.get(d["checkpoint"].resolve(), {})
        metrics = record.get("metrics", {})
        rows.append({"config": name, "model": record.get("model", "?"),
                     "dataset": (record.get("dataset_id") or record.get("dataset", "?"))
                     + (" cond." if record and build_entries([record], include_published=False)[0].conditional
                        else ""),
                     "nll_bpd": metrics.get("nll_bpd"), "fid": metrics.get("fid"), "train_s": d["train_s"],
                     "bench_s": d["benchmark_s"], "grid": _shown(d["grid"])})
    print(f"\nDemo done in {time.time() - start:.0f} s. Leaderboard: {_shown(board)}\n")
    print(summary(rows))
    return 0
