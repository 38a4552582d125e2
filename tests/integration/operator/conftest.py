"""Fixtures for operator integration tests: the CRD, models in the real MLflow registry, and the
operator run the way users run it (`modeldeploy operator`, a subprocess), scoped to the test's
namespace so tests cannot disturb each other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stack as devstack
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from stack import free_port

from tests.conftest import DEFAULT_EXPERIMENT, REPO, Cluster, wait_for

GROUP, VERSION, PLURAL = "modeldeploy.io", "v1alpha1", "modeldeployments"
WEBHOOK_SECRET = "integration-test-secret"


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    devstack.apply_crds(cluster.kubectl, [REPO / "crds"], ["modeldeployments.modeldeploy.io"])


class Registry:
    """Registers versions of one tiny sklearn model in the real MLflow server. The model is
    logged once; further versions reuse its artifacts (the operator never loads them)."""

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
            # Requirements named, not inferred: MLflow infers them by loading the model in a
            # subprocess (about 20 s on a busy 2-core machine against 4 s without). The operator
            # reads the MLmodel file, never the list.
            info = mlflow.sklearn.log_model(
                LogisticRegression().fit(x, y), name="model", pip_requirements=["scikit-learn"]
            )
        self.source, self.run_id, self.model_id = info.model_uri, run.info.run_id, info.model_id

    def new_model(self, versions: int = 1) -> str:
        name = f"it-{uuid.uuid4().hex[:8]}"
        self.client.create_registered_model(name)
        for _ in range(versions):
            self.add_version(name)
        return name

    def add_version(self, name: str) -> str:
        mv = self.client.create_model_version(
            name, self.source, run_id=self.run_id, model_id=self.model_id
        )
        return str(mv.version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)


@pytest.fixture(scope="session")
def registry(mlflow_uri: str) -> Registry:
    return Registry(mlflow_uri)


class Operator:
    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        mlflow_uri: str,
        log_dir: Path,
        webhook: bool = True,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.metrics_port, self.webhook_port, self.health_port = (
            free_port(),
            free_port(),
            free_port(),
        )
        self.log_path = log_dir / f"operator-{namespace}-{uuid.uuid4().hex[:4]}.log"
        # The operator's own settings come from the test alone: a shell that sourced
        # .stack/env exports MODELDEPLOY_ALERTMANAGER_URL and friends, which turned on the alert
        # re-learning some tests do not expect (the standby-handover test failed only there).
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MODELDEPLOY_")
            or k in ("MODELDEPLOY_STACK_DIR", "MODELDEPLOY_KEEP_STACK")
        }
        env = dict(
            inherited,
            KUBECONFIG=cluster.kubeconfig,
            MLFLOW_TRACKING_URI=mlflow_uri,
            MODELDEPLOY_REGISTRY_WEBHOOK_SECRET=WEBHOOK_SECRET,
            # The token the local stack's Alertmanager sends (dev/stack.py alert_token).
            MODELDEPLOY_ALERT_WEBHOOK_TOKEN=devstack.Stack().alert_token(),
        )
        # Where canary steps are judged: the stack's Prometheus, as `.stack/env` gives it to an
        # operator a user starts (absent while the stack runs none: steps then hold).
        prometheus = devstack.Stack().env().get("MODELDEPLOY_PROMETHEUS_URL")
        if prometheus:
            env.setdefault("MODELDEPLOY_PROMETHEUS_URL", prometheus)
        env.update(extra_env or {})
        self.args = [
            str(Path(sys.executable).parent / "modeldeploy"),
            "operator",
            "--namespace",
            namespace,
            "--metrics-port",
            str(self.metrics_port),
            "--webhook-port",
            str(self.webhook_port),
            "--health-port",
            str(self.health_port),
            "--serving-image",
            "example.invalid/serving:test",
        ]
        self.args += extra_args or []
        # A registry webhook of the test's own: other test sessions (or `make demo`) may use the
        # shared MLflow at the same time, and under one name the operator started last anywhere
        # would get every event while this one waited for its next poll.
        self.webhook_name: str | None = None
        if webhook:
            self.args += [
                "--registry-webhook-url",
                f"http://127.0.0.1:{self.webhook_port}/webhooks/mlflow",
            ]
            if "--registry-webhook-name" not in self.args:
                self.webhook_name = f"it-{namespace}"[:60]
                self.args += ["--registry-webhook-name", self.webhook_name]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        import requests

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited {self.proc.returncode}:\n{self.log()}")
            try:
                return requests.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(healthy, 60, "operator /healthz")

        def ready() -> bool:
            # Ready = it has read the Lease and knows whether it leads, as a Service would wait
            # for: before that a webhook gets 503 (no leader known yet).
            healthy()
            try:
                url = f"http://127.0.0.1:{self.webhook_port}/readyz"
                return requests.get(url, timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(ready, 60, "operator /readyz")
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything, as in a node failure."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def metrics(self) -> str:
        import requests

        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text


@pytest.fixture
def start_operator(
    cluster: Cluster, crd: None, mlflow_uri: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(namespace: str, **kwargs: Any) -> Operator:
        op = Operator(cluster, namespace, mlflow_uri, tmp_path, **kwargs).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
    delete_registry_webhooks(mlflow_uri, {op.webhook_name for op in started if op.webhook_name})
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for op in started:
            print(f"--- operator log {op.log_path} ---\n{op.log()}")


def delete_registry_webhooks(mlflow_uri: str, names: set[str]) -> None:
    """The MLflow webhooks a test's operators subscribed under their own names."""
    if not names:
        return
    from mlflow import MlflowClient

    client, token = MlflowClient(tracking_uri=mlflow_uri), None
    while True:
        page = client.list_webhooks(page_token=token)
        for hook in page:
            if hook.name in names:
                client.delete_webhook(hook.webhook_id)
        token = page.token
        if not token:
            return


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


class Kube:
    def __init__(self, cluster: Cluster) -> None:
        api = cluster.api_client()
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.cluster = cluster

    def create_md(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": spec,
        }
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def md(self, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        return self.md(namespace, name).get("status") or {}

    def condition(self, namespace: str, name: str, type_: str) -> dict[str, Any]:
        return next(
            (c for c in self.status(namespace, name).get("conditions", []) if c["type"] == type_),
            {},
        )

    def deployment(self, namespace: str, name: str) -> Any:
        try:
            return self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def events(self, namespace: str, reason: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(namespace).items if e.reason == reason]

    def wait_phase(
        self, namespace: str, name: str, phase: str, timeout: float = 60, serving: str | None = None
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status(namespace, name)
            ok = st.get("phase") == phase and (
                serving is None or st.get("servingVersion") == serving
            )
            return st if ok else None

        return wait_for(check, timeout, f"{namespace}/{name} phase {phase} serving {serving}")


@pytest.fixture(scope="session")
def kube(cluster: Cluster) -> Kube:
    return Kube(cluster)
