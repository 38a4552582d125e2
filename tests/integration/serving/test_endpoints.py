"""Each endpoint of `modeldeploy serve` against real registered models, and the metrics it moves."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from tests.conftest import wait_for
from tests.integration.serving.conftest import FEATURES, Models, Server


def rows(models: Models, n: int = 3) -> pd.DataFrame:
    X, _ = models.iris
    return X.iloc[[0, 60, 120, 10, 70, 130][:n]].reset_index(drop=True)


def test_ping_answers(classifier: Server) -> None:
    r = classifier.get("/ping")
    assert r.status_code == 200


def test_health_is_ready_with_the_resolved_version(classifier: Server, models: Models) -> None:
    r = classifier.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "model_name": models.classifier, "model_version": "1"}


def test_version_names_model_version_and_run(classifier: Server, models: Models) -> None:
    body = classifier.get("/version").json()
    assert body["model_name"] == models.classifier
    assert body["model_version"] == "1"
    assert body["run_id"] == models.classifier_run_id
    assert body["mlflow_version"].startswith("3.")


def test_operator_env_names_the_metric_labels(regressor: Server) -> None:
    assert regressor.get("/version").json()["model_name"] == "diabetes"
    assert regressor.value("model_version_info", model_name="diabetes", model_version="1") == 1


def test_every_mlflow_format_predicts_the_same(classifier: Server, models: Models) -> None:
    frame = rows(models)
    records = frame.to_dict(orient="records")
    payloads: list[dict[str, Any]] = [
        {"dataframe_split": frame.to_dict(orient="split", index=False)},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": {c: frame[c].tolist() for c in frame.columns}},
    ]
    answers = [classifier.post("/invocations", json=p) for p in payloads]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert {tuple(a.json()["predictions"]) for a in answers} == {(0, 1, 2)}
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    csv = classifier.post("/invocations", data=buf.getvalue(), headers={"Content-Type": "text/csv"})
    assert csv.status_code == 200 and csv.json()["predictions"] == [0, 1, 2]


def test_response_carries_a_request_id_in_header_and_body(
    classifier: Server, models: Models
) -> None:
    r = classifier.predict(rows(models, 1))
    rid = r.headers["X-Request-ID"]
    assert len(rid) == 32 and r.json()["request_id"] == rid
    assert set(r.json()) == {"predictions", "request_id"}  # "predictions" untouched for clients


def test_incoming_request_id_is_honoured_and_a_bad_one_replaced(
    classifier: Server, models: Models
) -> None:
    r = classifier.predict(rows(models, 1), headers={"X-Request-ID": "trace-42.a:b"})
    assert r.headers["X-Request-ID"] == "trace-42.a:b" == r.json()["request_id"]
    r = classifier.predict(rows(models, 1), headers={"X-Request-ID": "no spaces <allowed>"})
    assert r.headers["X-Request-ID"] != "no spaces <allowed>"


def test_mlflow_client_reads_our_response(classifier: Server, models: Models) -> None:
    from mlflow.deployments import PredictionsResponse

    r = classifier.predict(rows(models))
    assert PredictionsResponse.from_json(r.text).get_predictions(
        predictions_format="ndarray"
    ).tolist() == [0, 1, 2]


def test_prediction_metrics_move(classifier: Server, models: Models) -> None:
    labels = {"model_name": models.classifier, "model_version": "1"}
    before = classifier.metrics()

    def delta(name: str, **extra: str) -> float:
        want = set({**labels, **extra}.items())
        after = classifier.metrics()
        return sum(v for (n, ls), v in after.items() if n == name and want <= ls) - sum(
            v for (n, ls), v in before.items() if n == name and want <= ls
        )

    for _ in range(4):
        assert classifier.predict(rows(models, 3)).status_code == 200
    assert delta("prediction_latency_seconds_count") == 4
    assert delta("prediction_latency_seconds_bucket", le="+Inf") == 4
    assert delta("prediction_requests_total", code="200") == 4
    assert delta("prediction_class_total", **{"class": "0"}) == 4
    assert delta("prediction_class_total", **{"class": "2"}) == 4
    assert delta("prediction_confidence_count") == 12  # one per row (sampling at 1.0)
    assert delta("feature_bin_rows_total", feature="sepal_length") == 12  # one bin per row
    after = classifier.metrics()
    key = frozenset(labels.items())
    assert after[("prediction_requests_in_flight", key)] == 0
    assert after[("model_load_duration_seconds", key)] > 0
    run = frozenset({**labels, "run_id": models.classifier_run_id}.items())
    assert after[("model_version_info", run)] == 1


def test_regression_outputs_fill_the_value_histogram(regressor: Server, models: Models) -> None:
    D, _ = models.diabetes
    before = regressor.value("prediction_value_count")
    assert regressor.predict(D.head(7)).status_code == 200
    assert regressor.value("prediction_value_count") - before == 7
    assert regressor.value("prediction_class_total") == 0


def test_metrics_endpoint_is_prometheus_text(classifier: Server) -> None:
    r = classifier.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "# TYPE prediction_latency_seconds histogram" in r.text


def test_unknown_path_is_404(classifier: Server) -> None:
    assert classifier.get("/nope").status_code == 404
    assert classifier.get("/invocations").status_code == 405


def test_logs_are_json_without_payloads(classifier: Server, models: Models) -> None:
    import json

    r = classifier.predict(rows(models, 1), headers={"X-Request-ID": "log-check-1"})
    assert r.status_code == 200

    def mine() -> list[dict]:  # the line may reach the file just after the response
        lines = [json.loads(ln) for ln in classifier.log_text().splitlines() if ln.startswith("{")]
        return [ln for ln in lines if ln.get("request_id") == "log-check-1"]

    entry = wait_for(mine, 10, "a log line for the request")[0]
    assert entry["model_version"] == "1" and entry["status"] == 200 and entry["outcome"] == "ok"
    assert entry["latency_ms"] > 0
    assert "predictions" not in entry and str(FEATURES[0]) not in json.dumps(entry)
