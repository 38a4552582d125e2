"""The local MLflow server is a real tracking server with a model registry."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from tests.conftest import DEFAULT_EXPERIMENT


def test_register_model_set_alias_and_read_version_back_by_alias(mlflow_uri: str) -> None:
    mlflow.set_tracking_uri(mlflow_uri)
    name = f"stack-test-{uuid.uuid4().hex[:6]}"
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    versions = []
    for c in (0.5, 2.0):
        with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT):
            info = mlflow.sklearn.log_model(
                LogisticRegression(C=c).fit(x, y), name="model", registered_model_name=name
            )
        versions.append(info.registered_model_version)
    assert [str(v) for v in versions] == ["1", "2"]

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    client.set_registered_model_alias(name, "champion", "1")
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.version == "1"
    assert champion.run_id

    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(loaded.predict(np.array([[0.0], [3.0]]))) == [0, 1]
