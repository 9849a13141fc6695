"""The FID/KID calibration: each degradation does what its name says, the scores order the defects as a reader of
the README's table expects, and scripts/calibrate_fid.py ends in key=value headline figures."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from helpers import REPO
from lightning_gen.data import Digits
from lightning_gen.metrics import get_extractor
from lightning_gen.metrics.calibration import NOISE_SIGMA, calibration_rows, degrade, markdown_table


def test_degradations_do_what_their_names_say():
    x = torch.full((500, 1, 8, 8), 100, dtype=torch.uint8)
    x[:, :, :, 0] = 255  # a bright left column
    noisy = degrade(x, "noise", torch.Generator().manual_seed(0))
    assert (noisy[:, :, :, 1:].float() - 100).std().item() == pytest.approx(NOISE_SIGMA, rel=0.02)  # in pixel units
    assert noisy.dtype == torch.uint8 and int(noisy[:, :, :, 0].min()) >= 255 - 4 * NOISE_SIGMA  # clipped, not wrapped
    assert set(degrade(x, "binarized").unique().tolist()) == {0, 255}
    assert set(degrade(torch.tensor([[[[127, 128]]]], dtype=torch.uint8), "binarized").flatten().tolist()) == {0, 255}
    shifted = degrade(x, "shifted")
    assert (shifted[:, :, :, :2] == 0).all() and (shifted[:, :, :, 2] == 255).all()  # 2 px right, zero fill
    blurred = degrade(x, "blur")
    assert (blurred[:, :, :, 3:] == 100).all() and int(blurred[0, 0, 3, 1]) == round((255 + 100 * 2) / 3)
    assert torch.equal(degrade(x, "class1"), x)  # a class subset chooses images, it does not change them
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(x, "jpeg")


def test_scores_order_the_defects_on_digits():
    splits = Digits().splits()
    rows = {r.name: r for r in calibration_rows(get_extractor("digits-lenet"), splits["train"], splits["test"][0],
                                                kid_subsets=20)}
    real = rows["real"]
    assert real.num_images == 1297 and len(real.fid) == 1  # fewer training images than 10k: one draw of all of them
    for name, row in rows.items():
        if name == "real":
            continue
        assert row.fid[0] > real.fid[0], name  # every defect is further from the test split than real images
        assert row.kid_scaled[0] > real.kid_scaled[0] and row.kid_raw[0] > real.kid_raw[0], name
    # dropping modes: half the classes is worse than real, one class far worse than half
    assert rows["class1"].fid[0] > rows["classes04"].fid[0] > 10 * real.fid[0]
    assert rows["class1"].num_images == int((splits["train"][1] == 1).sum())
    table = markdown_table(list(rows.values()), title="digits-lenet")
    assert table.count("\n") == len(rows) + 1 and "class 1 only" in table


def test_script_prints_the_table_and_ends_in_key_value_figures():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "calibrate_fid.py"), "--datasets", "digits"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    assert "| real train images | 1,297 |" in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    figures = dict(pair.split("=") for pair in last.split())
    assert {"digits_fid_real", "digits_fid_noise", "digits_kid_scaled_noise_x1e3"} <= set(figures)
    assert float(figures["digits_fid_noise"]) > float(figures["digits_fid_real"]) > 0
