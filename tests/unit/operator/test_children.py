"""Apply only what differs, read children from the watches (controller/children.py).

The rules under test (issue 14):
* an idle reconcile writes nothing, and neither does the first reconcile of a restarted operator
  (nothing of the decision lives only in memory);
* a child edited by hand is still repaired, and a field the operator stopped setting is still
  removed (a new manifest is applied even though the live object contains it);
* a child read from the watches is never older than one already known;
* the ModelDeployment is read from memory too, and a status planned from a copy older than the
  API server's is never written (optimistic concurrency), but planned again from a fresh read.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.controller.children import (
    ChildStore,
    Informed,
    contains,
    manifest_hash,
    stamped,
    up_to_date,
)
from modeldeploy.controller.kube import Conflict, resource_of
from modeldeploy.controller.metrics import OperatorMetrics
from modeldeploy.controller.reconciler import OperatorConfig, Reconciler
from modeldeploy.registry.cache import ResolutionCache
from tests.unit.operator.fakes import FakeKube, FakeRegistry

NS, NAME, MODEL = "ml", "fraud", "fraud-detector"
REGISTRY = "http://registry.test:5000"
WRITES = ("apply", "delete", "patch", "status", "event")


def writes(kube: FakeKube) -> list[str]:
    return [c for c in kube.calls if c.startswith(WRITES)]


def service(port: int = 8080, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NS, "labels": {"app": NAME}},
        "spec": {"ports": [{"name": "http", "port": port}], **extra},
    }


@pytest.mark.parametrize(
    ("live", "desired", "expected"),
    [
        pytest.param({"a": 1, "b": 2}, {"a": 1}, True, id="server-added-field"),
        pytest.param({"a": [{"x": 1, "p": "TCP"}]}, {"a": [{"x": 1}]}, True, id="item-defaults"),
        pytest.param({"a": 2}, {"a": 1}, False, id="changed-value"),
        pytest.param({}, {"a": 1}, False, id="removed-field"),
        pytest.param({"a": [1, 2]}, {"a": [1]}, False, id="extra-list-item"),
        pytest.param({"a": 1}, {"a": True}, False, id="bool-is-not-int"),
        pytest.param({}, {"a": None}, True, id="null-matches-absent"),
        pytest.param({"a": "1"}, {"a": 1}, False, id="string-is-not-int"),
    ],
)
def test_contains_errs_towards_applying(live: Any, desired: Any, expected: bool) -> None:
    assert contains(live, desired) is expected


def test_the_hash_ignores_its_own_annotation_and_sees_every_other_field() -> None:
    assert manifest_hash(stamped(service())) == manifest_hash(service())
    assert manifest_hash(service(8081)) != manifest_hash(service())
    stored = stamped(service())
    assert stored["metadata"]["annotations"][names.ANNOTATION_APPLIED_HASH]
    assert "annotations" not in service()["metadata"]  # the caller's object is left alone


def test_a_field_the_operator_stopped_setting_is_applied_away() -> None:
    """The live object still contains the new, smaller manifest; only the hash tells that the
    last apply set more (server-side apply removes the field it no longer sends)."""
    live = stamped(service(type="ClusterIP"))
    assert up_to_date(service(type="ClusterIP"), live)
    assert contains(live, service())
    assert not up_to_date(service(), live)


def test_second_apply_of_the_same_manifest_writes_nothing() -> None:
    kube, store = FakeKube(), ChildStore()
    informed = Informed(kube, store)
    informed.apply(service())
    informed.apply(service())
    assert writes(kube) == ["apply Service"]


def test_restarted_operator_with_nothing_changed_writes_nothing() -> None:
    kube = FakeKube()
    Informed(kube, ChildStore()).apply(service())
    fresh = Informed(kube, ChildStore())  # a new process: an empty store, the same cluster
    fresh.apply(service())
    assert writes(kube) == ["apply Service"]


def test_a_hand_edit_seen_by_the_watch_is_repaired() -> None:
    kube, store = FakeKube(), ChildStore()
    informed = Informed(kube, store)
    informed.apply(service())
    live = kube.objects[("Service", NS, NAME)]
    live["spec"]["ports"][0]["port"] = 1  # kubectl edit
    store.seen("MODIFIED", copy.deepcopy(live))
    informed.apply(service())
    assert writes(kube) == ["apply Service", "apply Service"]
    assert kube.objects[("Service", NS, NAME)]["spec"]["ports"][0]["port"] == 8080


def test_a_deleted_child_is_applied_again() -> None:
    kube, store = FakeKube(), ChildStore()
    informed = Informed(kube, store)
    informed.apply(service())
    gone = kube.objects.pop(("Service", NS, NAME))
    store.seen("DELETED", gone)
    informed.apply(service())
    assert writes(kube) == ["apply Service", "apply Service"]


class ReadCounting(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append("Deployment")
        return super().get_deployment(namespace, name)

    def get_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        self.reads.append(kind)
        return super().get_object(api_version, kind, namespace, name)


def test_a_miss_during_the_initial_listing_is_read_and_one_after_it_is_not() -> None:
    """While a kind's watch is still listing, a miss may be a child not yet seen (a restart:
    reading it is what keeps the restart free of writes); once the watch is past the listing, a
    miss is a child that does not exist (a new ModelDeployment: no GET answered 404)."""
    kube, store = ReadCounting(), ChildStore()
    informed = Informed(kube, store)
    other = service()
    other["metadata"]["name"] = "other"
    store.seen(None, other)
    assert informed.get_object("v1", "Service", NS, NAME) is None
    assert kube.reads == ["Service"]
    store.seen("ADDED", other)
    assert informed.get_object("v1", "Service", NS, NAME) is None
    informed.apply(service())
    assert kube.reads == ["Service"]  # neither the read nor the apply asked again
    assert writes(kube) == ["apply Service"]
    assert informed.get_deployment(NS, NAME) is None  # Deployments still listing: read
    assert kube.reads == ["Service", "Deployment"]


def test_an_unwatched_kind_is_read_before_each_decision() -> None:
    """No event would report an edit of an HPA: a stored body could hide it for good."""
    kube, store = FakeKube(), ChildStore()
    informed = Informed(kube, store)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"maxReplicas": 4},
    }
    informed.apply(hpa)
    informed.apply(hpa)
    kube.objects[("HorizontalPodAutoscaler", NS, NAME)]["spec"]["maxReplicas"] = 40
    informed.apply(hpa)
    assert writes(kube) == ["apply HorizontalPodAutoscaler"] * 2
    assert len(store) == 0


def test_an_older_event_does_not_replace_a_newer_body() -> None:
    store = ChildStore()
    new, old = service(), service(1)
    new["metadata"]["resourceVersion"], old["metadata"]["resourceVersion"] = "12", "11"
    store.put(new)
    store.seen("MODIFIED", old)  # the event of the state before our apply, arriving after it
    assert store.get("Service", NS, NAME)["spec"]["ports"][0]["port"] == 8080  # type: ignore[index]
    store.seen(None, {**new, "metadata": {**new["metadata"], "managedFields": [{"x": 1}]}})
    assert "managedFields" not in store.get("Service", NS, NAME)["metadata"]  # type: ignore[index]


def test_the_store_hands_out_copies_independent_of_the_event_body() -> None:
    """Bodies are stored encoded: neither the event's body (kopf's) changing afterwards nor a
    reader changing what it got can change what the next reader sees."""
    store = ChildStore()
    body = service()
    store.seen("ADDED", body)
    body["spec"]["ports"][0]["port"] = 1
    got = store.get("Service", NS, NAME)
    assert got is not None and got["spec"]["ports"][0]["port"] == 8080
    got["spec"]["ports"][0]["port"] = 2
    assert store.get("Service", NS, NAME)["spec"]["ports"][0]["port"] == 8080  # type: ignore[index]


def test_an_idle_reconcile_makes_no_api_write_even_after_a_restart() -> None:
    kube = FakeKube(monitoring=frozenset({"ServiceMonitor", "PrometheusRule"}))
    kube.add_md(NS, NAME, {"model": {"name": MODEL, "alias": "champion"}})
    rec = reconciler_over(kube, ChildStore())
    rec.reconcile((NS, NAME))
    kube.finish_rollout(NS, NAME)
    rec.kube.store.seen("MODIFIED", kube.objects[("Deployment", NS, NAME)])  # type: ignore[attr-defined]
    rec.reconcile((NS, NAME))
    assert kube.status(NS, NAME)["phase"] == "Healthy"
    assert {c.split()[-1] for c in writes(kube) if c.startswith("apply")} == {
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    }
    kube.calls.clear()
    rec.reconcile((NS, NAME))
    reconciler_over(kube, ChildStore()).reconcile((NS, NAME))  # a restarted operator
    assert writes(kube) == []


@pytest.mark.parametrize(
    ("url", "resource"),
    [
        ("https://k:6443/apis/apps/v1/namespaces/ml/deployments/fraud", "deployments"),
        (
            "https://k:6443/apis/modeldeploy.io/v1alpha1/namespaces/ml/modeldeployments/f/status",
            "modeldeployments/status",
        ),
        ("https://k:6443/api/v1/namespaces/ml/events", "events"),
        ("https://k:6443/api/v1/namespaces/ml", "namespaces"),
        (
            "https://k:6443/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.y?watch=1",
            "customresourcedefinitions",
        ),
        ("https://k:6443/apis", "discovery"),
        ("https://k:6443/version", "other"),
    ],
)
def test_each_request_is_counted_under_the_resource_it_names(url: str, resource: str) -> None:
    assert resource_of(url) == resource


class CountingKube(FakeKube):
    def __init__(self) -> None:
        super().__init__(monitoring=frozenset({"ServiceMonitor", "PrometheusRule"}))
        self.md_reads = 0

    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.md_reads += 1
        return super().get_modeldeployment(namespace, name)


def reconciler_over(kube: FakeKube, store: ChildStore) -> Reconciler:
    registry = FakeRegistry()
    registry.versions[MODEL] = {"1"}
    registry.aliases[(MODEL, "champion")] = "1"
    return Reconciler(
        Informed(kube, store),  # type: ignore[arg-type]
        OperatorConfig(
            default_tracking_uri=REGISTRY,
            serving_env=(("MODELDEPLOY_TRUST_MODEL_CODE", "registry"),),
        ),
        ResolutionCache(),
        OperatorMetrics(),
        client_factory=registry.factory,  # type: ignore[arg-type]
    )


def test_the_modeldeployment_is_read_from_its_watch_and_our_own_status_writes() -> None:
    kube, store = CountingKube(), ChildStore()
    kube.add_md(NS, NAME, {"model": {"name": MODEL, "alias": "champion"}})
    store.seen(None, kube.mds[(NS, NAME)])  # the initial listing
    rec = reconciler_over(kube, store)
    rec.reconcile((NS, NAME))
    # No watch event of that status write came: the store holds the write's answer.
    stored = store.get(names.KIND, NS, NAME)
    assert stored is not None and stored["status"]["phase"] == "Progressing"
    kube.finish_rollout(NS, NAME)
    store.seen("MODIFIED", kube.objects[("Deployment", NS, NAME)])
    rec.reconcile((NS, NAME))
    assert kube.status(NS, NAME)["phase"] == "Healthy"
    kube.calls.clear()
    rec.reconcile((NS, NAME))
    assert writes(kube) == []  # planned from the Healthy status it wrote itself
    assert kube.md_reads == 0


def test_a_status_planned_from_a_stale_copy_is_refused_and_replanned_from_a_fresh_read() -> None:
    kube, store = CountingKube(), ChildStore()
    kube.add_md(NS, NAME, {"model": {"name": MODEL, "alias": "champion"}})
    store.seen(None, copy.deepcopy(kube.mds[(NS, NAME)]))
    # Written after the store's copy, its watch event not arrived yet: a status another replica
    # wrote just before this one took the lease.
    kube.mds[(NS, NAME)]["metadata"]["resourceVersion"] = "7"
    kube.set_status(NS, NAME, {"phase": "Healthy", "note": "written by the old leader"})
    rec = reconciler_over(kube, store)
    with pytest.raises(Conflict):
        rec.reconcile((NS, NAME))
    assert kube.status(NS, NAME)["note"] == "written by the old leader"  # nothing overwritten
    rec.reconcile((NS, NAME))  # the worker's retry
    assert kube.md_reads == 1
    status = kube.status(NS, NAME)
    assert status["phase"] == "Progressing"
    # The patch was computed from the fresh status, so what only the stale copy lacked is gone.
    assert "note" not in status
