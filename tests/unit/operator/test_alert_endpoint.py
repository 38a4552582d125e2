"""The Alertmanager webhook endpoint, served by aiohttp's test server around the Endpoints of
one replica that always leads (leader election off), with a work queue and a known set behind
it: exactly what the endpoint touches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from modeldeploy.alerts.store import AlertStore
from modeldeploy.controller.endpoints import Endpoints, Hooks
from modeldeploy.controller.leader import SoleReplica
from modeldeploy.controller.metrics import OperatorMetrics
from modeldeploy.controller.reconciler import Key
from modeldeploy.controller.workqueue import WorkQueue
from tests.unit.operator.test_alert_store import KEY, notification, webhook_alert

TOKEN = "s3cr3t-token"
PATH = "/alerts/alertmanager"


class Replica:
    """Endpoints plus the queue and known set their hooks reach."""

    def __init__(self, endpoints: Endpoints, queue: WorkQueue[Key], known: set[Key]) -> None:
        self.endpoints, self.queue, self.known = endpoints, queue, known
        self.alerts, self.metrics = endpoints.alerts, endpoints.metrics


def runtime(
    token: str | None = TOKEN,
    known: set[Key] | None = None,
    role: Any = None,
    secret: str | None = None,
) -> Replica:
    queue: WorkQueue[Key] = WorkQueue()
    keys = {KEY} if known is None else known

    def wake(key: Key) -> bool:
        if key in keys:
            queue.add(key)
        return key in keys

    endpoints = Endpoints(
        bind_address="127.0.0.1",
        port=0,
        role=role or SoleReplica("only", None),
        alerts=AlertStore(),
        hooks=Hooks(wake=wake, invalidate_model=lambda model: set(keys)),
        metrics=OperatorMetrics(),
        registry_webhook_secret=secret,
        alert_webhook_token=token,
    )
    return Replica(endpoints, queue, keys)


def post(
    rt: Replica, body: bytes | str, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        app = web.Application()
        app.router.add_post(PATH, rt.endpoints.alertmanager_webhook)
        async with TestClient(TestServer(app)) as client:
            resp = await client.post(PATH, data=body, headers=dict(headers or {}))
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    return asyncio.run(go())


def queued(rt: Replica) -> list[Key]:
    out = []
    while (k := rt.queue.get(timeout=0)) is not None:
        out.append(k)
        rt.queue.done(k)
    return out


def counted(rt: Replica, outcome: str) -> float:
    value = rt.metrics.registry.get_sample_value(
        "modeldeploy_alert_notifications_total", {"outcome": outcome}
    )
    return value or 0.0


BEARER = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
GOOD = json.dumps(notification(webhook_alert()))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong"),
        pytest.param({"Authorization": TOKEN}, id="no-scheme"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="other-scheme"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="longer"),
    ],
)
def test_missing_or_wrong_bearer_token_is_401_and_changes_nothing(
    headers: dict[str, str],
) -> None:
    rt = runtime()
    status, body = post(rt, GOOD, headers)
    assert status == 401 and "token" in body["error"]
    assert rt.alerts.firing(KEY) == ()
    assert queued(rt) == []
    assert counted(rt, "unauthorized") == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param("", id="empty"),
        pytest.param("[]", id="a-list"),
        pytest.param('{"version": "4", "status": "firing"}', id="no-alerts"),
        pytest.param('{"alerts": {"a": 1}}', id="alerts-not-a-list"),
        # Past the JSON parser's recursion limit: was a RecursionError, a 500 (attack suite).
        pytest.param('{"alerts": ' + "[" * 5000 + "]" * 5000 + "}", id="nested-too-deep"),
    ],
)
def test_malformed_notification_is_400(body: str) -> None:
    rt = runtime()
    status, answer = post(rt, body, BEARER)
    assert status == 400 and "not an Alertmanager notification" in answer["error"]
    assert counted(rt, "malformed") == 1
    assert queued(rt) == []


def test_good_notification_is_200_and_wakes_the_known_modeldeployment() -> None:
    rt = runtime()
    status, body = post(rt, GOOD, BEARER)
    assert (status, body) == (200, {"woken": 1})
    assert queued(rt) == [KEY]
    assert [a.name for a in rt.alerts.firing(KEY)] == ["ModelHighErrorRate"]
    assert counted(rt, "accepted") == 1


def test_the_same_notification_twice_wakes_once() -> None:
    rt = runtime()
    post(rt, GOOD, BEARER)
    status, body = post(rt, GOOD, BEARER)
    assert (status, body) == (200, {"woken": 0})
    assert queued(rt) == [KEY]


def test_notification_for_an_unknown_modeldeployment_is_stored_but_wakes_nothing() -> None:
    rt = runtime(known=set())
    status, body = post(rt, GOOD, BEARER)
    assert (status, body) == (200, {"woken": 0})
    assert queued(rt) == []
    assert len(rt.alerts.firing(KEY)) == 1  # there when the ModelDeployment is seen


def test_without_a_configured_token_the_endpoint_is_disabled() -> None:
    """Secure by default, like /webhooks/mlflow without its secret: nobody may trigger
    rollbacks anonymously, so with no token configured the endpoint refuses everything."""
    rt = runtime(token=None)
    status, body = post(rt, GOOD, {"Content-Type": "application/json"})
    assert status == 404
    assert "MODELDEPLOY_ALERT_WEBHOOK_TOKEN" in str(body)
    assert queued(rt) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"alerts": ["firing"]}', id="alert-not-an-object"),
        pytest.param('{"alerts": [{"status": "firing", "labels": ["x"]}]}', id="labels-list"),
    ],
)
def test_malformed_alert_inside_the_list_is_400(body: str) -> None:
    rt = runtime()
    status, _ = post(rt, body, BEARER)
    assert status == 400
