import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from modeldeploy.serving.feedback import (
    PendingPredictions,
    class_key,
    classification_stats,
    invalid_labels,
)


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
    s = classification_stats(
        [(class_key(t), class_key(p)) for t, p in zip(y_true, y_pred, strict=True)]
    )
    assert s is not None
    assert s.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert s.precision == pytest.approx(precision_score(y_true, y_pred, average="macro"))
    assert s.recall == pytest.approx(recall_score(y_true, y_pred, average="macro"))
    assert s.f1 == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert classification_stats([]) is None


def test_regression_labels_must_be_numbers() -> None:
    assert invalid_labels("regression", [1.0, "x"])
    assert not invalid_labels("regression", [1, 2.5])
    assert invalid_labels("regression", [float("inf")])
    assert invalid_labels("classification", [{"a": 1}])


def test_long_labels_are_refused() -> None:
    assert not invalid_labels("classification", ["x" * 128])
    assert invalid_labels("classification", ["x" * 129])
    assert invalid_labels("classification", [10**200])  # a number spelled with 201 digits
