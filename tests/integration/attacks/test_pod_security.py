"""The pods the operator generates are admitted under Pod Security "restricted", as the real
kube-apiserver's PodSecurity admission (on by default; the local cluster sets no admission
flags) enforces it: a ModelDeployment in a namespace labelled enforce=restricted, its Deployment
applied by the operator, and its pods created by the real controller-manager (kwok runs them),
with no FailedCreate. A negative control shows the admission does refuse a non-compliant pod in
that namespace, so the positive result means something.

The operator's own pod template (chart and kustomize base) is admitted under the same label in
tests/integration/chart/test_install.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.conftest import wait_for
from tests.integration.operator.conftest import Kube, Registry

pytestmark = pytest.mark.attacks

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def restrict(kube: Kube, namespace: str) -> None:
    kube.core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})


def failed_creates(kube: Kube, namespace: str) -> list[str]:
    return [
        f"{e.involved_object.name}: {e.message}" for e in kube.events(namespace, "FailedCreate")
    ]


def test_a_non_compliant_pod_is_refused_in_a_restricted_namespace(
    kube: Kube, namespace: str
) -> None:
    """The negative control: without it, pods being admitted would prove nothing."""
    restrict(kube, namespace)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "loose"},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/x:1"}]},
    }
    with pytest.raises(ApiException) as refused:
        kube.core.create_namespaced_pod(namespace, pod)
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:' in json.loads(refused.value.body)["message"]


def test_generated_pods_are_admitted_under_restricted_pod_security(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str
) -> None:
    restrict(kube, namespace)
    kube.core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "registry-creds"}, "stringData": {"MLFLOW_TRACKING_TOKEN": "t"}},
    )
    model = registry.new_model()
    start_operator(namespace)
    # Every spec field that reaches the pod template, set: none may loosen it.
    spec = {
        "model": {"name": model, "version": "1"},
        "registry": {"credentialsSecret": "registry-creds"},
        "serving": {
            "replicas": 2,
            "env": [{"name": "EXTRA", "value": "1"}],
            "resources": {"requests": {"cpu": "10m"}, "limits": {"memory": "256Mi"}},
            "imagePullPolicy": "IfNotPresent",
            "port": 8080,
        },
    }
    kube.create_md(namespace, "psa", spec)

    def pods() -> list[Any]:
        items = kube.core.list_namespaced_pod(namespace).items
        return [p for p in items if p.metadata.name.startswith("psa-")]

    wait_for(lambda: kube.deployment(namespace, "psa"), 60, "the operator's Deployment")
    wait_for(
        lambda: len(pods()) == 2 or failed_creates(kube, namespace),
        60,
        "two pods created by the controller-manager, or a FailedCreate",
    )
    assert failed_creates(kube, namespace) == []
    kube.wait_phase(namespace, "psa", "Healthy", serving="1", timeout=90)
    for pod in pods():
        assert pod.status.phase == "Running", pod.status
        (container,) = pod.spec.containers
        assert container.security_context.capabilities.drop == ["ALL"]
    # The pods' own Deployment says the same: nothing failed to be created.
    deploy = kube.deployment(namespace, "psa")
    assert (deploy.status.ready_replicas or 0) == 2
    conditions = {c.type: c for c in deploy.status.conditions or []}
    assert "ReplicaFailure" not in conditions, conditions["ReplicaFailure"].message
