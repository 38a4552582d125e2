import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from modeldeploy.serving.feedback import OutcomeWindow, PendingPredictions, Refusal, class_key


def test_pending_prediction_is_taken_once() -> None:
    p = PendingPredictions(max_rows=10, ttl=60)
    p.put("a", [1, 2], now=0)
    assert p.take("a", now=1) == [1, 2]
    assert p.take("a", now=1) is None
    assert p.rows == 0


def test_pending_predictions_expire_after_ttl() -> None:
    p = PendingPredictions(max_rows=10, ttl=60)
    p.put("a", [1], now=0)
    p.put("b", [1], now=30)
    assert p.peek("a", now=61) is None
    assert p.peek("b", now=61) == [1]
    assert p.expired == 1


def test_memory_is_bounded_by_rows_and_oldest_go_first() -> None:
    p = PendingPredictions(max_rows=5, ttl=60)
    for i in range(4):
        p.put(f"r{i}", [0, 0], now=i)
    assert p.rows <= 5
    assert p.take("r0", now=5) is None and p.take("r1", now=5) is None
    assert p.take("r3", now=5) == [0, 0]
    assert p.evicted == 2


def test_a_batch_larger_than_the_bound_is_not_kept() -> None:
    p = PendingPredictions(max_rows=3, ttl=60)
    p.put("big", [0] * 4, now=0)
    assert len(p) == 0 and p.evicted == 1


@pytest.mark.parametrize(("value", "key"), [(1, "1"), (1.0, "1"), ("1", "1"), (True, "true")])
def test_class_keys_agree_across_json_and_numpy(value: object, key: str) -> None:
    import numpy as np

    assert class_key(value) == key
    if not isinstance(value, str):
        assert class_key(np.asarray([value])[0]) == key


def test_classification_stats_match_sklearn_macro_averages() -> None:
    y_true = [0, 1, 2, 2, 1, 0, 1, 2, 2, 0]
    y_pred = [0, 2, 2, 2, 1, 0, 0, 1, 2, 0]
    w = OutcomeWindow("classification", size=100)
    w.add(y_true, y_pred)
    s = w.classification()
    assert s is not None
    assert s.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert s.precision == pytest.approx(precision_score(y_true, y_pred, average="macro"))
    assert s.recall == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert s.f1 == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert s.label_ratio == {"0": 0.3, "1": 0.3, "2": 0.4}


def test_outcome_window_keeps_only_the_last_rows() -> None:
    w = OutcomeWindow("classification", size=4)
    w.add([0] * 10, [1] * 10)
    w.add([1] * 4, [1] * 4)
    s = w.classification()
    assert s is not None and s.accuracy == 1.0 and len(w) == 4


def test_regression_stats() -> None:
    w = OutcomeWindow("regression", size=10)
    w.add([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])
    s = w.regression()
    assert s is not None
    assert s.mae == pytest.approx(1.0)
    assert s.rmse == pytest.approx((5 / 3) ** 0.5)
    assert s.label_mean == pytest.approx(2.0)


def test_regression_labels_must_be_numbers() -> None:
    w = OutcomeWindow("regression")
    assert w.validate([1.0, "x"]) == Refusal.INVALID
    assert w.validate([1, 2.5]) is None
    assert OutcomeWindow("classification").validate([{"a": 1}]) == Refusal.INVALID


def test_long_labels_are_refused() -> None:
    w = OutcomeWindow("classification")
    assert w.validate(["x" * 128]) is None
    assert w.validate(["x" * 129]) == Refusal.INVALID
    assert w.validate([10**200]) == Refusal.INVALID  # a number spelled with 201 digits


def test_label_ratio_names_the_first_labels_and_pools_the_rest() -> None:
    w = OutcomeWindow("classification", size=100, max_classes=2)
    w.add(["a", "b", "a"], ["a", "a", "a"])
    w.add(["c", "d"], ["c", "a"])  # seen after the bound: pooled, even when frequent later
    w.add(["c", "c"], ["c", "c"])
    s = w.classification()
    assert s is not None
    assert s.label_ratio == pytest.approx({"a": 2 / 7, "b": 1 / 7, "__other__": 4 / 7})
    assert s.accuracy == pytest.approx(5 / 7)  # pooling is for the export only
