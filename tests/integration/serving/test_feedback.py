"""Ground truth through /feedback: outcome counters, clear refusals, bounded memory."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.integration.serving.conftest import Models, Server


def predict(server: Server, frame: object) -> tuple[str, list[object]]:
    r = server.predict(frame)
    assert r.status_code == 200, r.text
    return r.headers["X-Request-ID"], r.json()["predictions"]


def outcomes(server: Server) -> dict[tuple[str, str], float]:
    return {
        (dict(ls)["true_class"], dict(ls)["predicted_class"]): v
        for (n, ls), v in server.metrics().items()
        if n == "prediction_feedback_outcomes_total"
    }


def test_labels_are_counted_by_true_and_predicted_class(classifier: Server, models: Models) -> None:
    X, y = models.iris
    before = outcomes(classifier)
    assert len(before) == 9  # the classifier's three classes: every pair from the start
    rows_before = classifier.value("prediction_feedback_rows_total")
    picks = [0, 1, 2, 60, 61, 62, 120, 121, 122, 70]
    rid, preds = predict(classifier, X.iloc[picks])
    truth = y.iloc[picks].tolist()
    r = classifier.post("/feedback", json={"request_id": rid, "labels": truth})
    assert r.status_code == 200 and r.json() == {"request_id": rid, "accepted": True, "rows": 10}
    after = outcomes(classifier)
    sent = Counter((str(t), str(p)) for t, p in zip(truth, preds, strict=True))
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == dict(sent)
    assert classifier.value("prediction_feedback_rows_total") - rows_before == 10
    correct = {
        dict(ls)["correct"]
        for (n, ls), _ in classifier.metrics().items()
        if n == "prediction_feedback_outcomes_total" and dict(ls)["true_class"] == "1"
        and dict(ls)["predicted_class"] == "1"
    }  # fmt: skip
    assert correct == {"true"}
    shares = {
        dict(ls)["class"]: v
        for (n, ls), v in classifier.metrics().items()
        if n == "target_baseline_share"
    }
    assert set(shares) == {"0", "1", "2"} and abs(sum(shares.values()) - 1) < 1e-9


def test_feedback_for_an_unknown_id_is_refused_and_counted(classifier: Server) -> None:
    before = classifier.value("prediction_feedback_total", outcome="unknown_or_expired")
    r = classifier.post("/feedback", json={"request_id": "never-seen", "labels": [1]})
    assert r.status_code == 404
    assert r.json()["reason"] == "unknown_or_expired" and "never-seen" in r.json()["message"]
    after = classifier.value("prediction_feedback_total", outcome="unknown_or_expired")
    assert after - before == 1


def test_feedback_is_accepted_once(classifier: Server, models: Models) -> None:
    rid, _ = predict(classifier, models.iris[0].head(1))
    assert classifier.post("/feedback", json={"request_id": rid, "label": 0}).status_code == 200
    assert classifier.post("/feedback", json={"request_id": rid, "label": 0}).status_code == 404


def test_label_count_must_match_and_a_refusal_keeps_the_prediction(
    classifier: Server, models: Models
) -> None:
    rid, _ = predict(classifier, models.iris[0].head(2))
    r = classifier.post("/feedback", json={"request_id": rid, "labels": [0]})
    assert r.status_code == 400 and r.json()["reason"] == "length_mismatch"
    assert (
        classifier.post("/feedback", json={"request_id": rid, "labels": [0, 0]}).status_code == 200
    )


def test_batch_feedback_reports_each_item(classifier: Server, models: Models) -> None:
    rid, _ = predict(classifier, models.iris[0].head(1))
    r = classifier.post(
        "/feedback",
        json={"feedback": [{"request_id": rid, "labels": [0]}, {"request_id": "gone", "label": 1}]},
    )
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert [x["request_id"] for x in r.json()["rejected"]] == ["gone"]


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"labels": [1]}'])
def test_malformed_feedback_is_a_400(classifier: Server, body: bytes) -> None:
    r = classifier.post("/feedback", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["message"]


def test_regressor_feedback_gives_error_metrics(regressor: Server, models: Models) -> None:
    D, t = models.diabetes
    abs_before = regressor.value("prediction_feedback_absolute_error_total")
    sq_before = regressor.value("prediction_feedback_squared_error_total")
    n_before = regressor.value("prediction_feedback_label_value_count")
    rid, preds = predict(regressor, D.head(2))
    truth = t.head(2).tolist()
    r = regressor.post("/feedback", json={"request_id": rid, "labels": truth})
    assert r.status_code == 200
    errors = [float(p) - y for p, y in zip(preds, truth, strict=True)]
    assert regressor.value("prediction_feedback_absolute_error_total") - abs_before == (
        pytest.approx(sum(abs(e) for e in errors))
    )
    assert regressor.value("prediction_feedback_squared_error_total") - sq_before == (
        pytest.approx(sum(e * e for e in errors))
    )
    assert regressor.value("prediction_feedback_label_value_count") - n_before == 2
    refused = regressor.post("/feedback", json={"request_id": "x", "labels": ["high"]})
    assert refused.status_code == 404  # unknown id is checked first


def test_pending_memory_is_bounded_oldest_first(regressor: Server, models: Models) -> None:
    """The regressor server keeps at most 5 predicted rows for feedback."""
    D, _ = models.diabetes
    before = regressor.value("prediction_feedback_evicted_total", reason="memory")
    ids = [predict(regressor, D.iloc[[i]])[0] for i in range(7)]
    assert regressor.value("prediction_feedback_pending_requests") <= 5
    assert regressor.value("prediction_feedback_evicted_total", reason="memory") - before >= 2
    assert (
        regressor.post("/feedback", json={"request_id": ids[0], "label": 100.0}).status_code == 404
    )
    assert (
        regressor.post("/feedback", json={"request_id": ids[-1], "label": 100.0}).status_code == 200
    )
