"""Hands on what the operator owns: its children edited and deleted, its status wiped or filled
with garbage through the status subresource.

tests/integration/operator/test_hardening.py already shows a deleted Service, ServiceMonitor and
PrometheusRule re-created within seconds; here every child is edited by hand (the operator's
fields put back, nothing rolled out again) and the Deployment, the one that test leaves out, is
deleted. The registry is polled once an hour, so only the operator's watches can notice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import stack as devstack
from kubernetes.client.exceptions import ApiException

from modeldeploy.api import reasons as r
from tests.conftest import Cluster
from tests.integration.faults.conftest import MONITORING, Story
from tests.integration.operator.conftest import GROUP, PLURAL, VERSION, Kube, Registry, wait_for
from tests.integration.operator.test_alert_intake import notification, post
from tests.integration.operator.test_high_availability import reconciled

pytestmark = pytest.mark.faults
ALERT = "ModelHighErrorRate"


@pytest.fixture(autouse=True)
def monitoring_crds(cluster: Cluster) -> None:
    """Every case here waits for MonitoringReady: the CRDs must be there whichever case runs
    first (or alone)."""
    devstack.install_monitoring_crds(cluster.kubectl)


def healthy_md(
    kube: Kube, registry: Registry, namespace: str, name: str, versions: int = 1
) -> tuple[str, Story]:
    model = registry.new_model(versions=versions)
    registry.set_alias(model, "champion", "1")
    spec = {
        "model": {"name": model, "alias": "champion"},
        "registry": {"pollInterval": "1h"},
        "rollback": {"onAlerts": [ALERT]},
    }
    kube.create_md(namespace, name, spec)
    kube.wait_phase(namespace, name, r.HEALTHY, serving="1")
    wait_for(
        lambda: kube.condition(namespace, name, "MonitoringReady").get("status") == "True",
        60,
        "MonitoringReady",
    )
    return model, Story(kube, namespace, name)


def cr(kube: Kube, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return kube.custom.get_namespaced_custom_object(*MONITORING, namespace, plural, name)


def patch_cr(kube: Kube, namespace: str, plural: str, name: str, spec: dict[str, Any]) -> None:
    """A merge patch (lists replaced whole), as `kubectl patch --type merge` sends."""
    kube.custom.patch_namespaced_custom_object(*MONITORING, namespace, plural, name, {"spec": spec})


def absent_is_false(check: Callable[[], bool]) -> bool:
    """`check`, False while the object is absent (a child being replaced)."""
    try:
        return bool(check())
    except (ApiException, AttributeError) as exc:
        if isinstance(exc, ApiException) and exc.status != 404:
            raise
        return False


def test_children_edited_by_hand_get_the_operators_fields_back_without_a_new_rollout(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str, cluster: Cluster
) -> None:
    start_operator(namespace)
    _, story = healthy_md(kube, registry, namespace, "m")
    ns = namespace
    dep = kube.deployment(ns, "m")
    image, replicas = dep.spec.template.spec.containers[0].image, dep.spec.replicas
    container_port = dep.spec.template.spec.containers[0].ports[0].container_port
    svc_port = kube.core.read_namespaced_service("m", ns).spec.ports[0].port
    endpoints = cr(kube, ns, "servicemonitors", "m")["spec"]["endpoints"]
    interval = endpoints[0]["interval"]
    rule = cr(kube, ns, "prometheusrules", "m")["spec"]["groups"]
    before = story.reasons()

    edits: dict[str, tuple[Callable[[], None], Callable[[], bool]]] = {
        "Deployment": (
            lambda: kube.apps.patch_namespaced_deployment(
                "m",
                ns,
                {
                    "spec": {
                        "replicas": replicas + 2,
                        "template": {
                            "spec": {"containers": [{"name": "model", "image": "evil:latest"}]}
                        },
                    }
                },
            ),
            lambda: (
                (d := kube.deployment(ns, "m")).spec.replicas == replicas
                and d.spec.template.spec.containers[0].image == image
            ),
        ),
        # A list item's key renamed: the edited item stays the editor's (see controller/kube.py).
        "Deployment containerPort": (
            lambda: kube.apps.patch_namespaced_deployment(
                "m",
                ns,
                [
                    {
                        "op": "replace",
                        "path": "/spec/template/spec/containers/0/ports/0/containerPort",
                        "value": 1,
                    }
                ],
            ),
            lambda: (
                kube.deployment(ns, "m").spec.template.spec.containers[0].ports[0].container_port
                == container_port
            ),
        ),
        "Service": (
            lambda: kube.core.patch_namespaced_service(
                "m", ns, [{"op": "replace", "path": "/spec/ports/0/port", "value": 1}]
            ),
            lambda: kube.core.read_namespaced_service("m", ns).spec.ports[0].port == svc_port,
        ),
        "ServiceMonitor": (
            lambda: patch_cr(
                kube,
                ns,
                "servicemonitors",
                "m",
                {"endpoints": [{**endpoints[0], "interval": "1h"}]},
            ),
            lambda: (
                cr(kube, ns, "servicemonitors", "m")["spec"]["endpoints"][0]["interval"] == interval
            ),
        ),
        "PrometheusRule": (
            lambda: patch_cr(
                kube,
                ns,
                "prometheusrules",
                "m",
                {"groups": []},
            ),
            lambda: cr(kube, ns, "prometheusrules", "m")["spec"]["groups"] == rule,
        ),
    }
    for kind, (edit, restored) in edits.items():
        t0 = time.monotonic()
        edit()
        wait_for(lambda c=restored: absent_is_false(c), 30, f"{kind}: the operator's fields back")
        print(f"FAULT-TIMING edit-{kind} seconds={time.monotonic() - t0:.1f}")

    wait_for(lambda: story.serves("1"), 60, "version 1 serving")
    reconciled(kube, ns, "m")
    assert story.status()["phase"] == r.HEALTHY
    assert story.history() == [("1", r.OUTCOME_SUCCEEDED)]
    assert story.started("1") == 1
    assert story.reasons()[r.EV_ROLLOUT_SUCCEEDED] == before[r.EV_ROLLOUT_SUCCEEDED] == 1


def test_deleted_deployment_comes_back_serving_the_same_version(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str, cluster: Cluster
) -> None:
    start_operator(namespace)
    _, story = healthy_md(kube, registry, namespace, "m")
    old = kube.deployment(namespace, "m").metadata.uid
    t0 = time.monotonic()
    kube.apps.delete_namespaced_deployment("m", namespace)

    def back() -> bool:
        dep = kube.deployment(namespace, "m")
        return dep is not None and dep.metadata.uid != old and story.serves("1")

    wait_for(back, 60, "the Deployment re-created, version 1 serving")
    kube.wait_phase(namespace, "m", r.HEALTHY, serving="1")
    print(f"FAULT-TIMING delete-Deployment seconds={time.monotonic() - t0:.1f}")
    reconciled(kube, namespace, "m")
    # Observed: the re-created Deployment is reported (the phase leaves Healthy until its pods
    # are ready), but it is the version already serving: not a new rollout.
    print("FAULT-OBSERVED delete-Deployment", story.history(), dict(story.reasons()))
    assert story.history() == [("1", r.OUTCOME_SUCCEEDED)]
    assert story.started("1") == 1


def replace_status(kube: Kube, namespace: str, name: str, status: dict[str, Any]) -> None:
    """PUT on the status subresource: the whole status replaced, as a user with that right can."""
    body = kube.md(namespace, name)
    body["status"] = status
    kube.custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, body
    )


def test_wiped_status_is_rebuilt_from_what_serves_without_a_rollout(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str
) -> None:
    start_operator(namespace)
    _, story = healthy_md(kube, registry, namespace, "m")
    generation = kube.deployment(namespace, "m").metadata.generation
    t0 = time.monotonic()
    replace_status(kube, namespace, "m", {})
    st = kube.wait_phase(namespace, "m", r.HEALTHY, serving="1")
    print(f"FAULT-TIMING status-wiped seconds={time.monotonic() - t0:.1f}")
    reconciled(kube, namespace, "m")
    print("FAULT-OBSERVED status-wiped", story.history(), dict(story.reasons()))
    assert kube.deployment(namespace, "m").metadata.generation == generation  # untouched
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    # The history is rebuilt from what serves (one entry; earlier ones were lost with the
    # status), without a RolloutStarted: nothing was rolled out.
    assert story.history() == [("1", r.OUTCOME_SUCCEEDED)]
    assert story.started("1") == 1


def test_status_wiped_after_a_rollback_keeps_the_rejected_version_out(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str
) -> None:
    op = start_operator(namespace)
    model, story = healthy_md(kube, registry, namespace, "m", versions=2)
    registry.set_alias(model, "champion", "2")
    kube.wait_phase(namespace, "m", r.HEALTHY, serving="2")
    assert post(op, notification(namespace, "m", "2", alert=ALERT)).json() == {"woken": 1}
    kube.wait_phase(namespace, "m", r.ROLLED_BACK, serving="1")
    replace_status(kube, namespace, "m", {})
    wait_for(lambda: story.status().get("phase"), 30, "a status written again")
    reconciled(kube, namespace, "m")
    assert story.template_version() == "1", "the rejected version 2 was rolled out again"
    assert story.status()["servingVersion"] == "1"
