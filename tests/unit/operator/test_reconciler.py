"""The reconcile loop (observe → plan → apply → status) against in-memory fakes of its two
doors: what is written in which order, and what a failure in between leaves behind.

The rules under test (issue: status tells the truth):
* conditions that report the world are written only after the apply that makes them true;
* a rollback decision is stored before any child is touched, and announced once stored;
* Events and counters follow a successful status write, so a failed apply loses none and
  repeats none;
* a lost status is rebuilt from what serves without rollout Events;
* an invalid spec keeps the rest of the status;
* the operator's own registry credentials go only to its own registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.alerts.store import AlertStore
from modeldeploy.api import reasons as r
from modeldeploy.controller.metrics import OperatorMetrics
from modeldeploy.controller.reconciler import OperatorConfig, Reconciler, same_server
from modeldeploy.governance import records
from modeldeploy.registry.cache import ResolutionCache
from tests.unit.operator.fakes import FakeKube, FakeRegistry, FakeRegistryClient

NS, NAME, MODEL = "ml", "fraud", "fraud-detector"
REGISTRY = "http://registry.test:5000"
OPERATOR_CREDS = {"MLFLOW_TRACKING_USERNAME": "operator", "MLFLOW_TRACKING_PASSWORD": "s3cret"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def world() -> Iterator[tuple[FakeKube, FakeRegistry, Reconciler, AlertStore]]:
    kube = FakeKube(monitoring=frozenset({"ServiceMonitor", "PrometheusRule"}))
    registry = FakeRegistry()
    registry.versions[MODEL] = {"1", "2"}
    registry.aliases[(MODEL, "champion")] = "1"
    alerts = AlertStore()
    rec = Reconciler(
        kube,  # type: ignore[arg-type]
        OperatorConfig(
            default_tracking_uri=REGISTRY,
            default_credentials=OPERATOR_CREDS,
            serving_env=(("MODELDEPLOY_TRUST_MODEL_CODE", "registry"),),
        ),
        ResolutionCache(),
        OperatorMetrics(),
        alerts,
        clock=Clock(),
        client_factory=registry.factory,  # type: ignore[arg-type]
    )
    kube.add_md(NS, NAME, {"model": {"name": MODEL, "alias": "champion"}})
    yield kube, registry, rec, alerts


def cond(status: dict[str, Any], type_: str) -> tuple[str, str]:
    c = next(c for c in status.get("conditions", []) if c["type"] == type_)
    return c["status"], c["reason"]


def serve(kube: FakeKube, rec: Reconciler, version: str) -> None:
    """Reconcile until `version` is rolled out and Healthy."""
    rec.cache.invalidate_model(MODEL)
    rec.reconcile((NS, NAME))
    kube.finish_rollout(NS, NAME)
    rec.reconcile((NS, NAME))
    st = kube.status(NS, NAME)
    assert (st["phase"], st["servingVersion"]) == (r.HEALTHY, version)


def test_status_is_written_after_the_children_it_reports(world: Any) -> None:
    kube, _, rec, _ = world
    rec.reconcile((NS, NAME))
    first_status = kube.calls.index("status")
    applied = [c for c in kube.calls[:first_status] if c.startswith("apply")]
    assert applied == [
        "apply Deployment",
        "apply Service",
        "apply ServiceMonitor",
        "apply PrometheusRule",
    ]
    assert cond(kube.status(NS, NAME), r.MONITORING_READY) == ("True", r.MONITORING_APPLIED)
    # Events only after the write that records them.
    assert kube.calls.index("event RolloutStarted") > first_status


def test_a_failed_apply_writes_no_status_and_loses_no_event(world: Any) -> None:
    kube, _, rec, _ = world
    kube.fail_apply = lambda obj: obj["kind"] == "PrometheusRule"
    with pytest.raises(RuntimeError, match="PrometheusRule"):
        rec.reconcile((NS, NAME))
    assert "status" not in kube.calls and kube.events == []
    assert kube.status(NS, NAME) == {}  # nothing claims MonitoringReady

    kube.fail_apply = lambda obj: False
    rec.reconcile((NS, NAME))
    rec.reconcile((NS, NAME))  # nothing new: no write, no Event
    assert kube.calls.count("status") == 1
    assert kube.reasons().count(r.EV_ROLLOUT_STARTED) == 1
    assert rec.metrics.rollouts_started.labels(NS, NAME)._value.get() == 1


def test_unchanged_world_writes_nothing(world: Any) -> None:
    kube, _, rec, _ = world
    serve(kube, rec, "1")
    writes, events = kube.calls.count("status"), len(kube.events)
    rec.cache.invalidate_model(MODEL)
    rec.reconcile((NS, NAME))
    assert (kube.calls.count("status"), len(kube.events)) == (writes, events)


def firing(alerts: AlertStore, version: str) -> None:
    labels = {
        "alertname": names.ALERT_HIGH_ERROR_RATE,
        names.PROM_NAMESPACE: NS,
        names.PROM_MODELDEPLOYMENT: NAME,
        names.PROM_MODEL_VERSION: version,
    }
    heard = (T0 + timedelta(hours=1)).timestamp()
    alerts.apply_notification({"alerts": [{"status": "firing", "labels": labels}]}, heard)


def test_rollback_is_stored_before_the_apply_and_survives_its_failure(world: Any) -> None:
    kube, registry, rec, alerts = world
    serve(kube, rec, "1")
    registry.aliases[(MODEL, "champion")] = "2"
    serve(kube, rec, "2")
    firing(alerts, "2")
    kube.calls.clear()
    registry.tags.clear()
    kube.fail_apply = lambda obj: obj["kind"] == "Deployment"
    with pytest.raises(RuntimeError):
        rec.reconcile((NS, NAME))
    # The decision is stored and announced; the world conditions are not touched yet.
    assert kube.calls[:3] == ["status", "event RolledBack", "apply Deployment"]
    st = kube.status(NS, NAME)
    assert st["rejectedVersions"] == ["2"]
    assert [h["outcome"] for h in st["history"][-2:]] == [r.OUTCOME_ROLLED_BACK, "Progressing"]
    assert cond(st, r.COND_ROLLED_BACK) == ("True", names.ALERT_HIGH_ERROR_RATE)
    assert st["phase"] == r.HEALTHY and cond(st, r.READY)[0] == "True"  # as before
    assert [
        (v, k == names.TAG_REJECTED, k.startswith(names.TAG_AUDIT)) for _, v, k, _ in registry.tags
    ] == [
        ("2", True, False),
        ("2", False, True),
    ]
    trail = records.audit_records(registry.version_tags[(MODEL, "2")])
    assert [a.action for a in trail] == [records.ACTION_DEPLOY, records.ACTION_ROLLBACK]
    audit = trail[-1]
    assert (audit.action, audit.by) == (records.ACTION_ROLLBACK, records.OPERATOR_ACTOR)
    assert audit.details["alert"] == names.ALERT_HIGH_ERROR_RATE
    assert audit.details == audit.details | {"modeldeployment": f"{NS}/{NAME}", "to": "1"}

    # The retry finishes the rollback without a second decision or Event.
    kube.fail_apply = lambda obj: False
    rec.reconcile((NS, NAME))
    dep = kube.objects[("Deployment", NS, NAME)]
    assert dep["spec"]["template"]["metadata"]["labels"][names.LABEL_MODEL_VERSION] == "1"
    assert kube.status(NS, NAME)["phase"] == r.ROLLING_BACK
    assert kube.reasons().count(r.EV_ROLLED_BACK) == 1
    assert len(registry.tags) == 2
    key = (NS, NAME, names.ALERT_HIGH_ERROR_RATE)
    assert rec.metrics.rollbacks.labels(*key)._value.get() == 1


def test_a_wiped_status_is_rebuilt_without_rollout_events(world: Any) -> None:
    kube, _, rec, _ = world
    serve(kube, rec, "1")
    kube.events.clear()
    kube.set_status(NS, NAME, {})
    rec.reconcile((NS, NAME))
    st = kube.status(NS, NAME)
    assert (st["phase"], st["servingVersion"]) == (r.HEALTHY, "1")
    (entry,) = st["history"]
    assert (entry["version"], entry["outcome"], entry["reason"]) == ("1", "Succeeded", r.ADOPTED)
    assert kube.events == []


def test_an_invalid_spec_keeps_the_allow_version_already_acted_on(world: Any) -> None:
    kube, _, rec, _ = world
    serve(kube, rec, "1")
    st = kube.status(NS, NAME)
    st["allowVersionHandled"] = "2"
    st["rejectedVersions"] = ["3"]
    kube.set_status(NS, NAME, st)
    kube.mds[(NS, NAME)]["spec"]["serving"] = {"replicas": -1}
    kube.mds[(NS, NAME)]["metadata"]["generation"] = 2
    rec.reconcile((NS, NAME))
    after = kube.status(NS, NAME)
    assert after["phase"] == r.FAILED and cond(after, r.READY) == ("False", r.INVALID_SPEC)
    assert after["allowVersionHandled"] == "2" and after["rejectedVersions"] == ["3"]
    assert after["history"] == st["history"]
    assert kube.reasons().count(r.INVALID_SPEC) == 1
    rec.reconcile((NS, NAME))
    assert kube.reasons().count(r.INVALID_SPEC) == 1  # once per message
    # The phase metric follows the status like any other plan's (one path for both).
    phase = rec.metrics.registry.get_sample_value(
        "modeldeploy_rollout_status", {"namespace": NS, "name": NAME, "phase": r.FAILED}
    )
    assert phase == 1
    assert rec.reconcile((NS, NAME)).requeue_after is None  # waits for the spec to change


@pytest.mark.parametrize(
    ("uri", "gets_them"),
    [
        (None, True),
        (REGISTRY, True),
        ("http://Registry.test:5000/", True),
        ("http://attacker.test:5000", False),
        ("http://registry.test:5001", False),
        ("http://registry.test:5000/other", False),
    ],
)
def test_operator_credentials_go_only_to_the_operator_registry(
    world: Any, uri: str | None, gets_them: bool
) -> None:
    kube, registry, rec, _ = world
    if uri:
        kube.mds[(NS, NAME)]["spec"]["registry"] = {"trackingUri": uri}
    rec.reconcile((NS, NAME))
    ((asked, creds),) = registry.clients
    assert asked == (uri or REGISTRY)
    assert creds == (OPERATOR_CREDS if gets_them else {})


def test_a_named_secret_is_used_for_any_registry(world: Any) -> None:
    kube, registry, rec, _ = world
    kube.secrets[(NS, "mine")] = {"MLFLOW_TRACKING_TOKEN": "team-token"}
    kube.mds[(NS, NAME)]["spec"]["registry"] = {
        "trackingUri": "http://team.test",
        "credentialsSecret": "mine",
    }
    rec.reconcile((NS, NAME))
    assert registry.clients == [("http://team.test", {"MLFLOW_TRACKING_TOKEN": "team-token"})]


def test_same_server() -> None:
    assert same_server("http://a:1", "http://A:1/")
    assert not same_server("http://a:1", "https://a:1")
    assert not same_server("http://a:1", "http://user@a:1")


def test_a_completed_rollout_leaves_a_deploy_record_on_the_version(world: Any) -> None:
    kube, registry, rec, _ = world
    serve(kube, rec, "1")
    registry.aliases[(MODEL, "champion")] = "2"
    serve(kube, rec, "2")
    rec.reconcile((NS, NAME))  # nothing new: no second record
    (first,) = records.audit_records(registry.version_tags[(MODEL, "1")])
    (second,) = records.audit_records(registry.version_tags[(MODEL, "2")])
    assert (first.action, first.details) == (
        records.ACTION_DEPLOY,
        {"modeldeployment": f"{NS}/{NAME}"},
    )
    assert second.details == {"modeldeployment": f"{NS}/{NAME}", "previous": "1"}
    assert first.at < second.at


def test_a_registry_that_refuses_the_record_gets_an_event_and_the_rollout_stands(
    world: Any,
) -> None:
    kube, registry, rec, _ = world
    registry.fail_tags = True
    serve(kube, rec, "1")
    assert r.EV_REGISTRY_TAG_FAILED in kube.reasons()
    (event,) = [e for e in kube.events if e[1] == r.EV_REGISTRY_TAG_FAILED]
    assert "deploy of version 1" in event[2]


def test_an_approval_written_in_the_registry_opens_the_gate(world: Any) -> None:
    kube, registry, rec, _ = world
    spec = {"model": {"name": MODEL, "alias": "champion", "requireApproval": "production"}}
    kube.add_md(NS, "gated", spec)
    key = (NS, "gated")
    rec.reconcile(key)
    assert kube.status(*key)["phase"] == r.AWAITING_APPROVAL
    assert ("Deployment", NS, "gated") not in kube.objects
    assert r.EV_APPROVAL_REQUIRED in kube.reasons()

    at = records.timestamp(T0)
    registry.version_tags[(MODEL, "1")] = {
        records.approval_key("production"): records.Approval("production", "ana", at).to_json()
    }
    rec.cache.invalidate_model(MODEL)  # what the MLflow webhook does
    rec.reconcile(key)
    assert ("Deployment", NS, "gated") in kube.objects
    assert cond(kube.status(*key), r.COND_APPROVED) == ("True", r.APPROVAL_GRANTED)


def test_the_rollback_is_applied_before_its_registry_records_are_written(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube, registry, rec, alerts = world
    serve(kube, rec, "1")
    registry.aliases[(MODEL, "champion")] = "2"
    serve(kube, rec, "2")
    firing(alerts, "2")
    kube.calls.clear()
    original = FakeRegistryClient.set_version_tag

    def tag(self: FakeRegistryClient, *args: str) -> None:
        kube.calls.append("registry tag")
        original(self, *args)

    monkeypatch.setattr(FakeRegistryClient, "set_version_tag", tag)
    rec.reconcile((NS, NAME))
    first_tag = kube.calls.index("registry tag")
    assert kube.calls.index("apply Deployment") < first_tag  # a slow registry cannot delay it


def test_a_rolled_back_canary_leaves_the_route_before_its_service_goes(world: Any) -> None:
    """The rollback reconcile sets the route's weights back to the stable Service, and before
    it deletes the canary's Service: a Gateway would answer the canary's share with errors."""
    kube, registry, rec, alerts = world
    strategy = {
        "type": "Canary",
        "canary": {
            "steps": [{"weight": 10, "duration": "1m"}],
            "trafficRouting": {"httpRoute": {"name": "web"}},
        },
    }
    kube.add_md(NS, NAME, {"model": {"name": MODEL, "alias": "champion"}, "strategy": strategy})
    refs = [
        {"name": NAME, "port": 8080, "weight": 100},
        {"name": f"{NAME}-canary", "port": 8080, "weight": 0},
    ]
    kube.objects[("HTTPRoute", NS, "web")] = {"spec": {"rules": [{"backendRefs": refs}]}}
    serve(kube, rec, "1")
    registry.aliases[(MODEL, "champion")] = "2"
    rec.cache.invalidate_model(MODEL)
    rec.reconcile((NS, NAME))  # the canary's pods start
    kube.finish_rollout(NS, f"{NAME}-canary")
    rec.reconcile((NS, NAME))  # ready: its weight is set
    rec.reconcile((NS, NAME))  # weight seen: analysing
    assert [ref["weight"] for ref in refs] == [90, 10]
    assert kube.status(NS, NAME)["canary"]["state"] == r.CANARY_ANALYSING
    firing(alerts, "2")
    kube.calls.clear()
    rec.reconcile((NS, NAME))
    assert kube.status(NS, NAME)["rejectedVersions"] == ["2"]
    assert [ref["weight"] for ref in refs] == [100, 0]
    assert kube.calls.index("patch HTTPRoute") < kube.calls.index("delete Service")
    assert ("Service", NS, f"{NAME}-canary") not in kube.objects


def approve(registry: FakeRegistry, version: str) -> None:
    at = records.timestamp(T0)
    registry.version_tags.setdefault((MODEL, version), {})[records.approval_key("production")] = (
        records.Approval("production", "ana", at).to_json()
    )


def test_a_gated_rollback_goes_only_to_a_version_still_approved(world: Any) -> None:
    kube, registry, rec, alerts = world
    registry.versions[MODEL] = {"1", "2", "3"}
    spec = {"model": {"name": MODEL, "alias": "champion", "requireApproval": "production"}}
    kube.add_md(NS, NAME, spec)
    for v in ("1", "2", "3"):
        approve(registry, v)
        registry.aliases[(MODEL, "champion")] = v
        serve(kube, rec, v)
    del registry.version_tags[(MODEL, "2")][records.approval_key("production")]  # revoked
    firing(alerts, "3")
    rec.reconcile((NS, NAME))
    dep = kube.objects[("Deployment", NS, NAME)]
    assert dep["spec"]["template"]["metadata"]["labels"][names.LABEL_MODEL_VERSION] == "1"
    rolled = next(e for e in kube.events if e[1] == r.EV_ROLLED_BACK)
    assert "from version 3 to 1" in rolled[2]
