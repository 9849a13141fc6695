"""The dashboard in a real browser: tables and sample grids render, headers sort, selects filter, payloads stay text.

Drives the system Chromium (``/usr/bin/chromium``, installed by ``scripts/install_browser.sh``) through
Playwright, headless. Set ``LEADERBOARD_SCREENSHOT=path.png`` to keep a screenshot of the page built from the
realistic fake records below.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from lightning_gen.leaderboard import main

# Deselected by `make test-fast` (-m "not browser"); `make test` installs Chromium first and runs them. A missing
# browser fails these tests (see chromium()), never skips them.
pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")


# ----------------------------------------------------------------------------------------------------------
# Realistic fake records: made-up numbers of plausible size, grids drawn with PIL.


def _digit_grid(path: Path, seed: int, binary: bool, tiles: int = 8, size: int = 28) -> str:
    rng = np.random.default_rng(seed)
    grid = Image.new("L", (tiles * (size + 2) + 2, tiles * (size + 2) + 2), 90)
    for i in range(tiles * tiles):
        tile = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(tile)
        pts = [tuple(rng.uniform(size // 5, size - size // 5, 2)) for _ in range(rng.integers(3, 6))]
        draw.line(pts, fill=255, width=max(1, size // 10), joint="curve")
        tile = tile.filter(ImageFilter.GaussianBlur(0.6))
        if binary:
            tile = tile.point(lambda v: 255 if v > 100 else 0)
        grid.paste(tile, (2 + (i % tiles) * (size + 2), 2 + (i // tiles) * (size + 2)))
    grid.save(path)
    return str(path)


def _colour_grid(path: Path, seed: int, tiles: int = 8, size: int = 32) -> str:
    rng = np.random.default_rng(seed)
    grid = Image.new("RGB", (tiles * (size + 2) + 2, tiles * (size + 2) + 2), (90, 90, 90))
    for i in range(tiles * tiles):
        low = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        tile = Image.fromarray(low).resize((size, size), Image.BICUBIC)
        noise = rng.normal(0, 12, size=(size, size, 3))
        tile = Image.fromarray(np.clip(np.asarray(tile) + noise, 0, 255).astype(np.uint8))
        grid.paste(tile, (2 + (i % tiles) * (size + 2), 2 + (i // tiles) * (size + 2)))
    grid.save(path)
    return str(path)


def _training_grids(tmp: Path, run_name: str, final: str, steps: range) -> None:
    """What SampleGrid leaves in ``runs/<run>/samples`` while training: the final grid's samples, from noise."""
    last = Image.open(final)
    rng = np.random.default_rng(len(run_name))
    noise = Image.fromarray(rng.integers(0, 256, size=(last.height, last.width, len(last.getbands())),
                                         dtype=np.uint8).squeeze()).convert(last.mode)
    folder = tmp / "runs" / run_name / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    for step in steps:
        Image.blend(noise, last, (step / steps[-1]) ** 0.5).save(folder / f"step_{step:07d}.png")


def _record(run_name, model, family, dataset, shape, metrics, *, grid=None, estimator=None, extractor=None,
            train_h=None, wandb=True) -> dict:
    return {
        "schema": 2, "run_name": run_name, "model": model, "family": family, "dataset": dataset,
        "dataset_id": {"CIFAR10": "cifar10", "BinarizedMNIST": "binarized-mnist-static", "Digits": "digits-8bit"}[dataset],
        "image_shape": list(shape), "metrics": metrics,
        "protocol": {"extractor": extractor, "extractor_weights_sha256": "5f" * 32 if extractor else None,
                     "num_samples": 10000 if extractor else None, "reference_split": "test",
                     "image_size": [299, 299] if extractor == "inception-v3-compat" else list(shape[1:]),
                     "nll_estimator": estimator, "num_test_images": 10000, "devices": 1},
        "checkpoint": f"runs/{run_name}/checkpoints/last.ckpt", "checkpoint_sha256": "9e" * 32,
        "config": {"model": {"class_path": f"lightning_gen.models.{model}"}, "data": {"dataset": dataset}},
        "git_commit": "4c1d2e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
        "wandb_url": f"https://wandb.ai/lightning-gen/leaderboard/runs/{run_name}" if wandb else None,
        "sample_grid": grid, "created_at": "2026-05-09T07:35:25+00:00",
        "train_time_s": None if train_h is None else train_h * 3600.0,
    }


def realistic_records(tmp: Path) -> list[dict]:
    inc, lenet = "inception-v3-compat", "mnist-lenet"
    c, b = (3, 32, 32), (1, 28, 28)
    return [
        _record("dcgan_cifar10", "DCGAN", "gan", "CIFAR10", c,
                {"fid": 37.82, "is_mean": 6.42, "is_std": 0.08, "kid_mean": 0.0291, "kid_std": 0.0012,
                 "samples_per_s": 21500.0, "num_params": 3_576_000},
                grid=_colour_grid(tmp / "dcgan.png", 1), extractor=inc, train_h=2.1),
        _record("wgan_gp_cifar10", "WGANGP", "gan", "CIFAR10", c,
                {"fid": 31.05, "is_mean": 6.93, "is_std": 0.07, "kid_mean": 0.0243, "kid_std": 0.0011,
                 "samples_per_s": 20800.0, "num_params": 3_576_000},
                grid=_colour_grid(tmp / "wgan.png", 2), extractor=inc, train_h=5.5),
        _record("gated_pixelcnn_cifar10", "GatedPixelCNN", "autoregressive", "CIFAR10", c,
                {"fid": 65.3, "is_mean": 4.91, "is_std": 0.05, "nll_bpd": 3.18, "nll_nats": 6771.2,
                 "samples_per_s": 1.9, "num_params": 4_930_000},
                grid=_colour_grid(tmp / "gpcnn.png", 3), extractor=inc, estimator="exact", train_h=14.0),
        _record("vae_cifar10", "VAE", "latent", "CIFAR10", c,
                {"fid": 98.4, "is_mean": 3.88, "is_std": 0.04, "nll_bpd": 4.71, "nll_nats": 10029.0,
                 "probe_acc": 0.412, "samples_per_s": 81000.0, "num_params": 2_310_000},
                grid=_colour_grid(tmp / "vae.png", 4), extractor=inc, estimator="importance-weighted k=5000",
                train_h=1.2, wandb=False),
        _record("gated_pixelcnn_bmnist", "GatedPixelCNN", "autoregressive", "BinarizedMNIST", b,
                {"nll_nats": 81.12, "nll_bpd": 0.1493, "samples_per_s": 38.0, "num_params": 1_204_000},
                grid=_digit_grid(tmp / "gpcnn_b.png", 5, True), estimator="exact", train_h=1.6),
        _record("pixelcnn_bmnist", "PixelCNN", "autoregressive", "BinarizedMNIST", b,
                {"nll_nats": 81.92, "nll_bpd": 0.1507, "samples_per_s": 52.0, "num_params": 388_000},
                grid=_digit_grid(tmp / "pcnn_b.png", 6, True), estimator="exact", train_h=0.9),
        _record("row_lstm_bmnist", "RowLSTM", "autoregressive", "BinarizedMNIST", b,
                {"nll_nats": 80.87, "nll_bpd": 0.1488, "samples_per_s": 11.0, "num_params": 611_000},
                grid=_digit_grid(tmp / "rlstm_b.png", 7, True), estimator="exact", train_h=3.4),
        _record("vae_bmnist", "VAE", "latent", "BinarizedMNIST", b,
                {"nll_nats": 87.41, "nll_bpd": 0.1608, "probe_acc": 0.962, "samples_per_s": 95000.0,
                 "num_params": 1_070_000},
                grid=_digit_grid(tmp / "vae_b.png", 8, True), extractor=lenet,
                estimator="importance-weighted k=5000", train_h=0.5),
        _record("pixel_marginals_bmnist", "PixelMarginals", "baseline", "BinarizedMNIST", b,
                {"nll_nats": 206.3, "nll_bpd": 0.3796, "samples_per_s": 2.5e6, "num_params": 784},
                grid=_digit_grid(tmp / "marg_b.png", 9, True), estimator="exact", train_h=0.01, wandb=False),
        _record("fvsbn_digits", "FVSBN", "autoregressive", "Digits", (1, 8, 8),
                {"nll_nats": 41.7, "nll_bpd": 0.94, "samples_per_s": 900.0, "num_params": 2_080},
                grid=_digit_grid(tmp / "fvsbn.png", 10, False, size=8), estimator="exact", train_h=0.02),
    ]


#: Runs of realistic_records() that saved grids during training, and at which steps.
TRAINING_STEPS = {"dcgan_cifar10": range(0, 50_001, 2_500), "gated_pixelcnn_bmnist": range(0, 30_001, 1_000),
                  "vae_bmnist": range(0, 9_001, 1_000), "fvsbn_digits": range(0, 401, 50)}


def with_training_grids(tmp: Path, records: list[dict]) -> list[dict]:
    for r in records:
        if r["run_name"] in TRAINING_STEPS:
            _training_grids(tmp, r["run_name"], r["sample_grid"], TRAINING_STEPS[r["run_name"]])
    return records


def build_page(tmp: Path, records: list[dict], monkeypatch) -> Path:
    """The page as ``python -m lightning_gen leaderboard --import records.json`` builds it in a project folder."""
    (tmp / "records.json").write_text(json.dumps(records))
    monkeypatch.chdir(tmp)  # relative paths, as in a checkout: the page says "from results/leaderboard.sqlite"
    assert main(["--db", "results/leaderboard.sqlite", "--out", "results/leaderboard/index.html",
                 "--import", "records.json"]) == 0
    return tmp / "results" / "leaderboard" / "index.html"


# ----------------------------------------------------------------------------------------------------------
# Browser


@pytest.fixture(scope="module")
def browsers():
    """One Chromium for the module, started by the first test that calls :func:`chromium`."""
    state: dict = {}
    yield state
    if "browser" in state:
        state["browser"].close()
        state["playwright"].stop()


def chromium(state: dict):
    # Checked inside the test, so a missing browser reports the test as FAILED (not skipped, not a setup error).
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run scripts/install_browser.sh to install the system Chromium "
                    "these browser tests drive")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install playwright (its own browser downloads are "
                    "not needed; run scripts/install_browser.sh for Chromium)")
    if "browser" not in state:
        state["playwright"] = sync_playwright().start()
        state["browser"] = state["playwright"].chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    return state["browser"]


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("request", lambda req: problems.append(f"network request: {req.url}")
            if not req.url.startswith(("file:", "data:")) else None)
    page.goto(path.resolve().as_uri())
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    return page, problems


def visible_runs(page, dataset: str) -> list[str]:
    return page.eval_on_selector_all(
        f'section[data-dataset="{dataset}"] tbody tr.entry',
        "rows => rows.filter(r => !r.hidden).map(r => r.getAttribute('data-run'))")


def column_values(page, dataset: str, header: str) -> list[float | None]:
    return page.evaluate(
        """([ds, header]) => {
            const table = document.querySelector(`section[data-dataset="${ds}"] table`);
            const col = Array.from(table.tHead.rows[0].cells).findIndex(th => th.textContent === header);
            if (col < 0) throw new Error("no column " + header);
            return Array.from(table.tBodies[0].querySelectorAll("tr.entry")).map(r => {
                const v = r.cells[col].getAttribute("data-sort");
                return v === "" ? null : parseFloat(v);
            });
        }""", [dataset, header])


def more_rows_follow_their_runs(page) -> bool:
    """Every run's full-width row (samples over training, details) sits right under the run, shown as it is."""
    return page.evaluate("""() => Array.from(document.querySelectorAll("tr.more")).every(m => {
        const run = m.previousElementSibling;
        return run && run.classList.contains("entry") && run.dataset.run === m.dataset.run
            && run.hidden === m.hidden;
    })""")


def test_dashboard_in_browser(browsers, tmp_path, monkeypatch, request):
    records = with_training_grids(tmp_path, realistic_records(tmp_path))
    page, problems = open_page(chromium(browsers), build_page(tmp_path, records, monkeypatch))

    # One ranked table per data set identity (static and dynamic binarization apart), runs and published rows.
    datasets = page.eval_on_selector_all("section.dataset", "s => s.map(x => x.getAttribute('data-dataset'))")
    # 8-bit MNIST has published rows only (RealNVP, Glow): its section shows them.
    assert sorted(datasets) == ["binarized-mnist-dynamic", "binarized-mnist-static", "cifar10", "digits-8bit", "mnist"]
    assert page.locator("table.board").count() == 5
    assert page.locator("tr.entry.published").count() > 20
    assert page.locator("tr.published .badge.pub").first.is_visible()

    # Every run's sample grid decoded to a real image.
    sizes = page.eval_on_selector_all("img.grid", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert len(sizes) == len(records)
    assert all(done and width > 0 for done, width in sizes), sizes

    # cifar10 has likelihoods (published and ours), so it is ranked by bits/dim, best first, rows without it last.
    bpd = column_values(page, "cifar10", "NLL (bits/dim)")
    known = [v for v in bpd if v is not None]
    assert known == sorted(known) and bpd[: len(known)] == known
    before = visible_runs(page, "cifar10")

    # A click on FID sorts by it best first, a second click reverses; a text column sorts alphabetically.
    fid_header = page.locator('section[data-dataset="cifar10"] th', has_text="FID")
    fid_header.click()
    fids = column_values(page, "cifar10", "FID")
    known = [v for v in fids if v is not None]
    assert known == sorted(known) and fids[: len(known)] == known
    assert visible_runs(page, "cifar10") != before
    fid_header.click()
    known = [v for v in column_values(page, "cifar10", "FID") if v is not None]
    assert known == sorted(known, reverse=True)
    assert fid_header.get_attribute("aria-sort") == "descending"
    assert more_rows_follow_their_runs(page)
    page.locator('section[data-dataset="binarized-mnist-static"] th', has_text="Model / run").click()
    names = page.eval_on_selector_all('section[data-dataset="binarized-mnist-static"] tbody tr.entry',
                                      "rows => rows.map(r => r.cells[1].getAttribute('data-sort'))")
    assert names == sorted(names, key=str.lower) and names != sorted(names, key=str.lower, reverse=True)
    page.locator('section[data-dataset="binarized-mnist-static"] th', has_text="NLL (nats)").click()  # best first
    nats = [v for v in column_values(page, "binarized-mnist-static", "NLL (nats)") if v is not None]
    assert nats == sorted(nats) and nats[0] == 79.20

    # Filters: family hides other families' rows, dataset hides other sections.
    page.select_option("#filter-family", "gan")
    families = page.eval_on_selector_all("tr.entry", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.family)")
    assert families and set(families) == {"gan"}
    assert more_rows_follow_their_runs(page)
    assert set(visible_runs(page, "cifar10")) >= {"dcgan_cifar10", "wgan_gp_cifar10"}
    page.select_option("#filter-family", "")
    page.select_option("#filter-dataset", "binarized-mnist-static")
    shown = page.eval_on_selector_all("section.dataset", "s => s.filter(x => !x.hidden).map(x => x.dataset.dataset)")
    assert shown == ["binarized-mnist-static"]
    page.uncheck("#filter-published")
    assert page.locator('section[data-dataset="binarized-mnist-static"] tr.published:visible').count() == 0
    page.check("#filter-published")
    page.select_option("#filter-dataset", "")

    assert more_rows_follow_their_runs(page)

    # Plots are drawn, one point per run that has both coordinates.
    assert page.locator('section[data-dataset="cifar10"] svg.plot').count() == 3
    assert page.locator('section[data-dataset="cifar10"] svg.plot').first.locator("circle").count() == 4

    # A click on a grid opens it large.
    page.locator(".thumb").first.click()  # the visible part of the grid: its first row
    assert page.locator("#lightbox").is_visible()
    assert page.eval_on_selector("#lightbox img", "i => i.naturalWidth") > 0
    page.keyboard.press("Escape")
    assert not page.locator("#lightbox").is_visible()

    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "leaderboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("LEADERBOARD_SCREENSHOT"):
        target = request.config.invocation_params.dir / os.environ["LEADERBOARD_SCREENSHOT"]  # relative to pytest's cwd
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    assert problems == []
    page.close()


PAYLOADS = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", '"><svg onload=alert(1)>')


def test_payloads_render_as_text(browsers, tmp_path, monkeypatch):
    records = realistic_records(tmp_path)[:2]
    records[0]["run_name"] = PAYLOADS[0]
    records[0]["model"] = PAYLOADS[1]
    records[0]["config"] = {"note": "</script><script>alert(2)</script>"}
    records[0]["wandb_url"] = "javascript:alert(3)"
    records[1]["run_name"] = PAYLOADS[2]
    records[1]["dataset"] = PAYLOADS[1]
    records[1]["protocol"]["extractor"] = PAYLOADS[0]
    page, problems = open_page(chromium(browsers), build_page(tmp_path, records, monkeypatch))

    assert problems == []  # no alert() dialog, no script error, no request for "x"
    assert page.evaluate("document.scripts.length") == 1
    assert page.locator("img[onerror], svg[onload], img[src='x']").count() == 0
    assert page.locator('a[href^="javascript:"]').count() == 0
    assert page.get_by_text(PAYLOADS[0], exact=True).first.is_visible()
    assert page.locator("span.model", has_text=PAYLOADS[1]).first.is_visible()
    assert page.locator("h2", has_text=PAYLOADS[1]).is_visible()
    # The filter is keyed by the data set identity, which the record schema restricts to [a-z0-9._-].
    assert page.locator("select#filter-dataset option[value='cifar10']").count() == 1
    page.close()


def test_samples_and_details_are_legible(browsers, tmp_path, monkeypatch):
    records = with_training_grids(tmp_path, realistic_records(tmp_path))
    long = records[1]  # a run without training grids
    assert long["run_name"] not in TRAINING_STEPS
    long["checkpoint"] = "runs/" + "a_folder_with_a_very_long_name_" * 10 + "/checkpoints/last.ckpt"
    long["config"]["note"] = "x" * 400  # one unbroken word, longer than any screen
    page, problems = open_page(chromium(browsers), build_page(tmp_path, records, monkeypatch))

    # Each thumbnail: whole grid pixels at least 3x, crisp, seen through a window one row of images high.
    thumbs = page.eval_on_selector_all("img.grid", """imgs => imgs.map(i => {
        const view = i.parentElement.getBoundingClientRect(), r = i.getBoundingClientRect();
        return {run: i.closest("tr").dataset.run, w: r.width, h: r.height, nw: i.naturalWidth, nh: i.naturalHeight,
                viewW: view.width, viewH: view.height, rendering: getComputedStyle(i).imageRendering};
    })""")
    assert len(thumbs) == len(records)
    shapes = {r["run_name"]: r["image_shape"] for r in records}
    for t in thumbs:
        scale = t["w"] / t["nw"]
        assert scale >= 3 and t["h"] == t["nh"] * scale and t["rendering"] == "pixelated", t
        tile = shapes[t["run"]][1]
        assert t["viewH"] <= (tile + 4) * scale + 2, t  # one row of images (and the window's border)
        assert t["viewW"] >= 2 * tile * scale, t  # at least two whole images of it

    # Samples over training: the saved grids, first to last in order, under the run they belong to.
    strips = page.eval_on_selector_all("tr.more", """rows => Object.fromEntries(rows.map(r => [r.dataset.run,
        Array.from(r.querySelectorAll("figure")).map(f => [parseInt(f.dataset.step), f.textContent,
            f.querySelector("img").naturalWidth])]))""")
    for run, steps in TRAINING_STEPS.items():
        shown = [s for s, _, _ in strips[run]]
        assert shown[0] == steps[0] and shown[-1] == steps[-1] and shown == sorted(shown) and len(shown) >= 3, run
        assert all(caption == f"step {s:,}" and width > 0 for s, caption, width in strips[run])
    assert all(not strips[r["run_name"]] for r in records if r["run_name"] not in TRAINING_STEPS)

    # The details panel opens in full width and wraps: nothing in it scrolls or is cut off sideways.
    for summary in page.locator("details.run-details > summary").all():
        summary.click()
    panels = page.eval_on_selector_all("details.run-details", """ds => ds.map(d => {
        const section = d.closest("section").getBoundingClientRect(), box = d.getBoundingClientRect();
        return {open: d.open, parts: [d, ...d.querySelectorAll("dl, dd, pre")].map(e => [e.scrollWidth, e.clientWidth]),
                right: box.right, sectionRight: section.right, width: box.width};
    })""")
    assert len(panels) == len(records)
    for p in panels:
        assert p["open"] and all(scroll <= client for scroll, client in p["parts"]), p
        assert p["right"] <= p["sectionRight"] and p["width"] > 600, p
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.get_by_text(long["checkpoint"]).is_visible()
    assert problems == []
    page.close()


def test_paired_differences_and_conditional_section_in_browser(browsers, tmp_path, monkeypatch):
    """Digits runs with per-image NLL: the section shows each run's paired difference to its leader (sortable), the
    class-conditional run sits in its own, marked section, and the data-set filter shows both sections."""
    from lightning_gen.leaderboard.paired import encode

    rng = np.random.default_rng(0)
    images = rng.normal(40.0, 8.0, 300)
    records = []
    for i, (name, model, shift, conditional) in enumerate([("pixelcnn_digits", "PixelCNN", 0.0, False),
                                                           ("row_lstm_digits", "RowLSTM", 1.0, False),
                                                           ("gated_pixelcnn_digits", "GatedPixelCNN", -3.0, True)]):
        per_image = images + shift + rng.normal(0, 0.5, 300)
        r = _record(name, model, "autoregressive", "Digits", (1, 8, 8),
                    {"nll_nats": float(per_image.mean()), "nll_nats_se": float(per_image.std(ddof=1) / 300 ** 0.5)},
                    grid=_digit_grid(tmp_path / f"g{i}.png", 20 + i, False, size=8), estimator="exact")
        r["protocol"].update(num_test_images=300, conditional=conditional,
                             label_distribution="balanced (sample index % 10)" if conditional else None)
        r["nll_per_image"] = encode(per_image, split="0123456789ab")
        records.append(r)
    page, problems = open_page(chromium(browsers), build_page(tmp_path, records, monkeypatch))
    ids = page.eval_on_selector_all('section[data-dataset="digits-8bit"]', "s => s.map(x => x.id)")
    assert ids == ["ds-digits-8bit", "ds-digits-8bit-conditional"]
    assert page.locator("#ds-digits-8bit-conditional .badge.cond").is_visible()
    assert page.eval_on_selector_all("#ds-digits-8bit tbody tr.entry", "r => r.map(x => x.dataset.run)") == [
        "pixelcnn_digits", "row_lstm_digits"]  # the conditional run, 3 nats better, is not ranked among them
    diffs = column_values(page, "digits-8bit", "Δ leader")
    assert diffs[0] is None and 0.8 < diffs[1] < 1.2
    assert "±" in page.locator("#ds-digits-8bit td.diff").nth(1).inner_text()
    page.locator("#ds-digits-8bit th", has_text="Δ leader").click()
    assert more_rows_follow_their_runs(page)
    page.select_option("#filter-dataset", "digits-8bit")
    shown = page.eval_on_selector_all("section.dataset", "s => s.filter(x => !x.hidden).map(x => x.id)")
    assert shown == ["ds-digits-8bit", "ds-digits-8bit-conditional"]
    assert problems == []
    page.close()
