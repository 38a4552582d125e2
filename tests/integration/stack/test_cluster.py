"""The local cluster behaves like a real one where modeldeploy depends on it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import Cluster, wait_for


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "example.invalid/none:1",
                            "ports": [{"containerPort": 8080}],
                        }
                    ]
                },
            },
        },
    }


def test_deployment_reaches_three_available_replicas_and_service_gets_endpoints(
    cluster: Cluster, namespace: str
) -> None:
    api = cluster.api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web", 3))
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )

    # Replicas become available one at a time: wait for all three, not for the first.
    def available() -> bool:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return status.available_replicas == 3

    wait_for(available, what="3 available replicas")

    def ready_addresses() -> int:
        slices = (
            client.DiscoveryV1Api(api)
            .list_namespaced_endpoint_slice(
                namespace, label_selector="kubernetes.io/service-name=web"
            )
            .items
        )
        return sum(
            1 for s in slices for e in (s.endpoints or []) if e.conditions and e.conditions.ready
        )

    assert wait_for(lambda: ready_addresses() == 3)
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert {p.status.phase for p in pods} == {"Running"}
    assert all(p.spec.node_name.startswith("kwok-node-") for p in pods)


def test_deleting_owner_garbage_collects_owned_child(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api_client())
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "child",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                        "blockOwnerDeletion": True,
                    }
                ],
            }
        },
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})

    core.delete_namespaced_config_map("owner", namespace)

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    assert wait_for(child_gone)
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.stacktest.modeldeploy.io"},
    "spec": {
        "group": "stacktest.modeldeploy.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10}
                                },
                                "x-kubernetes-validations": [
                                    {"rule": "self.size != 7", "message": "seven is unlucky"}
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_schema_refuses_invalid_object_naming_the_field(
    cluster: Cluster, namespace: str
) -> None:
    api = cluster.api_client()
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(WIDGET_CRD)
    except ApiException as exc:
        assert exc.status == 409  # already there from an earlier run against the same stack
    custom = client.CustomObjectsApi(api)

    def create(spec: dict[str, Any]) -> Any:
        return custom.create_namespaced_custom_object(
            "stacktest.modeldeploy.io",
            "v1",
            namespace,
            "widgets",
            {
                "apiVersion": "stacktest.modeldeploy.io/v1",
                "kind": "Widget",
                "metadata": {"generateName": "w-"},
                "spec": spec,
            },
        )

    def served() -> bool:
        try:
            create({"size": 3})
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    assert wait_for(served, timeout=30)
    with pytest.raises(ApiException) as too_big:
        create({"size": 11})
    assert too_big.value.status == 422
    assert "spec.size" in too_big.value.body
    with pytest.raises(ApiException) as cel:
        create({"size": 7})
    assert cel.value.status == 422
    assert "seven is unlucky" in cel.value.body


def test_pod_security_admission_refuses_privileged_pod_in_restricted_namespace(
    cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api_client())
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    privileged = {
        "metadata": {"name": "root"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "example.invalid/none:1",
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, privileged)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:' in message
    assert "privileged" in message

    restricted = {
        "metadata": {"name": "ok"},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "c",
                    "image": "example.invalid/none:1",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    assert core.create_namespaced_pod(namespace, restricted).metadata.name == "ok"
