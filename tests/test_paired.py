"""Honest comparisons on the board: paired NLL ties on shared test images, the right ± in each rule, KID/IS spreads
across draws, and class-conditional numbers ranked apart from unconditional ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lightning_gen.leaderboard.dashboard import ranks_text
from lightning_gen.leaderboard.html import render_dashboard
from lightning_gen.leaderboard.paired import PAIRED_RULE, decode, encode, paired_difference
from lightning_gen.leaderboard.ranking import (build_entries, leader_difference, rank, ranked_by_dataset, spread,
                                               spread_kind, tie_rule)
from lightning_gen.leaderboard.record import validate_record
from lightning_gen.leaderboard.store import Store, read_records
from test_leaderboard import gan_record, make_record

N = 2000


def nll_record(name: str, per_image: np.ndarray, *, split: str = "abc123def456", conditional: bool | None = False,
               **overrides) -> dict:
    """A digits-8bit likelihood record whose NLL and standard error are those of ``per_image``."""
    mean, se = float(per_image.mean()), float(per_image.std(ddof=1) / math.sqrt(per_image.size))
    protocol = {"num_test_images": int(per_image.size), "conditional": conditional,
                "label_distribution": "balanced (sample index % 10)" if conditional else None}
    return make_record(name, dataset="Digits", dataset_id="digits-8bit", image_shape=[1, 8, 8],
                       metrics={"nll_nats": mean, "nll_nats_se": se, "nll_bpd": None, "nll_bpd_se": None},
                       protocol=protocol, **{"nll_per_image": encode(per_image, split=split), **overrides})


@pytest.fixture
def images():
    """Per-image NLL of a shared test set: most of the variation is the image (an easy digit is easy for all)."""
    return np.random.default_rng(0).normal(150.0, 25.0, N)


def test_encoding_round_trips_in_float32_and_compactly(images):
    blob = encode(images, split="s")
    assert np.array_equal(decode(blob), images.astype(np.float32).astype(np.float64))
    assert blob["count"] == N and blob["split"] == "s"
    assert len(blob["data"]) < 6 * N  # about 4 bytes an image, base64-encoded


def test_correlated_runs_are_ranked_apart_where_their_intervals_overlap(images):
    """Two seeds: 0.2 nats apart, each ± 0.56 (test-set SE), but correlated per image (paired SE ~0.02): the old
    interval rule tied them, the paired rule ranks them, and the page says why."""
    noise = np.random.default_rng(1).normal(0, 1.0, (2, N))
    a, b = images + noise[0], images + 0.2 + noise[1]
    entries = build_entries([nll_record("a", a), nll_record("b", b)], include_published=False)
    mean, se = paired_difference(entries[1].record["nll_per_image"], entries[0].record["nll_per_image"])
    assert mean == pytest.approx(0.2, abs=0.1) and se < 0.05 < spread(entries[0], "nll_nats") / 10
    assert [r for r, _ in rank(entries, "nll_nats")] == [1, 2]
    assert tie_rule(entries[0], entries[1], "nll_nats") == PAIRED_RULE
    ordered = rank(entries, "nll_nats")
    assert leader_difference(entries[1], ordered, "nll_nats") == pytest.approx((mean, se))
    assert leader_difference(entries[0], ordered, "nll_nats") is None  # the leader itself
    assert "Δ leader" in render_dashboard(entries)


def test_paired_tie_when_the_interval_of_the_difference_contains_zero(images):
    noise = np.random.default_rng(2).normal(0, 5.0, (2, N))
    noise -= noise.mean(axis=1, keepdims=True)
    a, b = images + noise[0], images + 0.05 + noise[1]  # 0.05 apart, paired SE ~0.16
    entries = build_entries([nll_record("a", a), nll_record("b", b)], include_published=False)
    assert [r for r, _ in rank(entries, "nll_nats")] == [1, 1]


def test_runs_on_different_test_splits_and_published_numbers_keep_the_interval_rule(images):
    noise = np.random.default_rng(3).normal(0, 1.0, (2, N))
    records = [nll_record("a", images + noise[0]), nll_record("b", images + 0.2 + noise[1], split="another")]
    entries = build_entries(records, include_published=False)
    assert "interval" in tie_rule(entries[0], entries[1], "nll_nats")
    assert [r for r, _ in rank(entries, "nll_nats")] == [1, 1]  # unpaired: ± 0.56 each, overlapping
    legacy = build_entries([{**records[0], "nll_per_image": None}, records[1]], include_published=False)
    assert "interval" in tie_rule(legacy[0], legacy[1], "nll_nats")


def test_bits_per_dim_differences_are_scaled_from_nats(images):
    noise = np.random.default_rng(4).normal(0, 1.0, (2, N))
    records = [nll_record("a", images + noise[0]), nll_record("b", images + 0.3 + noise[1])]
    for r in records:
        r["metrics"]["nll_bpd"] = r["metrics"]["nll_nats"] / (64 * math.log(2))
    entries = build_entries(records, include_published=False)
    ordered = rank(entries, "nll_bpd")
    nats = leader_difference(entries[1], rank(entries, "nll_nats"), "nll_nats")
    bpd = leader_difference(entries[1], ordered, "nll_bpd")
    assert bpd == pytest.approx((nats[0] / (64 * math.log(2)), nats[1] / (64 * math.log(2))))


def test_each_plus_minus_says_what_it_is(images):
    nll = build_entries([nll_record("a", images)], include_published=False)[0]
    assert spread_kind(nll, "nll_nats") == f"SE over {N:,} test images"
    one_draw = build_entries([gan_record("g", 30.0, metrics={"fid_std": 0.5})], include_published=False)[0]
    assert spread(one_draw, "kid_mean") == 0.001  # kid_std: the one draw's subsets
    assert spread_kind(one_draw, "kid_mean") == "within one draw: KID subsets"
    assert spread_kind(one_draw, "is_mean") == "within one draw: IS splits"
    assert spread_kind(one_draw, "fid") == "bootstrap std, one draw"
    draws = build_entries([gan_record("g", 30.0, metrics={"fid_std": 0.7, "kid_mean_std": 0.004,
                                                            "is_mean_std": 0.3})], include_published=False)[0]
    assert spread(draws, "kid_mean") == 0.004 and spread(draws, "is_mean") == 0.3  # across draws, used to rank
    assert {spread_kind(draws, k) for k in ("fid", "kid_mean", "is_mean")} == {"std over draws"}
    flagged = build_entries([gan_record("g", 30.0, metrics={"fid_std": 0.7}, protocol={"fid_spread": "draws"})],
                            include_published=False)[0]
    assert spread_kind(flagged, "fid") == "std over draws"
    seeds = build_entries([nll_record(f"a_seed{s}", images + s, config={"seed_everything": s}) for s in (1, 2, 3)],
                          include_published=False)
    assert len(seeds) == 1 and spread_kind(seeds[0], "nll_nats") == "std over 3 seeds"
    assert spread(seeds[0], "nll_nats") == pytest.approx(1.0)


def test_kid_ranking_uses_the_spread_across_draws():
    """Within one draw KID ± 0.001 separates the two; across draws (± 0.004) they tie."""
    records = [gan_record("a", 30.0, metrics={"kid_mean": 0.030}), gan_record("b", 31.0, metrics={"kid_mean": 0.033})]
    entries = build_entries(records, include_published=False)
    assert [r for r, _ in rank(entries, "kid_mean")] == [1, 2]
    for r in records:
        r["metrics"]["kid_mean_std"] = 0.004
    assert [r for r, _ in rank(build_entries(records, include_published=False), "kid_mean")] == [1, 1]


def test_conditional_rows_are_ranked_apart(images, tmp_path):
    """A class-conditional model's log p(x|y) never takes a rank from unconditional models: it is ranked in its own
    section, marked on the page; a record from before the protocol field is known conditional by its config."""
    cond_config = {"model": {"class_path": "lightning_gen.models.GatedPixelCNN",
                             "init_args": {"conditional": True}}}
    records = [nll_record("uncond", images), nll_record("cond", images - 10.0, conditional=True),
               nll_record("old_cond", images - 20.0, conditional=None, config=cond_config)]
    with Store(tmp_path / "lb.sqlite") as store:
        store.add_many(records)
        stored = store.records()
    assert stored[1]["protocol"]["label_distribution"] == "balanced (sample index % 10)"
    entries = build_entries(stored, include_published=False)
    assert [e.conditional for e in entries] == [False, True, True]
    ranked = ranked_by_dataset(entries, None)
    assert [(r, e.label) for r, e in ranked] == [(1, "uncond"), (1, "old_cond"), (2, "cond")]
    page = render_dashboard(entries)
    assert 'id="ds-digits-8bit-conditional"' in page and "class-conditional</span>" in page
    assert "digits-8bit (class-conditional)" in ranks_text(entries)


def test_per_image_values_survive_csv_export(images, tmp_path):
    record = nll_record("a", images)
    with Store(tmp_path / "lb.sqlite") as store:
        store.add(record)
        store.export_csv(tmp_path / "out.csv")
    [back] = read_records(tmp_path / "out.csv")
    assert back["nll_per_image"] == record["nll_per_image"]


def test_a_malformed_per_image_blob_is_refused(images):
    with pytest.raises(ValueError, match="nll_per_image"):
        validate_record(nll_record("a", images, nll_per_image={"split": "s", "data": 3}))


def test_demo_names_conditional_runs_without_an_unconditional_twin(images):
    from lightning_gen.app.demo import only_conditional

    def config(conditional: bool, width: int) -> dict:
        return {"model": {"class_path": "lightning_gen.models.GAN", "init_args": {"g_width": width,
                                                                                  "conditional": conditional}}}
    records = [nll_record("dcgan_cond", images, conditional=None, config=config(True, 64)),
               nll_record("mlp_gan", images, conditional=None, config=config(False, 32)),
               nll_record("pixelcnn_cond", images, conditional=True, config=config(True, 16)),
               nll_record("pixelcnn", images, conditional=False, config=config(False, 16))]
    assert only_conditional(records) == [("dcgan_cond", "digits-8bit")]
