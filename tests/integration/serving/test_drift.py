"""Input drift as counters: rows per baseline bin, whose PSI against the exported baseline
shares stays low on training-like data and rises on shifted data."""

from __future__ import annotations

from collections.abc import Callable

from modeldeploy.serving.drift import psi
from tests.integration.serving.conftest import FEATURES, Models, Server

Bins = dict[tuple[str, str], float]


def bins(server: Server) -> Bins:
    return {
        (dict(ls)["feature"], dict(ls)["bin"]): v
        for (n, ls), v in server.metrics().items()
        if n == "feature_bin_rows_total"
    }


def psi_between(before: Bins, after: Bins, shares: Bins) -> Callable[[str], float]:
    """PSI of the rows sent between two scrapes, the way the recording rule computes it."""

    def of(feature: str) -> float:
        keys = [b for f, b in shares if f == feature]
        rows = [after[(feature, b)] - before.get((feature, b), 0.0) for b in keys]
        return psi([shares[(feature, b)] for b in keys], [r / sum(rows) for r in rows])

    return of


def test_bin_counts_give_low_psi_on_baseline_like_data_and_high_on_shifted(
    classifier: Server, models: Models
) -> None:
    X, _ = models.iris
    shares = {
        (dict(ls)["feature"], dict(ls)["bin"]): v
        for (n, ls), v in classifier.metrics().items()
        if n == "feature_baseline_share"
    }
    assert {f for f, _ in shares} == set(FEATURES), "baseline from log_drift_baseline not loaded"
    start = bins(classifier)
    sample = X.sample(300, replace=True, random_state=3)
    for first in range(0, 300, 50):
        assert classifier.predict(sample.iloc[first : first + 50]).status_code == 200
    calm = bins(classifier)
    assert all(psi_between(start, calm, shares)(f) < 0.2 for f in FEATURES)

    shifted = X.sample(300, replace=True, random_state=4)
    shifted["petal_length"] = shifted["petal_length"] + 4.0
    for first in range(0, 300, 50):
        assert classifier.predict(shifted.iloc[first : first + 50]).status_code == 200
    drifted = psi_between(calm, bins(classifier), shares)
    assert drifted("petal_length") > 1.0
    assert drifted("sepal_width") < 0.2


def test_missing_values_are_counted_per_feature(scorer: Server) -> None:
    """The scorer has no baseline: its signature's columns are counted present or missing."""
    before = bins(scorer)
    rows = [{"a": None if i < 5 else 1.0, "b": 1.0, "boom": 0} for i in range(10)]
    r = scorer.post("/invocations", json={"dataframe_records": rows})
    assert r.status_code == 200, r.text
    after = bins(scorer)

    def sent(feature: str, bin_: str) -> float:
        return after[(feature, bin_)] - before.get((feature, bin_), 0.0)

    assert (sent("a", "__missing__"), sent("a", "__present__")) == (5, 5)
    assert (sent("b", "__missing__"), sent("b", "__present__")) == (0, 10)
    assert scorer.value("feature_baseline_share") == 0  # no baseline, no shares
