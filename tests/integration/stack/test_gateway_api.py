"""The local cluster knows the Gateway API's HTTPRoute (issue 12: a canary's exact weights live
on the backendRefs of a route the user names), installed from the pinned release."""

from __future__ import annotations

from typing import Any

import pytest
import stack as devstack  # tests/conftest.py puts dev/ on sys.path
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import Cluster

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
JSON_PATCH = "application/json-patch+json"  # the client sends merge patches otherwise


def route(name: str, stable: int, canary: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "m", "port": 8080, "weight": stable},
                        {"name": "m-canary", "port": 8080, "weight": canary},
                    ]
                }
            ],
        },
    }


def weights(obj: dict[str, Any]) -> list[tuple[str, int]]:
    return [(b["name"], b["weight"]) for b in obj["spec"]["rules"][0]["backendRefs"]]


def test_httproute_crd_is_established_from_the_pinned_release(cluster: Cluster) -> None:
    ext = client.ApiextensionsV1Api(cluster.api_client())
    crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    established = {c.type: c.status for c in crd.status.conditions}["Established"]
    assert established == "True"
    pinned = devstack.read_versions()["GATEWAY_API_VERSION"]
    assert crd.metadata.annotations[devstack.GATEWAY_BUNDLE_VERSION] == pinned
    assert [v.name for v in crd.spec.versions if v.served and v.storage] == ["v1"]
    assert devstack.gateway_crds_current(cluster.kubectl)


def test_weighted_httproute_is_stored_and_its_weights_patched_only_when_unchanged(
    cluster: Cluster, namespace: str
) -> None:
    api = client.CustomObjectsApi(cluster.api_client())
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, route("r", 90, 10))
    got = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "r")
    assert weights(got) == [("m", 90), ("m-canary", 10)]
    assert got["spec"]["rules"][0]["backendRefs"][0]["kind"] == "Service"  # the CRD's default

    # The operator's way of moving weights (design of issue 12): a JSON patch whose test ops
    # make it apply only to the route as it was read, so it never fights the route's owner.
    path = "/spec/rules/0/backendRefs"
    patch = [
        {"op": "test", "path": f"{path}/0/name", "value": "m"},
        {"op": "test", "path": f"{path}/1/name", "value": "m-canary"},
        {"op": "replace", "path": f"{path}/0/weight", "value": 50},
        {"op": "replace", "path": f"{path}/1/weight", "value": 50},
    ]
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "r", patch, _content_type=JSON_PATCH
    )
    got = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "r")
    assert weights(got) == [("m", 50), ("m-canary", 50)]

    stale = [{"op": "test", "path": f"{path}/1/name", "value": "somebody-else"}, *patch[2:]]
    with pytest.raises(ApiException) as refused:
        api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "r", stale, _content_type=JSON_PATCH
        )
    assert refused.value.status == 422, refused.value.body
    got = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "r")
    assert weights(got) == [("m", 50), ("m-canary", 50)]
