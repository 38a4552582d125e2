"""An operator with nothing to do writes nothing to the API server, restarted or not (issue 14:
at 1000 ModelDeployments the idle operator sent 6 to 8 writes per object per minute, every one a
server-side apply of an unchanged child), and it still repairs a child edited by hand. Nor does
it read its ModelDeployments with GETs: the watch and its own writes' answers keep them.

Writes are counted on the operator's own client (`modeldeploy_kube_requests_total`, counted in
the real kubernetes client's `call_api`): the API server's own request counters are shared with
whatever else uses the stack, and a no-op apply changes no resourceVersion a watch could see.
"""

from __future__ import annotations

from typing import Any

import stack as devstack
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy import names
from modeldeploy.api import reasons as r
from tests.conftest import Cluster
from tests.integration.operator.conftest import Kube, Operator, Registry, wait_for

# The operator's poll interval (the spec's floor is 5s): its registry poller asks each second.
POLL = ["--poll-interval", "1s"]


def counted(op: Operator) -> dict[str, Any]:
    """Writes by "METHOD resource" (without the leader Lease's renewals), GETs of
    ModelDeployments, reconciles and registry calls so far."""
    writes: dict[str, float] = {}
    reconciles = registry_calls = md_reads = 0.0
    for family in text_string_to_metric_families(op.metrics()):
        for s in family.samples:
            if s.name == names.OP_KUBE_REQUESTS:
                method, resource = s.labels["method"], s.labels["resource"]
                if method != "GET" and resource != "leases" and s.value:
                    writes[f"{method} {resource}"] = s.value
                if (method, resource) == ("GET", names.PLURAL):
                    md_reads += s.value
            elif s.name == f"{names.OP_RECONCILE_SECONDS}_count":
                reconciles += s.value
            elif s.name == names.OP_REGISTRY_REQUESTS:
                registry_calls += s.value
    return {
        "writes": writes,
        "reconciles": reconciles,
        "registry": registry_calls,
        "md_reads": md_reads,
    }


def after(op: Operator, what: str, more: int) -> dict[str, float]:
    """The writes counted once `more` further reconciles or registry calls have happened."""
    start = counted(op)[what]
    wait_for(lambda: counted(op)[what] >= start + more, 60, f"{more} more {what}")
    writes: dict[str, float] = counted(op)["writes"]
    return writes


def test_idle_and_restarted_operator_write_nothing_and_a_hand_edit_is_still_repaired(
    kube: Kube, registry: Registry, start_operator: Any, namespace: str, cluster: Cluster
) -> None:
    devstack.install_monitoring_crds(cluster.kubectl)  # all four children
    model = registry.new_model()
    registry.set_alias(model, "champion", "1")
    op = start_operator(namespace, extra_args=POLL)
    kube.create_md(namespace, "m", {"model": {"name": model, "alias": "champion"}})
    kube.wait_phase(namespace, "m", r.HEALTHY, serving="1")
    wait_for(
        lambda: kube.condition(namespace, "m", "MonitoringReady").get("status") == "True",
        60,
        "MonitoringReady",
    )
    rolled_out = counted(op)["writes"]
    assert rolled_out  # the rollout itself was counted: the counter sees writes
    assert after(op, "registry", 2) == rolled_out  # polled, the answer unchanged
    # An edit that leaves the operator's fields alone: a reconcile, and nothing to apply. (A
    # label: a Deployment's annotation bumps its generation, a short rollout of its own.)
    kube.apps.patch_namespaced_deployment("m", namespace, {"metadata": {"labels": {"team": "a"}}})
    assert after(op, "reconciles", 1) == rolled_out
    # Every reconcile read the ModelDeployment from the watch and its own status writes' answers.
    assert counted(op)["md_reads"] == 0

    op.stop()
    again = start_operator(namespace, extra_args=POLL)
    assert after(again, "reconciles", 1) == {}  # the first look after a start

    replicas = kube.deployment(namespace, "m").spec.replicas
    kube.apps.patch_namespaced_deployment("m", namespace, {"spec": {"replicas": replicas + 3}})
    wait_for(
        lambda: kube.deployment(namespace, "m").spec.replicas == replicas, 30, "replicas repaired"
    )
    assert counted(again)["writes"].get("PATCH deployments") == 1
