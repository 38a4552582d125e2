"""The good and the drifted classifier of the canary e2e tests (dev/classifier_model.py), served
for real: both answer every request, and only the class counts and confidence they export on
/metrics tell them apart, as canary output analysis will read them from Prometheus."""

from __future__ import annotations

import uuid
from typing import Any

import classifier_model  # dev/classifier_model.py (tests/conftest.py puts dev/ on sys.path)
import pytest

from modeldeploy import names
from modeldeploy.serving.drift import psi
from tests.conftest import DEFAULT_EXPERIMENT
from tests.integration.serving.conftest import Server

JSON = {"Content-Type": "application/json"}
REQUESTS = 5
ROWS = REQUESTS * len(classifier_model.ROWS)


@pytest.fixture(scope="module")
def threshold_model(mlflow_uri: str) -> str:
    """One registered model: version 1 the good classifier, version 2 the drifted one (whose
    top class probability is also lower)."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri)
    name = f"threshold-{uuid.uuid4().hex[:6]}"
    for model in (classifier_model.good(), classifier_model.drifted(confidence=0.6)):
        with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT):
            classifier_model.log(model, registered_model_name=name)
    return name


def served(serve: Any, name: str, version: str) -> Server:
    """As the operator runs it: models:/ URI, registry code trusted; every request's confidence
    observed (the default samples a tenth of them)."""
    server: Server = serve(
        f"models:/{name}/{version}",
        "--confidence-sample",
        "1",
        env={"MODELDEPLOY_TRUST_MODEL_CODE": "registry"},
    )
    return server


def counts(server: Server) -> dict[str, float]:
    """Rows per class ("class 0"), answers per status ("code 200") and the confidence
    histogram's sum and count ("confidence_sum", "confidence_count")."""
    out = {}
    for (metric, labels), value in server.metrics().items():
        got = dict(labels)
        if metric in (f"{names.PREDICTION_CONFIDENCE}_sum", f"{names.PREDICTION_CONFIDENCE}_count"):
            out["confidence_" + metric.rsplit("_", 1)[1]] = value
        elif metric == names.PREDICTION_CLASS:
            out[f"class {got[names.LABEL_CLASS]}"] = value
        elif metric == names.PREDICTION_REQUESTS:
            out[f"code {got[names.LABEL_CODE]}"] = value
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def test_good_and_drifted_classifiers_export_class_counts_with_the_expected_skew(
    serve: Any, threshold_model: str
) -> None:
    sent: dict[str, dict[str, float]] = {}
    for version in ("1", "2"):
        server = served(serve, threshold_model, version)
        before = counts(server)
        # A classifier's classes are known at start: their series exist before any request.
        assert {k: v for k, v in before.items() if k.startswith("class")} == {
            "class 0": 0,
            "class 1": 0,
            "class 2": 0,
        }
        for _ in range(REQUESTS):
            r = server.post("/invocations", data=classifier_model.INPUT, headers=JSON)
            assert r.status_code == 200, r.text
        sent[version] = delta(before, counts(server))

    good, drifted = sent["1"], sent["2"]
    assert {k: v for k, v in good.items() if k.startswith("class")} == {
        "class 0": ROWS / 3,
        "class 1": ROWS / 3,
        "class 2": ROWS / 3,
    }
    assert {k: v for k, v in drifted.items() if k.startswith("class")} == {
        "class 0": REQUESTS * 10,
        "class 1": REQUESTS,
        "class 2": REQUESTS,
    }
    # Neither fails: every answer is a 200.
    assert {k: v for k, v in good.items() if k.startswith("code")} == {"code 200": REQUESTS}
    assert {k: v for k, v in drifted.items() if k.startswith("code")} == {"code 200": REQUESTS}

    # The output PSI of the drifted version's class shares against the good one's is far above
    # the canary analysis' default limit (maxOutputPsi 0.2).
    def shares(d: dict[str, float]) -> list[float]:
        return [d[f"class {c}"] / ROWS for c in range(3)]

    assert psi(shares(good), shares(drifted)) > 1.0
    # Confidence: every row observed; the mean top class probability is the model's.
    for d, mean in ((good, 0.9), (drifted, 0.6)):
        assert d["confidence_count"] == ROWS
        assert d["confidence_sum"] / d["confidence_count"] == pytest.approx(mean)
