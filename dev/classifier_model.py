"""Classifiers whose predicted classes are known in advance: the good and the drifted version of
the canary output-analysis e2e tests (issue 12). Neither ever fails a request; they differ only
in the classes they predict for the same input, so only the class shares tell them apart.

    rows of INPUT (x = 0.125, 0.375, ..., 2.875):  class 0   class 1   class 2
    good()     cuts at 1.0 and 2.0                   4         4         4     (balanced)
    drifted()  cuts at 2.5 and 2.75                 10         1         1     (83 % class 0)

How the serving runtime (operator/modeldeploy/serving) exports their metrics:

* `prediction_class_total{class}` counts one per row of a classifier's output. The task is
  classification when the loaded model is a scikit-learn classifier, else it is inferred from
  the first output: integer or string labels, one per row (a list, Series, 1-D array or a
  one-column frame), make it a classifier; floats make it a regressor, and an output of several
  columns (class probabilities) gets no output metrics at all.
* `prediction_confidence` (the top class probability per row) is observed only for a model whose
  `get_raw_model()` is a scikit-learn classifier with `predict_proba`, and only for requests whose
  input is a frame (`dataframe_split` / `dataframe_records`, not `inputs`), on a sample of them
  (MODELDEPLOY_CONFIDENCE_SAMPLE: by default 1 in 10 on MLflow's path, which this model takes,
  its class not being scikit-learn's; every request on the fast path). A custom
  `mlflow.pyfunc.PythonModel` never has a raw model (MLflow's wrapper of it has no
  `get_raw_model`), so it cannot export confidence.

So `ThresholdClassifier` is a scikit-learn classifier (ClassifierMixin: `is_classifier` is true,
so its `classes_` series start at zero) that learns nothing, logged with MLflow's sklearn flavor
as cloudpickle and served as pyfunc like any sklearn model. Loggers register this module with
`cloudpickle.register_pickle_by_value`, so the serving process needs no dev/ on its path; its
code runs at load, so serving needs MODELDEPLOY_TRUST_MODEL_CODE=registry (the operator sets it).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

GOOD_CUTS = (1.0, 2.0)
DRIFTED_CUTS = (2.5, 2.75)
ROWS = tuple((i + 0.5) / 4 for i in range(12))  # 0.125 .. 2.875, 4 rows per good class
# A request body whose rows are a frame (so confidence is observed too).
INPUT = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[x] for x in ROWS]}}).encode()


class ThresholdClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Class i for x in [cuts[i-1], cuts[i]) of the input's first column: classes 0..len(cuts).
    Every row's top class probability is `confidence`, the rest shared by the other classes."""

    def __init__(self, cuts: tuple[float, ...] = GOOD_CUTS, confidence: float = 0.9) -> None:
        self.cuts = cuts
        self.confidence = confidence

    @property
    def classes_(self) -> Any:
        return np.arange(len(self.cuts) + 1)

    def fit(self, X: Any, y: Any = None) -> ThresholdClassifier:
        return self  # nothing to learn: the cuts are the model

    def predict(self, X: Any) -> Any:
        return np.searchsorted(np.asarray(self.cuts, dtype=float), _first_column(X), side="right")

    def predict_proba(self, X: Any) -> Any:
        predicted = self.predict(X)
        n = len(self.classes_)
        proba = np.full((len(predicted), n), (1.0 - self.confidence) / (n - 1))
        proba[np.arange(len(predicted)), predicted] = self.confidence
        return proba


def good(confidence: float = 0.9) -> ThresholdClassifier:
    """Balanced classes on INPUT (and on any x spread evenly over [0, 3))."""
    return ThresholdClassifier(GOOD_CUTS, confidence)


def drifted(confidence: float = 0.9) -> ThresholdClassifier:
    """The same kind of model with its cuts moved: class 0 for 10 of INPUT's 12 rows."""
    return ThresholdClassifier(DRIFTED_CUTS, confidence)


def log(model: ThresholdClassifier, registered_model_name: str | None = None) -> Any:
    """Logs `model` into the active MLflow run (one is started if none is) the way the serving
    runtime loads it as a classifier: sklearn flavor, cloudpickled with this module by value.
    Returns MLflow's ModelInfo."""
    import cloudpickle
    import mlflow.sklearn
    import sklearn

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        # Named, not inferred: inferring loads the model in a subprocess, seconds per version.
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", "cloudpickle"],
        registered_model_name=registered_model_name,
    )


def _first_column(X: Any) -> Any:
    values = np.asarray(X, dtype=float)
    return values[:, 0] if values.ndim == 2 else values
