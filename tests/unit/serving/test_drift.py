import math

import numpy as np
import pandas as pd
import pytest

from modeldeploy.serving.drift import FeatureWindow, psi
from modeldeploy.tracking.baseline import build_drift_baseline

RNG = np.random.default_rng(7)


def baseline_frame(n: int = 5000) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": RNG.normal(0, 1, n),
            "y": RNG.uniform(0, 10, n),
            "color": RNG.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
        }
    )


def by_name(window: FeatureWindow) -> dict[str, object]:
    return {s.name: s for s in window.snapshot()}


def test_psi_is_zero_for_identical_distributions() -> None:
    assert psi([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]) == pytest.approx(0.0)


def test_psi_matches_the_textbook_formula() -> None:
    e, a = [0.5, 0.5], [0.7, 0.3]
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert psi(e, a) == pytest.approx(expected)


def test_psi_of_an_empty_bin_is_large_but_finite() -> None:
    value = psi([0.5, 0.5], [1.0, 0.0])
    assert math.isfinite(value) and value > 1


def test_window_psi_stays_low_on_baseline_like_data() -> None:
    base = build_drift_baseline(baseline_frame())
    w = FeatureWindow([], base, size=2000, min_rows=100)
    w.observe(baseline_frame(2000))
    snaps = by_name(w)
    assert all(snaps[n].psi is not None and snaps[n].psi < 0.05 for n in ("x", "y", "color"))


def test_window_psi_rises_on_shifted_feature_only() -> None:
    base = build_drift_baseline(baseline_frame())
    w = FeatureWindow([], base, size=2000, min_rows=100)
    shifted = baseline_frame(2000)
    shifted["x"] = shifted["x"] + 2.0
    w.observe(shifted)
    snaps = by_name(w)
    assert snaps["x"].psi > 1.0
    assert snaps["y"].psi < 0.05


def test_window_slides_old_rows_out() -> None:
    base = build_drift_baseline(baseline_frame())
    w = FeatureWindow([], base, size=500, min_rows=100)
    shifted = baseline_frame(500)
    shifted["x"] = shifted["x"] + 3
    w.observe(shifted)
    assert by_name(w)["x"].psi > 1
    for _ in range(50):  # 10-row batches push every shifted row out
        w.observe(baseline_frame(10))
    assert len(w) == 500
    assert by_name(w)["x"].psi < 0.1
    assert w.counts.sum() == 500 * len(w.names)


def test_window_counts_equal_a_recount_after_many_small_batches() -> None:
    base = build_drift_baseline(baseline_frame())
    w = FeatureWindow([], base, size=37, min_rows=1)
    frames = [baseline_frame(int(k)) for k in RNG.integers(1, 9, 40)]
    for f in frames:
        w.observe(f)
    last = pd.concat(frames).tail(37)
    fresh = FeatureWindow([], base, size=37, min_rows=1)
    fresh.observe(last)
    assert np.array_equal(w.counts, fresh.counts)


def test_no_psi_below_min_rows() -> None:
    base = build_drift_baseline(baseline_frame())
    w = FeatureWindow([], base, size=1000, min_rows=100)
    w.observe(baseline_frame(99))
    assert by_name(w)["x"].psi is None


def test_missing_values_and_absent_columns_count_as_missing() -> None:
    base = build_drift_baseline(baseline_frame())
    w = FeatureWindow(["z"], base, size=100, min_rows=1)
    f = baseline_frame(10)
    f.loc[:4, "x"] = np.nan
    f["color"] = f["color"].astype(object)
    f.loc[:1, "color"] = None
    f["z"] = [np.nan, np.nan, np.nan] + [1.0] * 7
    w.observe(f.drop(columns=["y"]))
    snaps = by_name(w)
    assert snaps["x"].missing_ratio == pytest.approx(0.5)
    assert snaps["y"].missing_ratio == pytest.approx(1.0)
    assert snaps["color"].missing_ratio == pytest.approx(0.2)
    assert snaps["z"].missing_ratio == pytest.approx(0.3)  # signature-only feature, no PSI
    assert snaps["z"].psi is None


def test_unseen_categories_land_in_the_other_bin() -> None:
    base = build_drift_baseline(baseline_frame())
    w = FeatureWindow([], base, size=200, min_rows=10)
    w.observe(pd.DataFrame({"x": [0.0] * 200, "y": [1.0] * 200, "color": ["purple"] * 200}))
    assert by_name(w)["color"].psi > 1
