import json

import numpy as np
import pandas as pd
import pytest

from modeldeploy.tracking.baseline import BaselineError, DriftBaseline, build_drift_baseline


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.normal(size=1000)
    x[:10] = np.nan
    return pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], 1000)})


def test_baseline_round_trips_through_json() -> None:
    b = build_drift_baseline(frame(), target=[0, 1] * 500, bins=5)
    again = DriftBaseline.from_json(b.to_json())
    assert again == b
    x = again.features[0]
    assert x.kind == "numeric" and len(x.edges) == 4 and x.bins == 5
    assert x.missing_ratio == pytest.approx(0.01)
    assert sum(x.proportions) == pytest.approx(1.0)
    c = again.features[1]
    assert c.kind == "categorical" and set(c.categories) == {"a", "b"} and c.bins == 3
    assert again.target is not None


def test_quantile_bins_hold_similar_shares() -> None:
    x = build_drift_baseline(frame(), bins=4).features[0]
    assert all(p == pytest.approx(0.25, abs=0.01) for p in x.proportions)


def test_constant_column_gets_collapsed_edges() -> None:
    b = build_drift_baseline(pd.DataFrame({"k": [3.0] * 50}))
    assert b.features[0].edges == (3.0,)
    assert b.features[0].proportions == (0.0, 1.0)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["features"][0].update(proportions=[0.5, 0.2]), "features[0]"),
        (lambda d: d["features"][0].update(edges=[2.0, 1.0]), "features[0]"),
        (lambda d: d["features"][0].update(kind="text"), "features[0].kind"),
        (lambda d: d["features"].append(dict(d["features"][0])), "features"),
    ],
)
def test_malformed_baselines_name_the_field(mutate: object, field: str) -> None:
    raw = build_drift_baseline(pd.DataFrame({"x": np.arange(100.0)}), bins=3).to_dict()
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(BaselineError, match=field.replace("[", r"\[").replace("]", r"\]")):
        DriftBaseline.from_json(json.dumps(raw))
