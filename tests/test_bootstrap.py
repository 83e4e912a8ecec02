"""Bootstrap intervals over pairs resampled within categories: known answers, an independent naive
bootstrap, determinism, and the intervals of TSS means and of the outcome analysis."""
import numpy as np
import pandas as pd
import pytest

from sdfuse.errors import ConfigError
from sdfuse.evaluation.tss import tss_summary
from sdfuse.protocol import bootstrap
from sdfuse.protocol.metrics import AGGREGATES, pck_table
from sdfuse.protocol.outcomes import OUTCOME_CLASSES, outcome_tables


def records_of(pairs):
    """Keypoint records from [(category, [hit, …]), …]: error 0.5 (hit) or 5 (miss), threshold 10."""
    rows = [{"category": category, "pair": pair, "error": 0.5 if hit else 5.0, "threshold": 10.0}
            for pair, (category, hits) in enumerate(pairs) for hit in hits]
    return pd.DataFrame(rows)


def aggregate_rows(table, alpha=0.1):
    return table[(table["category"] == "all") & np.isclose(table["alpha"], alpha)].set_index("aggregate")


def test_equal_pck_in_every_pair_gives_zero_width_intervals():
    records = records_of([("A", [1, 0]), ("A", [1, 1, 0, 0]), ("B", [0, 1]), ("B", [1, 0]), ("B", [0, 0, 1, 1])])
    table = pck_table(records, alphas=(0.1,), resamples=200)
    assert (table["value"] == 50.0).all()
    assert (table["ci_low"] == 50.0).all() and (table["ci_high"] == 50.0).all()


def test_two_pairs_enumerated():
    # One category, pair 0: 1 of 2 correct, pair 1: 3 of 3. The four equally likely resamples (0,0), (0,1),
    # (1,0), (1,1) give keypoint-pooled PCK 50, 80, 80, 100 and per-image PCK 50, 75, 75, 100.
    records = records_of([("A", [1, 0]), ("A", [1, 1, 1])])
    values = np.array([[2, 1], [3, 3]], float)                      # [keypoints, hits] per pair
    _, point, replicates = bootstrap.stratified_sums(values, ["A", "A"], resamples=4000, seed=1)
    assert point.tolist() == [[5, 4]]
    pooled = 100 * replicates[:, 0, 1] / replicates[:, 0, 0]
    frequencies = {v: np.mean(np.isclose(pooled, v)) for v in (50, 80, 100)}
    assert sum(frequencies.values()) == 1.0
    assert frequencies[50] == pytest.approx(0.25, abs=0.03) and frequencies[80] == pytest.approx(0.5, abs=0.03)
    assert frequencies[100] == pytest.approx(0.25, abs=0.03)
    table = aggregate_rows(pck_table(records, alphas=(0.1,), resamples=1000))
    # each extreme has probability 1/4 > 2.5 %, so the 95 % interval is exactly [min, max]
    assert table.loc["keypoint_pooled", ["value", "ci_low", "ci_high"]].tolist() == [80.0, 50.0, 100.0]
    assert table.loc["per_image", ["value", "ci_low", "ci_high"]].tolist() == [75.0, 50.0, 100.0]


def test_resampling_stays_within_categories():
    # Category A has one pair: it is drawn every time, so its PCK never moves; B's does.
    records = records_of([("A", [1, 0, 0]), ("B", [1, 1]), ("B", [0, 0])])
    table = pck_table(records, alphas=(0.1,), resamples=500)
    per_category = table[table["aggregate"] == "per_category"].set_index("category")
    assert per_category.loc["A", ["ci_low", "ci_high"]].tolist() == [pytest.approx(100 / 3)] * 2
    assert per_category.loc["B", ["ci_low", "ci_high"]].tolist() == [0.0, 100.0]
    weighted = aggregate_rows(table).loc["pair_weighted"]            # weights stay (1, 2): (100/3 + 2·B)/3
    assert weighted["ci_low"] == pytest.approx(100 / 9) and weighted["ci_high"] == pytest.approx((100 / 3 + 200) / 3)


def naive_bootstrap(records, alpha, resamples, seed):
    """Record-level bootstrap written out pair by pair, drawing as :mod:`sdfuse.protocol.bootstrap` documents it:
    one default_rng(seed), categories in sorted order, for each n pairs an (resamples, n) integer draw."""
    rng = np.random.default_rng(seed)
    pairs = {c: sorted(records.loc[records["category"] == c, "pair"].unique()) for c in sorted(records["category"].unique())}
    draws = {c: rng.integers(0, len(p), size=(resamples, len(p))) for c, p in pairs.items()}
    out = {name: [] for name in AGGREGATES}
    for b in range(resamples):
        parts = []
        for c, p in pairs.items():
            for slot, i in enumerate(draws[c][b]):
                part = records[records["pair"] == p[i]].assign(draw=f"{c}-{slot}")
                parts.append(part)
        sample = pd.concat(parts)
        hit = sample["error"] < alpha * sample["threshold"]
        per_cat = hit.groupby(sample["category"]).mean()
        pairs_per_cat = sample.groupby("category")["draw"].nunique()
        out["category_mean"].append(100 * per_cat.mean())
        out["pair_weighted"].append(100 * np.average(per_cat, weights=pairs_per_cat[per_cat.index]))
        out["keypoint_pooled"].append(100 * hit.mean())
        out["per_image"].append(100 * hit.groupby(sample["draw"]).mean().mean())
    return {name: np.percentile(v, [2.5, 97.5]) for name, v in out.items()}


def test_vectorised_bootstrap_equals_a_naive_one():
    rng = np.random.default_rng(3)
    pairs = [(c, rng.integers(0, 2, size=rng.integers(1, 6)).tolist()) for c in "XYZ" for _ in range(rng.integers(2, 6))]
    records = records_of(pairs)
    table = aggregate_rows(pck_table(records, alphas=(0.1,), resamples=60, seed=11))
    naive = naive_bootstrap(records, 0.1, 60, 11)
    for name in AGGREGATES:
        assert table.loc[name, ["ci_low", "ci_high"]].tolist() == pytest.approx(naive[name].tolist()), name


def test_interval_contains_the_estimate_and_is_deterministic():
    rng = np.random.default_rng(5)
    pairs = [(c, (rng.random(rng.integers(3, 12)) < p).tolist()) for c, p in zip("ABCDEF", np.linspace(0.1, 0.9, 6))
             for _ in range(20)]
    records = records_of(pairs)
    table = pck_table(records, alphas=(0.1,))
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    assert (table["ci_high"] - table["ci_low"] > 0).all()
    pd.testing.assert_frame_equal(table, pck_table(records, alphas=(0.1,)))
    other = pck_table(records, alphas=(0.1,), seed=1)
    assert not np.allclose(other["ci_low"], table["ci_low"]) and np.allclose(other["value"], table["value"])


def test_rows_of_one_table_are_resampled_jointly():
    # m2 gets right exactly the keypoints m1 gets wrong. Drawn on the same pairs, m2's PCK is 100 minus
    # m1's on every resample, so its interval is m1's mirrored; separate draws would break this.
    pairs = [("A", [1, 0, 0]), ("A", [1, 1]), ("A", [0]), ("B", [1]), ("B", [0, 1, 1, 1]), ("B", [0, 0])]
    m1 = records_of(pairs)
    m2 = m1.assign(error=np.where(m1["error"] < 1, 5.0, 0.5))
    table = pck_table(pd.concat([m1.assign(method="m1"), m2.assign(method="m2")]), alphas=(0.1,), by=("method",),
                      resamples=300)
    rows = table[table["category"] == "all"].set_index(["method", "aggregate"])
    for name in AGGREGATES:
        one, two = rows.loc[("m1", name)], rows.loc[("m2", name)]
        assert two["value"] == pytest.approx(100 - one["value"])
        assert (two["ci_low"], two["ci_high"]) == (pytest.approx(100 - one["ci_high"]), pytest.approx(100 - one["ci_low"]))


def test_zero_resamples_and_bad_arguments():
    table = pck_table(records_of([("A", [1, 0])]), alphas=(0.1,), resamples=0)
    assert table["ci_low"].isna().all() and table["ci_high"].isna().all()
    with pytest.raises(ConfigError, match="resamples"):
        bootstrap.stratified_sums(np.ones((2, 1)), ["a", "a"], resamples=-1)
    with pytest.raises(ConfigError, match="level"):
        bootstrap.interval(np.ones((3, 1)), level=1.5)


def test_tss_means_resample_pair_folders_within_subsets():
    # Subset S: folder f1 scores (20, 40) in its two directions, f2 (60, 80): folder means 30 and 70, so
    # resampled subset means are 30, 50, 70 and the interval is [30, 70]. Subset T has one folder.
    rows = [("S", "f1", "12", 20.0), ("S", "f1", "21", 40.0), ("S", "f2", "12", 60.0), ("S", "f2", "21", 80.0),
            ("T", "g1", "12", 10.0), ("T", "g1", "21", 30.0)]
    per_sample = pd.DataFrame([{"subset": s, "pair_dir": f, "direction": d, "method": "Fuse", "form": "paper",
                                "alpha": 0.05, "value": v} for s, f, d, v in rows])
    summary = tss_summary(per_sample, samples=[], folder_counts={"S": 2, "T": 1}, resamples=1000).set_index("subset")
    assert summary.loc["S", ["value", "ci_low", "ci_high"]].tolist() == [50.0, 30.0, 70.0]
    assert summary.loc["T", ["value", "ci_low", "ci_high"]].tolist() == [20.0, 20.0, 20.0]
    # Avg. = (2·S + T)/3 on every resample
    assert summary.loc["Avg.", ["value", "ci_low", "ci_high"]].tolist() == pytest.approx([40.0, 80 / 3, 160 / 3])


def outcome_records(pairs):
    """Outcome records: per pair (category, [(class bits, rel_SD_gt), …]); other distances 0.5."""
    rows = []
    for pair, (category, keypoints) in enumerate(pairs):
        for bits, rel in keypoints:
            errors = {m: 0.5 if bit == "1" else 5.0 for m, bit in zip(("SD", "DINO", "Fuse"), bits)}
            rows.append({"category": category, "pair": pair, "threshold": 10.0,
                         **{f"error_{m}": e for m, e in errors.items()}, "rel_SD_gt": rel, "rel_SD_at_DINO": 0.5,
                         "rel_DINO_gt": 0.5, "rel_DINO_at_SD": 0.5})
    return pd.DataFrame(rows)


def test_outcome_shares_probabilities_and_distances_with_intervals():
    # Category A: pair 0 = {011, 111}, pair 1 = {011, 111}: identical pairs, so A's shares never move.
    # Category B: pair 2 = {000}, pair 3 = {101}.
    records = outcome_records([("A", [("011", 0.2), ("111", 0.0)]), ("A", [("011", 0.4), ("111", 0.0)]),
                               ("B", [("000", 1.0)]), ("B", [("101", 0.0)])])
    out = outcome_tables(records, resamples=1000)
    table6 = out["table6"].set_index(["category", "outcome"])
    assert table6.loc[("all", "011"), "value"] == pytest.approx(100 * 2 / 6)
    assert table6.loc[("A", "011"), ["value", "ci_low", "ci_high"]].tolist() == [50.0, 50.0, 50.0]
    assert table6.loc[("B", "101"), ["value", "ci_low", "ci_high"]].tolist() == [50.0, 0.0, 100.0]
    assert table6.xs("all").loc[list(OUTCOME_CLASSES), "value"].sum() == pytest.approx(100)
    # pooled share of 011: A always contributes 2 of its 4 keypoints, B 0 of 2, so it is fixed at 2/6
    assert table6.loc[("all", "011"), ["ci_low", "ci_high"]].tolist() == pytest.approx([100 * 2 / 6] * 2)
    fig2 = out["fig2"].set_index("quantity")
    # P(Fuse ✓ | SD ✓, DINO ✗) = 101 / (100 + 101): 1 whenever B's pair 3 is drawn, undefined otherwise
    assert fig2.loc["P(Fuse ✓ | SD ✓, DINO ✗)", ["value", "ci_low", "ci_high"]].tolist() == [100.0, 100.0, 100.0]
    assert fig2.loc["P(SD ✓)", "value"] == pytest.approx(100 * 3 / 6)
    table7 = out["table7"].set_index(["scenario", "features", "match"])
    assert table7.loc[("011", "SD", "correct match"), "value"] == pytest.approx(0.3)
    low, high = table7.loc[("011", "SD", "correct match"), ["ci_low", "ci_high"]]
    assert (low, high) == (pytest.approx(0.2), pytest.approx(0.4))   # A's pairs: (0.2, 0.2), (0.2, 0.4), (0.4, 0.4)
    assert (out["table6"]["ci_low"] <= out["table6"]["value"] + 1e-12).all()
