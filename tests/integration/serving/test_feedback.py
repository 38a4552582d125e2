"""Ground truth through /feedback: quality metrics over a window, clear refusals, bounded memory."""

from __future__ import annotations

import pytest

from tests.integration.serving.conftest import Models, Server


def predict(server: Server, frame: object) -> tuple[str, list[object]]:
    r = server.predict(frame)
    assert r.status_code == 200, r.text
    return r.headers["X-Request-ID"], r.json()["predictions"]


def test_true_labels_give_accuracy_precision_recall_f1(classifier: Server, models: Models) -> None:
    X, y = models.iris
    picks = [0, 1, 2, 60, 61, 62, 120, 121, 122, 70]
    rid, preds = predict(classifier, X.iloc[picks])
    r = classifier.post("/feedback", json={"request_id": rid, "labels": y.iloc[picks].tolist()})
    assert r.status_code == 200 and r.json() == {"request_id": rid, "accepted": True, "rows": 10}
    truth = y.iloc[picks].tolist()
    expected = sum(int(p == t) for p, t in zip(preds, truth, strict=True)) / len(truth)
    m = classifier.metrics()

    def get(name: str) -> float:
        return next(v for (n, _), v in m.items() if n == name)

    assert get("model_feedback_window_rows") >= 10
    if get("model_feedback_window_rows") == 10:  # first feedback of the session
        assert get("model_feedback_accuracy") == pytest.approx(expected)
    for name in ("model_feedback_precision", "model_feedback_recall", "model_feedback_f1"):
        assert 0 < get(name) <= 1
    ratios = {dict(ls)["class"]: v for (n, ls), v in m.items() if n == "feedback_label_ratio"}
    assert set(ratios) >= {"0", "1", "2"}


def test_wrong_labels_lower_accuracy(classifier: Server, models: Models) -> None:
    X, _ = models.iris
    rid, preds = predict(classifier, X.iloc[[0, 1, 2, 3]])
    before = classifier.value("model_feedback_accuracy")
    wrong = [(int(p) + 1) % 3 for p in preds]
    assert (
        classifier.post("/feedback", json={"request_id": rid, "labels": wrong}).status_code == 200
    )
    assert classifier.value("model_feedback_accuracy") < before


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
    rid, preds = predict(regressor, D.head(2))
    truth = t.head(2).tolist()
    r = regressor.post("/feedback", json={"request_id": rid, "labels": truth})
    assert r.status_code == 200
    mae = regressor.value("model_feedback_mae")
    assert mae > 0
    if regressor.value("model_feedback_window_rows") == 2:  # first feedback of the session
        expected = sum(abs(float(p) - y) for p, y in zip(preds, truth, strict=True)) / 2
        assert mae == pytest.approx(expected)
    assert regressor.value("feedback_label_mean") > 0
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
