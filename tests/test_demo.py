"""`lightning-gen demo` (what `make demo` runs): models trained and benchmarked side by side, one table at the end,
and a failing step that names itself, its log and the fix."""

import json
import os

import pytest

from lightning_gen.app import demo


@pytest.mark.slow
def test_demo_trains_benchmarks_and_ranks_models_side_by_side(tmp_path, capfd):
    configs = ["configs/fvsbn_digits.yaml", "configs/nade_digits.yaml"]
    out, results = tmp_path / "runs", tmp_path / "results"
    assert demo.main(["--configs", *configs, "--max-epochs", "1", "--num-samples", "200", "--jobs", "2",
                      "--out", str(out), "--results", str(results)]) == 0
    printed = capfd.readouterr().out  # the steps print from subprocesses
    assert "2 models, 2 at a time on" in printed
    records = json.loads((results / "demo_records.json").read_text())
    assert sorted(r["run_name"] for r in records) == ["fvsbn_digits", "nade_digits"]
    assert all(r["metrics"]["nll_bpd"] > 0 and r["metrics"]["fid"] > 0 for r in records)
    assert (results / "leaderboard" / "index.html").stat().st_size > 10_000
    for name in ("fvsbn_digits", "nade_digits"):
        log = (out / name / "demo.log").read_text()
        assert "max_epochs=1" in log and "stored in" in log  # the fit's and the benchmark's output
        assert any(line.startswith(name) and "digits-" in line for line in printed.splitlines())  # summary row
    # Both data sets the demo trained on got their real-data row.
    assert "digits-8bit-train-anchor" in printed and "digits-binary-train-anchor" in printed


def test_a_failing_step_names_its_command_its_log_and_the_error(tmp_path):
    bad = tmp_path / "bad_digits.yaml"
    bad.write_text("model:\n  class_path: lightning_gen.models.FVSBN\n  init_args: {hiden_size: 3}\n"
                   "data: {class_path: lightning_gen.data.Digits}\n")
    with pytest.raises(SystemExit) as failure:
        demo.main(["--configs", str(bad), "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")])
    message = str(failure.value)
    assert "this step failed (exit status 2)" in message
    assert f"lightning-gen fit --config {bad}" in message  # the command as a user types it
    assert str(tmp_path / "runs" / "bad_digits" / "demo.log") in message
    assert "hiden_size" in message  # the error itself, from the end of the log
    assert "Traceback" not in message


def test_each_parallel_step_gets_its_share_of_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert demo.threads_per_job(1) == cores
    assert demo.threads_per_job(cores) == 1
    assert demo.threads_per_job(4 * cores) == 1
