"""A model version that fails a share of its predictions: the "bad version" of `make demo`
(dev/demo.py) and of the e2e tests. Loggers register it with
`cloudpickle.register_pickle_by_value`, so the serving process needs no dev/ on its path."""

from __future__ import annotations

import random

import mlflow.pyfunc


class Flaky(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    def __init__(self, failure_share: float) -> None:
        self.failure_share = failure_share

    # No type hints on predict: MLflow would try to derive a schema from them.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        if random.random() < self.failure_share:
            raise RuntimeError("flaky model: simulated failure")
        return [0] * len(model_input)
