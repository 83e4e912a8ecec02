"""bfloat16 against float32 extraction on the smoke fixtures: the report's structure and its control."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from sdfuse.protocol.metrics import AGGREGATES, SPAIR_ALPHAS
from sdfuse.tables.precision import MAX_PCK_DELTA, MIN_IDENTICAL_NN, compare_records, precision_parity


def _check_structure(report: dict, reference: str, candidate: str) -> None:
    json.dumps(report)                                   # JSON-ready as the benchmark stores it
    assert (report["profile"], report["reference_dtype"], report["candidate_dtype"]) == ("smoke", reference, candidate)
    assert report["pairs"] == 60 and report["images"] == 12
    assert report["forward_passes"] == {"reference": {"sd": 12, "dino": 12}, "candidate": {"sd": 12, "dino": 12}}
    assert report["tolerance"] == {"max_abs_pck_delta": MAX_PCK_DELTA, "min_identical_nn_fraction": MIN_IDENTICAL_NN}
    assert sorted(report["methods"]) == ["Fuse", "SD"]
    for method in report["methods"].values():
        assert method["keypoints"] > 100
        assert 0.0 <= method["identical_nn_fraction"] <= 1.0
        assert {(p["alpha"], p["aggregate"]) for p in method["pck"]} == {(a, g) for a in SPAIR_ALPHAS for g in AGGREGATES}
        for p in method["pck"]:
            assert 0.0 <= p["reference"] <= 100.0 and 0.0 <= p["candidate"] <= 100.0
            assert p["delta"] == pytest.approx(p["candidate"] - p["reference"], abs=1e-12)
        assert method["max_abs_pck_delta"] == max(abs(p["delta"]) for p in method["pck"])
    assert report["min_identical_nn_fraction"] == min(m["identical_nn_fraction"] for m in report["methods"].values())
    assert report["max_abs_pck_delta"] == max(m["max_abs_pck_delta"] for m in report["methods"].values())
    assert report["within_tolerance"] == (report["max_abs_pck_delta"] <= MAX_PCK_DELTA
                                          and report["min_identical_nn_fraction"] >= MIN_IDENTICAL_NN)


def test_float32_control_is_exactly_identical(smoke_root, tmp_path):
    # two separate caches: both sides really extract, so this also checks that extraction is deterministic
    report = precision_parity("smoke", "float32", "float32", reference_cache=tmp_path / "a",
                              candidate_cache=tmp_path / "b")
    _check_structure(report, "float32", "float32")
    for method in report["methods"].values():
        assert method["identical_nn_fraction"] == 1.0
        assert all(p["delta"] == 0.0 for p in method["pck"])
    assert report["max_abs_pck_delta"] == 0.0 and report["within_tolerance"] is True


def test_bfloat16_report_has_the_same_structure(smoke_root, tmp_path):
    report = precision_parity("smoke", "float32", "bfloat16", reference_cache=tmp_path / "a",
                              candidate_cache=tmp_path / "b")
    _check_structure(report, "float32", "bfloat16")


def test_compare_records_counts_changed_neighbours():
    base = pd.DataFrame({"method": ["SD"] * 4, "pair": [0, 0, 1, 1], "kp": [0, 1, 0, 1], "category": ["a", "a", "b", "b"],
                         "error": [1.0, 50.0, 1.0, 1.0], "threshold": [100.0] * 4, "pred_index": [3, 4, 5, 6]})
    moved = base.assign(pred_index=[3, 9, 5, 6], error=[1.0, 1.0, 1.0, 1.0])
    out = compare_records(base, moved, alphas=(0.10,))["SD"]
    assert out["identical_nn_fraction"] == 0.75
    pooled = next(p for p in out["pck"] if p["aggregate"] == "keypoint_pooled")
    assert (pooled["reference"], pooled["candidate"], pooled["delta"]) == (75.0, 100.0, 25.0)
    with pytest.raises(ValueError):
        compare_records(base, moved.iloc[:3])
