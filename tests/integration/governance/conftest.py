"""Fixtures for the governance commands against the real MLflow server and API server: models
registered fast (one logged model, many versions), the CLI run as users run it (a subprocess of
`.venv/bin/modeldeploy` with MLFLOW_TRACKING_URI and KUBECONFIG), and ModelDeployments whose
status a test writes itself through the status subresource."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stack as devstack

from tests.conftest import DEFAULT_EXPERIMENT, REPO, Cluster

BIN = Path(sys.executable).parent / "modeldeploy"
GROUP, VERSION, PLURAL = "modeldeploy.io", "v1alpha1", "modeldeployments"


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    devstack.apply_crds(cluster.kubectl, [REPO / "crds"], ["modeldeployments.modeldeploy.io"])


class Models:
    """Versions of one tiny sklearn model in the real registry; the model is logged once and
    later versions reuse its artifacts (nothing here loads them)."""

    def __init__(self, uri: str) -> None:
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(uri)
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT) as run:
            info = self.log_model()
        self.source, self.run_id, self.model_id = info.model_uri, run.info.run_id, info.model_id

    @staticmethod
    def log_model() -> Any:
        import mlflow
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
        return mlflow.sklearn.log_model(LogisticRegression().fit(x, y), name="model")

    def new_model(self, versions: int = 1) -> str:
        name = f"gov-{uuid.uuid4().hex[:8]}"
        self.client.create_registered_model(name)
        for _ in range(versions):
            self.add_version(name)
        return name

    def add_version(self, name: str, source: str = "", run_id: str = "", model_id: str = "") -> str:
        mv = self.client.create_model_version(
            name,
            source or self.source,
            run_id=run_id or (None if source else self.run_id),
            model_id=model_id or (None if source else self.model_id),
        )
        return str(mv.version)

    def tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(name, version).tags)

    def aliases(self, name: str) -> dict[str, str]:
        return dict(self.client.get_registered_model(name).aliases)

    def snapshot(self, name: str) -> Any:
        """Everything the commands could write on the model: its tags, aliases, versions' tags."""
        rm = self.client.get_registered_model(name)
        versions = self.client.search_model_versions(f"name = '{name}'")
        return (dict(rm.tags), dict(rm.aliases), {v.version: dict(v.tags) for v in versions})


@pytest.fixture(scope="session")
def models(mlflow_uri: str) -> Models:
    return Models(mlflow_uri)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """`modeldeploy ...` in a subprocess with the environment a user would have."""

    def __init__(self, mlflow_uri: str, kubeconfig: str) -> None:
        self.env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "KUBECONFIG": kubeconfig,
            "MODELDEPLOY_USER": "it-user",
        }

    def __call__(self, *args: str, **env: str) -> Result:
        res = subprocess.run(
            [str(BIN), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Result(res.returncode, res.stdout, res.stderr)


@pytest.fixture(scope="session")
def cli(mlflow_uri: str, cluster: Cluster) -> Cli:
    return Cli(mlflow_uri, cluster.kubeconfig)


class Kube:
    def __init__(self, cluster: Cluster) -> None:
        from kubernetes import client

        api = cluster.api_client()
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def create_md(
        self, namespace: str, name: str, spec: dict[str, Any], status: dict[str, Any]
    ) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )

    def event(self, namespace: str, md: str, reason: str, message: str, at: str) -> None:
        self.core.create_namespaced_event(
            namespace,
            {
                "metadata": {"generateName": f"{md}."},
                "involvedObject": {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ModelDeployment",
                    "name": md,
                    "namespace": namespace,
                },
                "reason": reason,
                "message": message,
                "type": "Warning",
                "firstTimestamp": at,
                "lastTimestamp": at,
                "count": 1,
                "source": {"component": "governance-test"},
            },
        )


@pytest.fixture(scope="session")
def kube(cluster: Cluster, crd: None) -> Kube:
    return Kube(cluster)
