import math

import numpy as np
import pandas as pd
import pytest

from modeldeploy.names import BIN_MISSING, BIN_PRESENT
from modeldeploy.serving.drift import FeatureCounts, psi
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


def counts(fc: FeatureCounts) -> dict[tuple[str, str], int]:
    return {(f, b): n for f, b, n in fc.series()}


def window_psi(fc: FeatureCounts, feature: str) -> float:
    """PSI of one feature from the exported series, the way the recording rule computes it."""
    rows = {b: n for (f, b), n in counts(fc).items() if f == feature and b != BIN_MISSING}
    shares = {b: p for f, b, p in fc.baseline_shares() if f == feature}
    total = sum(rows.values())
    return psi([shares[b] for b in shares], [rows[b] / total for b in shares])


def test_psi_is_zero_for_identical_distributions() -> None:
    assert psi([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]) == pytest.approx(0.0)


def test_psi_matches_the_textbook_formula() -> None:
    e, a = [0.5, 0.5], [0.7, 0.3]
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert psi(e, a) == pytest.approx(expected)


def test_psi_of_an_empty_bin_is_large_but_finite() -> None:
    value = psi([0.5, 0.5], [1.0, 0.0])
    assert math.isfinite(value) and value > 1


def test_psi_stays_low_on_baseline_like_data() -> None:
    base = build_drift_baseline(baseline_frame())
    fc = FeatureCounts([], base)
    fc.observe(baseline_frame(2000))
    assert all(window_psi(fc, n) < 0.05 for n in ("x", "y", "color"))


def test_psi_rises_on_shifted_feature_only() -> None:
    base = build_drift_baseline(baseline_frame())
    fc = FeatureCounts([], base)
    shifted = baseline_frame(2000)
    shifted["x"] = shifted["x"] + 2.0
    fc.observe(shifted)
    assert window_psi(fc, "x") > 1.0
    assert window_psi(fc, "y") < 0.05


def test_every_bin_is_exported_from_the_start_and_counts_add_up() -> None:
    base = build_drift_baseline(baseline_frame())
    fc = FeatureCounts([], base)
    before = counts(fc)
    assert before and set(before.values()) == {0}  # increase() needs the zero sample
    assert {b for f, b in before if f == "color"} == {"red", "green", "blue", "__other__",
                                                      BIN_MISSING}  # fmt: skip
    assert len([b for f, b in before if f == "x"]) == base.features[0].bins + 1
    frames = [baseline_frame(int(k)) for k in RNG.integers(1, 9, 40)]
    for f in frames:
        fc.observe(f)
    fresh = FeatureCounts([], base)
    fresh.observe(pd.concat(frames))
    assert counts(fc) == counts(fresh)
    total = sum(len(f) for f in frames)
    assert all(sum(n for (f, _), n in counts(fc).items() if f == name) == total
               for name in ("x", "y", "color"))  # fmt: skip


def test_baseline_shares_are_the_training_proportions() -> None:
    base = build_drift_baseline(baseline_frame())
    shares = {(f, b): p for f, b, p in FeatureCounts([], base).baseline_shares()}
    color = base.features[2]
    assert shares[("color", color.categories[0])] == color.proportions[0]
    assert sum(p for (f, _), p in shares.items() if f == "x") == pytest.approx(1.0)


def test_missing_values_and_absent_columns_count_as_missing() -> None:
    base = build_drift_baseline(baseline_frame())
    fc = FeatureCounts(["z"], base)
    f = baseline_frame(10)
    f.loc[:4, "x"] = np.nan
    f["color"] = f["color"].astype(object)
    f.loc[:1, "color"] = None
    f["z"] = [np.nan, np.nan, np.nan] + [1.0] * 7
    fc.observe(f.drop(columns=["y"]))
    c = counts(fc)
    assert c[("x", BIN_MISSING)] == 5
    assert c[("y", BIN_MISSING)] == 10
    assert c[("color", BIN_MISSING)] == 2
    # A signature-only feature: present or missing, no baseline share.
    assert c[("z", BIN_MISSING)] == 3 and c[("z", BIN_PRESENT)] == 7
    assert not [1 for f, _, _ in fc.baseline_shares() if f == "z"]


def test_unseen_categories_land_in_the_other_bin() -> None:
    base = build_drift_baseline(baseline_frame())
    fc = FeatureCounts([], base)
    fc.observe(pd.DataFrame({"x": [0.0] * 200, "y": [1.0] * 200, "color": ["purple"] * 200}))
    assert counts(fc)[("color", "__other__")] == 200
    assert window_psi(fc, "color") > 1


def test_vectorised_bins_equal_searchsorted_per_feature() -> None:
    """The one-call binning against the per-feature definition (baseline.py): bin =
    searchsorted(edges, x, "right"), NaN in the missing bin; edge values, +-inf, NaN, an absent
    column, a signature-only feature and more rows than one chunk included."""
    frame = baseline_frame()
    frame["w"] = RNG.normal(0, 1, len(frame))
    base = build_drift_baseline(frame.drop(columns=["color"]), bins=7)
    fc = FeatureCounts(["z", "gone"], base)
    edges = {f.name: np.asarray(f.edges) for f in base.features}
    columns = ("w", "z", "x", "y")  # not the baseline's order; "gone" absent
    pool = np.concatenate([*edges.values(), [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308]])
    matrix = RNG.normal(0, 2, (5000, len(columns)))
    pick = RNG.random(matrix.shape) < 0.3
    matrix[pick] = RNG.choice(pool, int(pick.sum()))
    idx = fc.bins(matrix, fc._layout(columns, cache=False))
    for j, name in enumerate(fc.names):
        missing = fc.binners[j].missing
        if name == "gone":
            expected = np.full(len(matrix), missing)
        else:
            col = matrix[:, columns.index(name)]
            expected = np.searchsorted(edges.get(name, np.array([])), col, side="right")
            expected[np.isnan(col)] = missing
        np.testing.assert_array_equal(idx[:, j], expected, err_msg=name)


def test_numeric_and_categorical_frames_count_alike_by_either_path() -> None:
    """A frame with a categorical column goes column by column, a numeric matrix in one call:
    the numeric features' counts must not depend on which."""
    base = build_drift_baseline(baseline_frame())
    rows = baseline_frame(300)
    rows.loc[:20, "x"] = np.nan
    rows.loc[21:30, "y"] = np.inf
    by_frame, by_matrix = FeatureCounts([], base), FeatureCounts([], base)
    by_frame.observe(rows)
    by_matrix.observe_matrix(rows[["x", "y"]].to_numpy(), ("x", "y"))
    numeric = {k: v for k, v in counts(by_frame).items() if k[0] != "color"}
    assert numeric == {k: v for k, v in counts(by_matrix).items() if k[0] != "color"}
    assert counts(by_matrix)[("color", BIN_MISSING)] == 300
