"""AlertStore: Alertmanager webhook notifications and polled alert sets → firing alerts per
ModelDeployment. Payloads have the shapes Alertmanager (webhook v4, API v2) and Prometheus
(/api/v1/alerts) send."""

from __future__ import annotations

from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.alerts.store import AlertStore, FiringAlert, parse_alert

NS, MD = "ml-prod", "fraud"
KEY = (NS, MD)
ERRORS, LATENCY, DRIFT = (
    names.ALERT_HIGH_ERROR_RATE,
    names.ALERT_HIGH_LATENCY,
    names.ALERT_DRIFT,
)
T = 1_746_090_000.0


def labels(version: str = "2", name: str = ERRORS, *, ns: str = NS, md: str = MD) -> dict[str, str]:
    return {
        "alertname": name,
        "namespace": ns,
        "modeldeployment": md,
        "model_name": "fraud-detector",
        "model_version": version,
        "severity": "critical",
    }


def webhook_alert(
    status: str = "firing", fingerprint: str = "a1b2c3d4e5f60001", **kw: Any
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels(**kw),
        "annotations": {"summary": "5xx ratio 12% over 1m", "description": "…"},
        "startsAt": "2025-05-01T09:10:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2025-05-01T09:20:00.000Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="ModelHighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "modeldeploy",
        "groupLabels": {"alertname": ERRORS},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def am_v2_alert(
    state: str = "active", fingerprint: str = "a1b2c3d4e5f60001", **kw: Any
) -> dict[str, Any]:
    """One element of Alertmanager's GET /api/v2/alerts."""
    return {
        "labels": labels(**kw),
        "annotations": {"summary": "5xx ratio 12% over 1m"},
        "startsAt": "2025-05-01T09:10:00.000Z",
        "endsAt": "2025-05-01T09:14:00.000Z",
        "updatedAt": "2025-05-01T09:10:30.000Z",
        "fingerprint": fingerprint,
        "receivers": [{"name": "modeldeploy"}],
        "status": {"state": state, "silencedBy": [], "inhibitedBy": [], "mutedBy": []},
        "generatorURL": "http://prometheus:9090/graph",
    }


def prom_alert(state: str = "firing", **kw: Any) -> dict[str, Any]:
    """One element of Prometheus' GET /api/v1/alerts data.alerts (no fingerprint)."""
    return {
        "labels": labels(**kw),
        "annotations": {"summary": "5xx ratio 12% over 1m"},
        "state": state,
        "activeAt": "2025-05-01T09:09:30.000Z",
        "value": "1.2e-01",
    }


def names_of(store: AlertStore, key: tuple[str, str] = KEY) -> list[tuple[str, str]]:
    return [(a.name, a.model_version) for a in store.firing(key)]


# --- webhook notifications -----------------------------------------------------------------


def test_firing_notification_makes_the_alert_firing_for_its_modeldeployment() -> None:
    store = AlertStore()
    assert store.apply_notification(notification(webhook_alert()), T) == {KEY}
    (a,) = store.firing(KEY)
    assert a == FiringAlert(ERRORS, NS, MD, "2", "a1b2c3d4e5f60001", T, "5xx ratio 12% over 1m")
    assert a.key == KEY
    assert store.firing(("ml-prod", "other")) == ()
    assert store.firing(("staging", MD)) == ()


def test_resolved_notification_removes_the_alert() -> None:
    store = AlertStore()
    store.apply_notification(notification(webhook_alert()), T)
    assert store.apply_notification(notification(webhook_alert("resolved")), T + 60) == {KEY}
    assert store.firing(KEY) == ()


def test_duplicate_notifications_change_nothing() -> None:
    store = AlertStore()
    payload = notification(webhook_alert())
    assert store.apply_notification(payload, T) == {KEY}
    assert store.apply_notification(payload, T + 30) == set()
    assert store.apply_notification(payload, T + 60) == set()
    (a,) = store.firing(KEY)
    assert a.received_at == T  # first sight, not the latest delivery
    resolved = notification(webhook_alert("resolved"))
    assert store.apply_notification(resolved, T + 90) == {KEY}
    assert store.apply_notification(resolved, T + 95) == set()


def test_an_alert_firing_again_after_resolving_is_heard_of_anew() -> None:
    store = AlertStore()
    store.apply_notification(notification(webhook_alert()), T)
    store.apply_notification(notification(webhook_alert("resolved")), T + 60)
    store.apply_notification(notification(webhook_alert()), T + 600)
    (a,) = store.firing(KEY)
    assert a.received_at == T + 600


def test_a_notification_can_mix_firing_and_resolved_alerts_of_several_modeldeployments() -> None:
    store = AlertStore()
    store.apply_notification(notification(webhook_alert(fingerprint="f1", md="other")), T)
    payload = notification(
        webhook_alert(fingerprint="f2"),
        webhook_alert(fingerprint="f3", name=LATENCY),
        webhook_alert("resolved", fingerprint="f1", md="other"),
    )
    assert store.apply_notification(payload, T + 1) == {KEY, (NS, "other")}
    assert sorted(names_of(store)) == [(ERRORS, "2"), (LATENCY, "2")]
    assert store.firing((NS, "other")) == ()


def test_resolved_for_an_alert_never_seen_changes_nothing() -> None:
    store = AlertStore()
    assert store.apply_notification(notification(webhook_alert("resolved")), T) == set()


@pytest.mark.parametrize("missing", ["namespace", "modeldeployment", "model_version", "alertname"])
def test_alerts_without_the_identifying_labels_are_ignored(missing: str) -> None:
    raw = webhook_alert()
    del raw["labels"][missing]
    store = AlertStore()
    assert store.apply_notification(notification(raw), T) == set()
    assert store.firing(KEY) == ()
    assert parse_alert(raw, T) is None


def test_alerts_with_empty_identifying_labels_are_ignored() -> None:
    raw = webhook_alert()
    raw["labels"]["model_version"] = ""
    assert parse_alert(raw, T) is None


def test_a_notification_without_alerts_changes_nothing() -> None:
    store = AlertStore()
    assert store.apply_notification({"version": "4", "status": "firing"}, T) == set()
    assert store.apply_notification(notification(), T) == set()


def test_firing_is_ordered_by_first_sight() -> None:
    store = AlertStore()
    store.apply_notification(notification(webhook_alert(fingerprint="late", name=LATENCY)), T + 5)
    store.apply_notification(notification(webhook_alert(fingerprint="early")), T)
    assert names_of(store) == [(ERRORS, "2"), (LATENCY, "2")]


def test_fingerprint_is_derived_from_labels_when_missing() -> None:
    raw = webhook_alert()
    del raw["fingerprint"]
    a, b = parse_alert(raw, T), parse_alert(dict(raw, labels=dict(raw["labels"])), T + 1)
    assert a is not None and b is not None and a.fingerprint == b.fingerprint
    other = parse_alert(dict(raw, labels=labels(version="3")), T)
    assert other is not None and other.fingerprint != a.fingerprint


# --- polled sets ---------------------------------------------------------------------------


def test_polled_alertmanager_v2_active_alerts_are_firing_suppressed_are_not() -> None:
    store = AlertStore()
    raws = [
        am_v2_alert(fingerprint="f1"),
        am_v2_alert("suppressed", fingerprint="f2", name=LATENCY),
    ]
    assert store.replace_polled(raws, T) == {KEY}
    assert names_of(store) == [(ERRORS, "2")]


def test_polled_prometheus_firing_alerts_are_firing_pending_are_not() -> None:
    store = AlertStore()
    raws = [prom_alert(), prom_alert("pending", name=LATENCY)]
    assert store.replace_polled(raws, T) == {KEY}
    assert names_of(store) == [(ERRORS, "2")]


def test_replace_polled_returns_keys_whose_set_changed_added_and_removed() -> None:
    store = AlertStore()
    other = (NS, "other")
    assert store.replace_polled([am_v2_alert(fingerprint="f1")], T) == {KEY}
    assert store.replace_polled([am_v2_alert(fingerprint="f1")], T + 5) == set()
    both = [am_v2_alert(fingerprint="f1"), am_v2_alert(fingerprint="f2", md="other")]
    assert store.replace_polled(both, T + 10) == {other}
    assert store.replace_polled([am_v2_alert(fingerprint="f2", md="other")], T + 15) == {KEY}
    assert store.firing(KEY) == ()
    assert store.replace_polled([], T + 20) == {other}
    assert store.firing(other) == ()


def test_replace_polled_keeps_first_sight_across_polls() -> None:
    store = AlertStore()
    for i in range(3):
        store.replace_polled([am_v2_alert()], T + 5 * i)
    (a,) = store.firing(KEY)
    assert a.received_at == T


def test_pending_turning_firing_is_a_change() -> None:
    store = AlertStore()
    assert store.replace_polled([prom_alert("pending")], T) == set()
    assert store.replace_polled([prom_alert("firing")], T + 30) == {KEY}
    (a,) = store.firing(KEY)
    assert a.received_at == T + 30


def test_webhook_and_polled_copies_of_one_alert_merge() -> None:
    store = AlertStore()
    store.replace_polled([am_v2_alert()], T)
    store.apply_notification(notification(webhook_alert()), T + 3)
    (a,) = store.firing(KEY)
    assert a.received_at == T  # the polled copy was first
    # the webhook resolves it, the poll still lists it until the next poll
    store.apply_notification(notification(webhook_alert("resolved")), T + 60)
    assert len(store.firing(KEY)) == 1
    assert store.replace_polled([], T + 65) == {KEY}
    assert store.firing(KEY) == ()


def test_webhook_first_then_poll_keeps_the_webhook_time() -> None:
    store = AlertStore()
    store.apply_notification(notification(webhook_alert()), T)
    store.replace_polled([am_v2_alert()], T + 5)
    (a,) = store.firing(KEY)
    assert a.received_at == T
    # the poll no longer lists it but the webhook has not resolved it: still firing
    store.replace_polled([], T + 10)
    (a,) = store.firing(KEY)
    assert a.received_at == T


def test_polled_alerts_without_identifying_labels_are_ignored() -> None:
    raw = am_v2_alert()
    del raw["labels"]["modeldeployment"]
    store = AlertStore()
    assert store.replace_polled([raw], T) == set()
    assert store.firing(KEY) == ()


def test_a_relearn_replaces_pushed_alerts_with_alertmanagers_list_but_keeps_newer_pushes() -> None:
    """A replica taking the lease reads the active set: pushed alerts it lists are kept (their
    first sight too), ones it no longer lists resolved while another replica led and go, ones it
    lists that were never pushed here are learned, and one pushed after the read began stays."""
    store = AlertStore()
    store.apply_notification(notification(webhook_alert(fingerprint="still")), 100.0)
    store.apply_notification(
        notification(webhook_alert(fingerprint="resolved-elsewhere", version="1")), 100.0
    )
    store.apply_notification(
        notification(webhook_alert(fingerprint="pushed-during-read", md="other")), 205.0
    )
    listed = [am_v2_alert(fingerprint="still"), am_v2_alert(fingerprint="new", name="Drift")]
    changed = store.replace_pushed(listed, now=210.0, kept_since=200.0)
    assert changed == {KEY}
    firing = {a.fingerprint: a.received_at for a in store.firing(KEY)}
    assert firing == {"still": 100.0, "new": 210.0}
    assert [a.fingerprint for a in store.firing((NS, "other"))] == ["pushed-during-read"]
