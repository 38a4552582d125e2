"""Input drift: PSI per feature stays low on training-like data and rises on shifted data."""

from __future__ import annotations

from tests.integration.serving.conftest import FEATURES, Models, Server


def psi(server: Server) -> dict[str, float]:
    return {
        dict(ls)["feature"]: v
        for (n, ls), v in server.metrics().items()
        if n == "feature_drift_psi"
    }


def test_drift_gauge_low_on_baseline_like_data_and_high_on_shifted(
    classifier: Server, models: Models
) -> None:
    X, _ = models.iris
    # The classifier server's window holds 300 rows: send 300 training rows to fill it.
    sample = X.sample(300, replace=True, random_state=3)
    for start in range(0, 300, 50):
        assert classifier.predict(sample.iloc[start : start + 50]).status_code == 200
    calm = psi(classifier)
    assert set(calm) == set(FEATURES), "baseline from log_drift_baseline was not loaded"
    assert all(v < 0.2 for v in calm.values()), calm

    shifted = X.sample(300, replace=True, random_state=4)
    shifted["petal_length"] = shifted["petal_length"] + 4.0
    for start in range(0, 300, 50):
        assert classifier.predict(shifted.iloc[start : start + 50]).status_code == 200
    drifted = psi(classifier)
    assert drifted["petal_length"] > 1.0, drifted
    assert drifted["sepal_width"] < 0.2, drifted


def test_missing_values_raise_the_missing_ratio(scorer: Server) -> None:
    """The scorer has no baseline: its signature's columns still get a missing ratio."""
    rows = [{"a": None if i < 5 else 1.0, "b": 1.0, "boom": 0} for i in range(10)]
    r = scorer.post("/invocations", json={"dataframe_records": rows})
    assert r.status_code == 200, r.text
    assert scorer.value("feature_missing_ratio", feature="a") > 0
    assert scorer.value("feature_missing_ratio", feature="b") == 0
    assert scorer.value("feature_drift_psi") == 0  # no baseline, no PSI series
