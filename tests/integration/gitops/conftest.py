"""The operator fixtures of tests/integration/operator (CRD, start_operator, kube), shared with
the GitOps tests, and a registry like theirs that logs its one model faster."""

from __future__ import annotations

import pytest

from tests.conftest import DEFAULT_EXPERIMENT
from tests.integration.operator.conftest import (  # noqa: F401 (fixtures)
    Registry,
    crd,
    kube,
    pytest_runtest_makereport,
    start_operator,
)


class QuickRegistry(Registry):
    """tests/integration/operator's Registry, with the model's pip requirements named instead of
    inferred: MLflow infers them by loading the model in a subprocess, about 20 s on a busy
    2-core machine against 4 s without. The operator reads the MLmodel file, never the list."""

    def __init__(self, uri: str) -> None:
        import mlflow
        import numpy as np
        from mlflow import MlflowClient
        from sklearn.linear_model import LogisticRegression

        mlflow.set_tracking_uri(uri)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        x, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
        with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT) as run:
            info = mlflow.sklearn.log_model(
                LogisticRegression().fit(x, y), name="model", pip_requirements=["scikit-learn"]
            )
        self.source, self.run_id, self.model_id = info.model_uri, run.info.run_id, info.model_id


@pytest.fixture(scope="session")
def registry(mlflow_uri: str) -> Registry:
    return QuickRegistry(mlflow_uri)
