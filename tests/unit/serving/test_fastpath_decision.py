"""One decision_function call gives exactly what predict and predict_proba give (fastpath.py's
`_from_decision`): the same classes and the same probabilities, bit for bit, ties included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from modeldeploy.serving.fastpath import FastPath


def _fast(estimator: Any, width: int) -> FastPath:
    return FastPath(estimator, tuple(f"x{i}" for i in range(width)), (np.dtype(float),) * width)


def _assert_same(fast: FastPath, x: np.ndarray) -> None:
    est = fast.estimator
    classes, proba = fast.predict_both(x)
    assert classes.dtype == est.predict(x).dtype
    np.testing.assert_array_equal(classes, est.predict(x))
    np.testing.assert_array_equal(proba, est.predict_proba(x))  # exact, not allclose


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize(
    "make",
    [
        lambda: LogisticRegression(max_iter=200),
        lambda: GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0),
    ],
    ids=["logistic", "boosting"],
)
def test_one_decision_call_answers_as_predict_and_predict_proba(make: Any, n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    x = rng.normal(size=(300, 5))
    y = np.array(["cat", "dog", "eel"])[np.argmax(x[:, :n_classes], axis=1) % n_classes]
    fast = _fast(make().fit(x, y), 5)
    assert fast.decision_rule is not None
    _assert_same(fast, rng.normal(size=(200, 5)) * 3)
    _assert_same(fast, x[:1])


def test_a_tie_goes_to_the_class_predict_chooses() -> None:
    """Decision value exactly 0 (binary) and equal scores (multiclass): predict's threshold
    `> 0` and argmax's first maximum, not whatever argmax of the probabilities would say."""
    x = np.array([[2.0, 2.0], [1.0, 3.0], [0.0, 0.0]])
    binary = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    binary.coef_, binary.intercept_ = np.array([[1.0, -1.0]]), np.array([0.0])
    fast = _fast(binary, 2)
    assert fast.estimator.decision_function(x)[0] == 0.0
    _assert_same(fast, x)
    multi = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 2])
    multi.coef_, multi.intercept_ = np.ones((3, 2)), np.zeros(3)
    _assert_same(_fast(multi, 2), x)
