"""The attack suite (issue 13): every case an automated test against real parts — a real
`modeldeploy serve` process, the operator run as users run it, the real API server, helm.

The fixtures are the serving, operator and chart suites' own, imported rather than copied, so an
attack runs against exactly what those suites test — except `models`: the serving suite's logs
three models, the attacks need one (the iris classifier, with its signature), so this one logs
only that. docs/security.md lists each attack, what is expected, and the test that shows it.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import DEFAULT_EXPERIMENT
from tests.integration.chart.conftest import tools  # noqa: F401  (fixture)
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures)
    crd,
    kube,
    pytest_runtest_makereport,
    registry,
    start_operator,
)
from tests.integration.serving.conftest import FEATURES, Models, serve  # noqa: F401


@pytest.fixture(scope="session")
def models(mlflow_uri: str) -> Models:
    """The iris classifier with its signature, registered and aliased `champion`."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(mlflow_uri)
    name = f"attacks-iris-{uuid.uuid4().hex[:6]}"
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = FEATURES
    clf = LogisticRegression(max_iter=500).fit(X, y)
    with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT) as run:
        info = mlflow.sklearn.log_model(
            clf, name="model", signature=infer_signature(X, clf.predict(X)),
            registered_model_name=name,
        )  # fmt: skip
    MlflowClient().set_registered_model_alias(name, "champion", info.registered_model_version)
    return Models(
        tracking_uri=mlflow_uri, classifier=name, regressor="", pyfunc="",
        classifier_run_id=run.info.run_id, iris=(X, y), diabetes=None,
    )  # fmt: skip
