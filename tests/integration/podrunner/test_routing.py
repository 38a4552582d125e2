"""e2e traffic (tests/e2e/conftest.py `Traffic`) lands where the cluster would send it: on the
real serving processes of the pods a Service selects, and through an HTTPRoute in proportion
to its backendRef weights, following changes to both within a second.

The objects are the shapes of issue 12's canary with a route (stable and canary Deployments
whose pods differ by `modeldeploy.io/track`, one Service each), written by the test itself from
the operator's renderings: the operator does not run here."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import classifier_model  # dev/ modules (tests/conftest.py puts dev/ on sys.path)
import podrunner
import pytest
from kubernetes import client

from modeldeploy import names
from modeldeploy.api.spec import parse_spec
from modeldeploy.render import objects as render
from modeldeploy.render.objects import RenderContext
from tests.conftest import DEFAULT_EXPERIMENT, Cluster, TestStack
from tests.e2e.conftest import CLASSIFIER_INPUT, Traffic

TRACK = "modeldeploy.io/track"
ROUTES = ("gateway.networking.k8s.io", "v1", "httproutes")
JSON_PATCH = "application/json-patch+json"


@pytest.fixture(scope="module")
def model(mlflow_uri: str) -> str:
    """Version 1 the good classifier, version 2 the drifted one."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri)
    name = f"routing-{uuid.uuid4().hex[:6]}"
    for version in (classifier_model.good(), classifier_model.drifted()):
        with mlflow.start_run(experiment_id=DEFAULT_EXPERIMENT):
            classifier_model.log(version, registered_model_name=name)
    return name


def deployment(
    namespace: str, model: str, mlflow_uri: str, version: str, track: str, replicas: int
) -> Any:
    """The operator's Deployment of `m` serving `version`, its pods (and selector) labelled
    with `track`; the canary's is named m-canary."""
    spec = parse_spec({"model": {"name": model, "version": version}})
    ctx = RenderContext(
        name="m",
        namespace=namespace,
        uid=str(uuid.uuid4()),
        spec=spec,
        version=version,
        model_uri=f"models:/{model}/{version}",
        run_id="",
        image="example.invalid/modeldeploy-serving:test",  # kwok runs nothing
        tracking_uri=mlflow_uri,
        serving_env=(("MODELDEPLOY_TRUST_MODEL_CODE", "registry"),),  # as the operator sets
    )
    obj = render.build_deployment(ctx)
    obj["metadata"].pop("ownerReferences", None)  # no ModelDeployment exists to own it
    obj["metadata"]["name"] = "m" if track == "stable" else "m-canary"
    obj["spec"]["replicas"] = replicas
    obj["spec"]["selector"]["matchLabels"][TRACK] = track
    obj["spec"]["template"]["metadata"]["labels"][TRACK] = track
    return obj


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 8080}]},
    }


@pytest.fixture
def pods(stack: TestStack, cluster: Cluster, namespace: str) -> Iterator[podrunner.LocalPods]:
    runner = podrunner.LocalPods(
        namespace, stack=stack.stack, kubeconfig=cluster.kubeconfig, prometheus=False
    )
    yield runner
    runner.close()


def served_after(traffic: Traffic, since: float) -> Counter[str]:
    return Counter(v for (v, code), n in traffic.answers(since).items() for _ in range(n))


def test_traffic_follows_service_selectors_and_httproute_weights(
    cluster: Cluster,
    namespace: str,
    mlflow_uri: str,
    model: str,
    pods: podrunner.LocalPods,
) -> None:
    api = cluster.api_client()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    md = {names.LABEL_MODELDEPLOYMENT: "m", names.LABEL_MANAGED_BY: "modeldeploy"}
    core.create_namespaced_service(namespace, service("m", md))  # stable and canary pods
    core.create_namespaced_service(namespace, service("m-canary", {**md, TRACK: "canary"}))
    for version, track, replicas in (("1", "stable", 2), ("2", "canary", 1)):
        obj = deployment(namespace, model, mlflow_uri, version, track, replicas)
        apps.create_namespaced_deployment(namespace, obj)
    pods.start()
    pods.wait(lambda: len(pods.endpoints("m")) == 3, 90, "2 stable and 1 canary process")
    eps = pods.endpoints_for_selector(namespace, {**md, TRACK: "canary"})
    assert [(e.version, e.labels[TRACK]) for e in eps] == [("2", "canary")]
    assert len(pods.endpoints_for_selector(namespace, md)) == 3
    assert pods.endpoints_for_selector(namespace, {}) == []

    with Traffic(pods, "m", good=CLASSIFIER_INPUT) as traffic:
        # Service m selects both tracks: round-robin over 3 pods, 2 of them version 1.
        time.sleep(3)
        shares = served_after(traffic, 0.0)
        assert abs(shares["1"] - 2 * shares["2"]) <= 2, shares
        # Stable only from now on: within ~0.5 s (one read) no request reaches the canary.
        core.patch_namespaced_service("m", namespace, {"spec": {"selector": {TRACK: "stable"}}})
        switched = time.monotonic()
        time.sleep(2.5)
        assert set(served_after(traffic, switched + 1.0)) == {"1"}
        assert not traffic.failures(), traffic.failures()

    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "m", "port": 8080, "weight": 75},
                        {"name": "m-canary", "port": 8080, "weight": 25},
                    ]
                }
            ],
        },
    }
    custom.create_namespaced_custom_object(*ROUTES[:2], namespace, ROUTES[2], route)
    with Traffic(pods, "m", route="r", good=CLASSIFIER_INPUT, rate=80) as traffic:
        time.sleep(3)
        shares = served_after(traffic, 0.0)
        total = shares["1"] + shares["2"]
        assert total >= 100 and abs(shares["2"] - total / 4) <= 1, shares
        weights = "/spec/rules/0/backendRefs"
        patch = [
            {"op": "replace", "path": f"{weights}/0/weight", "value": 0},
            {"op": "replace", "path": f"{weights}/1/weight", "value": 100},
        ]
        custom.patch_namespaced_custom_object(
            *ROUTES[:2], namespace, ROUTES[2], "r", patch, _content_type=JSON_PATCH
        )
        switched = time.monotonic()
        time.sleep(2.5)
        assert set(served_after(traffic, switched + 1.0)) == {"2"}
        assert not traffic.failures(), traffic.failures()
    # Both versions answered every request; the drifted one with its skewed classes.
    assert {code for _, code in traffic.codes} == {200}
