"""Real models in a real MLflow, served by `modeldeploy serve` subprocesses on loopback ports.

Models are logged and registered once per session; servers are started once per session and
shared, so tests assert on metric *deltas*, never on absolute counts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

BIN = Path(sys.executable).parent
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Models:
    tracking_uri: str
    classifier: str  # registered model names
    regressor: str
    pyfunc: str
    classifier_run_id: str
    iris: Any  # (X, y) frames
    diabetes: Any
    extra: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="session")
def models(mlflow_uri: str) -> Models:
    import cloudpickle
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LogisticRegression, Ridge

    from modeldeploy.tracking import log_drift_baseline
    from tests.integration.serving import pyfunc_model

    os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri
    mlflow.set_tracking_uri(mlflow_uri)
    suffix = uuid.uuid4().hex[:6]
    mlflow.set_experiment(f"serving-tests-{suffix}")
    client = MlflowClient()

    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = FEATURES
    clf = LogisticRegression(max_iter=500).fit(X, y)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            clf, name="model", signature=infer_signature(X, clf.predict(X)),
            registered_model_name=f"iris-{suffix}",
        )  # fmt: skip
        log_drift_baseline(X, model_id=info.model_id, target=y)
    client.set_registered_model_alias(f"iris-{suffix}", "champion", info.registered_model_version)

    D, t = load_diabetes(return_X_y=True, as_frame=True)
    reg = Ridge().fit(D, t)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            reg, name="model", signature=infer_signature(D, reg.predict(D)),
            registered_model_name=f"diabetes-{suffix}",
        )  # fmt: skip
        log_drift_baseline(D, model_id=info.model_id, target=t)

    cloudpickle.register_pickle_by_value(pyfunc_model)
    import pandas as pd

    example = pd.DataFrame({"a": [1.0, 2.0], "b": [0.5, 1.0], "boom": [0, 0]})
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=pyfunc_model.Scorer(),
            signature=infer_signature(example, pd.Series([2.5, 5.0]), params={"sleep": 0.0}),
            registered_model_name=f"scorer-{suffix}",
        )
    return Models(
        tracking_uri=mlflow_uri,
        classifier=f"iris-{suffix}",
        regressor=f"diabetes-{suffix}",
        pyfunc=f"scorer-{suffix}",
        classifier_run_id=run.info.run_id,
        iris=(X, y),
        diabetes=(D, t),
    )


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kw)

    def predict(self, frame: Any, **kw: Any) -> requests.Response:
        return self.post(
            "/invocations",
            json={"dataframe_split": frame.to_dict(orient="split", index=False)},
            **kw,
        )

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = self.get("/metrics").text
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.metrics().items() if n == name and want <= ls)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def launch(
    models: Models, uri: str, *args: str, tmp: Path, env: dict[str, str] | None = None
) -> Server:
    port = free_port()
    log = tmp / f"serve-{port}.log"
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": models.tracking_uri,
                "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}  # fmt: skip
    cmd = [str(BIN / "modeldeploy"), "serve", "--model-uri", uri, "--host", "127.0.0.1",
           "--port", str(port), *args]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env)
    return Server(proc, f"http://127.0.0.1:{port}", log)


def wait_ready(server: Server, deadline: float = 120) -> list[int]:
    """Poll /health until 200; returns the statuses seen. Fails with the log if the process dies."""
    seen: list[int] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited {server.proc.returncode}:\n{server.log_text()[-3000:]}")
        try:
            r = server.get("/health")
            seen.append(r.status_code)
            if r.status_code == 200:
                return seen
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not ready in {deadline}s:\n{server.log_text()[-3000:]}")


@pytest.fixture(scope="session")
def serve(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A factory: serve(uri, *flags, env=..., ready=True) -> Server, stopped at session end."""
    started: list[Server] = []
    tmp = tmp_path_factory.mktemp("serve")

    def start(
        uri: str, *args: str, env: dict[str, str] | None = None, ready: bool = True
    ) -> Server:
        server = launch(models, uri, *args, tmp=tmp, env=env)
        started.append(server)
        if ready:
            wait_ready(server)
        return server

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def classifier(models: Models, serve: Any) -> Server:
    return serve(
        f"models:/{models.classifier}@champion",
        "--confidence-sample", "1", "--max-body-bytes", "50000",
    )  # fmt: skip


@pytest.fixture(scope="session")
def regressor(models: Models, serve: Any) -> Server:
    return serve(
        f"models:/{models.regressor}/1", "--feedback-max-rows", "5",
        env={"MODEL_NAME": "diabetes", "MODEL_VERSION": "1"},
    )  # fmt: skip


@pytest.fixture(scope="session")
def scorer(models: Models, serve: Any) -> Server:
    """The custom pyfunc the way the operator runs it: models:/ URI, registry code trusted."""
    return serve(
        f"models:/{models.pyfunc}/1", "--timeout", "3",
        env={"MODELDEPLOY_TRUST_MODEL_CODE": "registry"},
    )  # fmt: skip
