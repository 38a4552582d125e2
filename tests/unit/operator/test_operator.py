"""The operator process's life cycle and its webhook endpoints, on loopback ports with in-memory
fakes of the API server and the registry behind it: exactly one thread of each kind after
start-up, none after stop; two replicas on one API server, of which only the lease holder writes
and a standby takes over without repeating work; a standby's webhook endpoints keep what they
receive and forward it to the leader; a replayed or junk delivery is a 401, never a 500."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kopf
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from modeldeploy.api import reasons as r
from modeldeploy.controller import handlers
from modeldeploy.controller.endpoints import FORWARDED_BY
from modeldeploy.controller.operator import Operator
from modeldeploy.controller.reconciler import OperatorConfig
from tests.unit.operator.fakes import FakeCluster, FakeRegistry
from tests.unit.operator.test_alert_endpoint import TOKEN, Replica
from tests.unit.operator.test_alert_endpoint import runtime as replica
from tests.unit.operator.test_alert_store import KEY, notification, webhook_alert
from tests.unit.operator.test_webhook_signature import DELIVERY, PAYLOAD, SECRET, sign

LOOPBACK = "127.0.0.1"
NS, NAME, MODEL = "ml", "fraud", "fraud-detector"
REGISTRY = "http://registry.test:5000"
# Fast election for tests: the rules are the same at any scale (test_leader.py checks them).
FAST = {"lease_duration": 0.6, "renew_deadline": 0.4, "retry_period": 0.05}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not true within {timeout}s: {check}")


def config(identity: str, **kw: Any) -> OperatorConfig:
    base: dict[str, Any] = {
        "metrics_port": free_port(),
        "webhook_port": free_port(),
        "leader_election": True,
        "identity": identity,
        "lease_namespace": "ns",
        "lease_name": "lease",
        "default_tracking_uri": REGISTRY,
        "serving_env": (("MODELDEPLOY_TRUST_MODEL_CODE", "registry"),),
        **FAST,
    }
    base["advertise_url"] = f"http://{LOOPBACK}:{base['webhook_port']}"
    return OperatorConfig(**{**base, **kw})


class Running:
    """An Operator started through kopf's startup handler on its own event loop thread, as
    `kopf.run` would, and stopped through the cleanup handler."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.memo = kopf.Memo(operator=operator)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(handlers.startup(settings=kopf.OperatorSettings(), memo=self.memo))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.run(handlers.cleanup(memo=self.memo))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def crash(self) -> None:
        """As SIGKILL would: no more renewals, no more writes, no answers, and no release: the
        Lease still names this replica until it expires."""
        self.operator.role.release = lambda: None  # type: ignore[method-assign]
        self.stop()


def test_startup_starts_one_thread_of_each_kind_and_cleanup_stops_them() -> None:
    cluster = FakeCluster()
    cfg = config(
        "a",
        workers=2,
        alerts_url=f"http://{LOOPBACK}:{free_port()}",  # nobody listens: polls fail, harmlessly
        alerts_poll_interval=0.05,
    )
    kinds = ("alert-poller", "reconcile-", "leader-election", "registry-poller")
    before = [len(threads(k)) for k in kinds]
    running = Running(Operator(cluster, cfg))  # type: ignore[arg-type]
    try:
        wait_until(running.operator.role.leading)
        assert [len(threads(k)) - b for k, b in zip(kinds, before, strict=True)] == [1, 2, 1, 1]
        assert cluster.lease_store.holder() == "a"
    finally:
        running.stop()
    assert [len(threads(k)) for k in kinds] == before
    assert cluster.lease_store.holder() is None  # released on a clean stop


def test_child_events_are_kept_and_wake_their_owner_before_a_sweep_does() -> None:
    """A child's event is a change (HIGH); the initial listing after a start is a sweep (LOW),
    so the changes it would otherwise bury are worked first (controller/workqueue.py)."""
    from modeldeploy.controller.workqueue import HIGH, LOW

    operator = Operator(FakeCluster(), config("a", leader_election=False))  # type: ignore[arg-type]
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": NS}}
    operator.child_seen(None, {**dep, "metadata": {"namespace": NS, "name": "a"}}, (NS, "a"))
    operator.child_seen("MODIFIED", {**dep, "metadata": {"namespace": NS, "name": "b"}}, (NS, "b"))
    assert (operator.queue.depth(HIGH), operator.queue.depth(LOW)) == (1, 1)
    assert operator.queue.get(timeout=0) == (NS, "b")
    assert operator.children.get("Deployment", NS, "a") is not None


def test_endpoints_listen_on_the_bind_address_only() -> None:
    operator = Operator(FakeCluster(), config("a", leader_election=False))  # type: ignore[arg-type]
    running = Running(operator)
    try:
        assert {str(addr[0]) for addr in operator.endpoints.addresses} == {LOOPBACK}
        assert operator._metrics_server.server_address[0] == LOOPBACK
    finally:
        running.stop()


# --- two replicas on one API server ----------------------------------------------------------


class Replicas:
    def __init__(self, cluster: FakeCluster, registry: FakeRegistry) -> None:
        self.cluster, self.registry = cluster, registry
        self.running: dict[str, Running] = {}

    def start(self, identity: str, **kw: Any) -> Operator:
        cfg = config(identity, registry_webhook_secret=SECRET, alert_webhook_token=TOKEN, **kw)
        operator = Operator(self.cluster, cfg, client_factory=self.registry.factory)  # type: ignore[arg-type]
        self.running[identity] = Running(operator)
        return operator

    def see(self, key: tuple[str, str]) -> None:
        """What kopf does on every replica for a new ModelDeployment."""
        for running in self.running.values():
            running.operator.track(key)
            running.operator.nudge(key)

    def crash(self, identity: str) -> None:
        self.running.pop(identity).crash()

    def stop(self) -> None:
        for running in self.running.values():
            running.stop()


@pytest.fixture
def replicas() -> Iterator[Replicas]:
    registry = FakeRegistry()
    registry.versions[MODEL] = {"1", "2"}
    registry.aliases[(MODEL, "champion")] = "1"
    cluster = FakeCluster(monitoring=frozenset({"ServiceMonitor", "PrometheusRule"}))
    cluster.add_md(NS, NAME, {"model": {"name": MODEL, "alias": "champion"}})
    reps = Replicas(cluster, registry)
    yield reps
    reps.stop()


def test_only_the_lease_holder_writes_and_a_standby_takes_over_without_repeating(
    replicas: Replicas,
) -> None:
    cluster = replicas.cluster
    a = replicas.start("a")
    wait_until(a.role.leading)
    b = replicas.start("b")
    wait_until(b.role.observed)
    assert not b.role.leading()
    replicas.see((NS, NAME))
    wait_until(lambda: cluster.status(NS, NAME).get("phase") == r.PROGRESSING)
    time.sleep(0.3)  # a standby that wrote would have written by now
    first = cluster.reasons()
    assert first.count(r.EV_ROLLOUT_STARTED) == 1 and len(first) == len(set(first))
    assert cluster.calls.count("status") == 1
    assert a.metrics.leader._value.get() == 1 and b.metrics.leader._value.get() == 0

    t0 = time.monotonic()
    replicas.crash("a")
    assert cluster.lease_store.holder("ns", "lease") == "a"
    wait_until(b.role.leading, timeout=10)
    # It waited for the lease to expire (a lower bound: load only makes it longer).
    assert time.monotonic() - t0 >= FAST["lease_duration"] - FAST["retry_period"]
    cluster.finish_rollout(NS, NAME)
    # The Deployment's watch event, as kopf delivers it: b reads the Deployment from it.
    b.child_seen("MODIFIED", cluster.objects[("Deployment", NS, NAME)], (NS, NAME))
    wait_until(lambda: cluster.status(NS, NAME).get("phase") == r.HEALTHY)
    time.sleep(0.3)
    events = cluster.reasons()
    assert events[: len(first)] == first  # nothing repeated across the handover
    assert events.count(r.EV_ROLLOUT_STARTED) == 1
    assert events.count(r.EV_ROLLOUT_SUCCEEDED) == 1
    assert [h["outcome"] for h in cluster.status(NS, NAME)["history"]] == [r.OUTCOME_SUCCEEDED]
    assert (
        a.metrics.registry.get_sample_value(
            "modeldeploy_rollout_status", {"namespace": NS, "name": NAME, "phase": "Progressing"}
        )
        is None
    )  # a replica that stopped leading stops reporting what it no longer reconciles


def test_a_clean_stop_releases_the_lease_so_the_standby_need_not_wait_for_it(
    replicas: Replicas,
) -> None:
    slow = {"lease_duration": 60.0, "renew_deadline": 40.0}  # expiry would take a minute
    a = replicas.start("a", **slow)
    wait_until(a.role.leading)
    b = replicas.start("b", **slow)
    wait_until(b.role.observed)
    replicas.running.pop("a").stop()
    wait_until(b.role.leading, timeout=20)


def test_a_leader_cut_off_from_the_api_server_stops_writing_before_anyone_takes_over(
    replicas: Replicas,
) -> None:
    a = replicas.start("a", lease_duration=60.0)
    wait_until(a.role.leading)
    replicas.cluster.lease_store.down = True
    # Stops by itself at the renew deadline: nobody else could have taken over in a minute.
    wait_until(lambda: not a.role.leading(), timeout=20)
    wait_until(lambda: not a.workers.working, timeout=20)  # at the elector's next round
    replicas.cluster.lease_store.down = False
    wait_until(a.role.leading, timeout=5)  # and leads again once it can renew
    assert a.workers.working


# --- webhooks on a standby -------------------------------------------------------------------


def post(port: int, path: str, body: str, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    import requests

    resp = requests.post(
        f"http://{LOOPBACK}:{port}{path}", data=body, headers=dict(headers), timeout=10
    )
    return resp.status_code, resp.json()


def test_a_standby_keeps_an_alert_and_forwards_it_without_the_token(replicas: Replicas) -> None:
    a = replicas.start("a")
    wait_until(a.role.leading)
    b = replicas.start("b")
    wait_until(lambda: b.role.holder() is not None)
    replicas.see(KEY)
    body = json.dumps(notification(webhook_alert()))
    bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    status, answer = post(b.config.webhook_port, "/alerts/alertmanager", body, bearer)
    assert (status, answer) == (200, {"woken": 1})  # the leader's answer
    assert [x.name for x in a.alerts.firing(KEY)] == ["ModelHighErrorRate"]
    assert [x.name for x in b.alerts.firing(KEY)] == ["ModelHighErrorRate"]  # for a failover
    assert (
        b.metrics.registry.get_sample_value(
            "modeldeploy_webhook_forwards_total",
            {"endpoint": "alertmanager", "outcome": "forwarded"},
        )
        == 1
    )

    # The leader takes a forwarded notification only with a valid HMAC, never the token alone.
    forged = {**bearer, FORWARDED_BY: "b"}
    status, _ = post(a.config.webhook_port, "/alerts/alertmanager", body, forged)
    assert status == 401


def test_a_standby_whose_leader_is_gone_answers_503_and_keeps_the_alert(
    replicas: Replicas,
) -> None:
    slow = {"lease_duration": 60.0, "renew_deadline": 40.0}  # b stays standby throughout
    a = replicas.start("a", **slow)
    wait_until(a.role.leading)
    b = replicas.start("b", **slow)
    wait_until(lambda: b.role.holder() is not None)
    replicas.crash("a")
    replicas.see(KEY)
    body = json.dumps(notification(webhook_alert()))
    bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    status, answer = post(b.config.webhook_port, "/alerts/alertmanager", body, bearer)
    assert status == 503 and "kept" in answer["error"]
    assert [x.name for x in b.alerts.firing(KEY)] == ["ModelHighErrorRate"]


def test_readiness_tells_leader_from_standby(replicas: Replicas) -> None:
    import requests

    a = replicas.start("a")
    wait_until(a.role.leading)
    b = replicas.start("b")
    wait_until(b.role.observed)
    for op, role in ((a, "leader"), (b, "standby")):
        base = f"http://{LOOPBACK}:{op.config.webhook_port}"
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json() == {
            "ready": True,
            "role": role,
            "identity": op.config.identity,
            "leader": "a",
        }
        assert requests.get(f"{base}/leaderz", timeout=5).status_code == (
            200 if role == "leader" else 503
        )


def test_a_standby_forwards_a_registry_event_and_the_leader_refuses_its_replay(
    replicas: Replicas,
) -> None:
    a = replicas.start("a")
    wait_until(a.role.leading)
    b = replicas.start("b")
    wait_until(lambda: b.role.holder() is not None)
    replicas.see((NS, NAME))
    wait_until(lambda: replicas.cluster.status(NS, NAME).get("resolvedVersion") == "1")
    payload = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": MODEL, "alias": "champion", "version": "2"},
        }
    )
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": "d-1",
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(SECRET, "d-1", ts, payload),
    }
    replicas.registry.aliases[(MODEL, "champion")] = "2"
    status, answer = post(b.config.webhook_port, "/webhooks/mlflow", payload, headers)
    assert (status, answer) == (200, {"model": MODEL, "woken": 1})
    wait_until(lambda: replicas.cluster.status(NS, NAME).get("resolvedVersion") == "2", 5)
    status, answer = post(a.config.webhook_port, "/webhooks/mlflow", payload, headers)
    assert (status, answer["error"]) == (401, "delivery already received (replayed)")


# --- the registry webhook endpoint ---------------------------------------------------------


def signed(delivery: str = DELIVERY, payload: str = PAYLOAD) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(SECRET, delivery, ts, payload),
    }


def post_all(rep: Replica, requests: list[Mapping[str, str]]) -> list[tuple[int, Any]]:
    async def go() -> list[tuple[int, Any]]:
        app = web.Application()
        app.router.add_post("/webhooks/mlflow", rep.endpoints.mlflow_webhook)
        out = []
        async with TestClient(TestServer(app)) as client:
            for h in requests:
                resp = await client.post("/webhooks/mlflow", data=PAYLOAD, headers=dict(h))
                out.append((resp.status, json.loads(await resp.text())))
        return out

    return asyncio.run(go())


def test_a_replayed_delivery_is_refused_and_wakes_nothing() -> None:
    rep = replica(secret=SECRET, known={("ml", "fraud")})
    first = signed()
    answers = post_all(rep, [first] * 20 + [signed("another-delivery")])
    assert answers[0][0] == 200
    assert all(a == (401, {"error": "delivery already received (replayed)"}) for a in answers[1:20])
    assert answers[20][0] == 200


def raw_request(port: int, path: str, headers: bytes, body: bytes) -> int:
    async def go() -> int:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + headers
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        await writer.drain()
        status = (await reader.readline()).split()[1]
        writer.close()
        return int(status)

    return asyncio.run(go())


def test_undecodable_authorization_and_signature_headers_are_401_not_500() -> None:
    cfg = config(
        "a", leader_election=False, alert_webhook_token="tok", registry_webhook_secret=SECRET
    )
    running = Running(Operator(FakeCluster(), cfg))  # type: ignore[arg-type]
    try:
        port = cfg.webhook_port
        junk = b"Bearer \xff\xfe\xc3(\r\n"
        assert raw_request(port, "/alerts/alertmanager", b"Authorization: " + junk, b"{}") == 401
        forwarded = b"X-Modeldeploy-Forwarded-By: x\r\nX-Modeldeploy-Forwarded-Signature: \xff\r\n"
        assert raw_request(port, "/alerts/alertmanager", forwarded, b"{}") == 401
        mlflow = (
            b"X-MLflow-Delivery-Id: \xff\r\nX-MLflow-Timestamp: "
            + str(int(time.time())).encode()
            + b"\r\nX-MLflow-Signature: v1,\xe9\xff\r\n"
        )
        assert raw_request(port, "/webhooks/mlflow", mlflow, b"{}") == 401
    finally:
        running.stop()


class SlowAlertmanager:
    """GET /api/v2/alerts on loopback that answers only when released."""

    def __init__(self, alerts: list[dict[str, Any]]) -> None:
        import http.server

        self.release = threading.Event()
        self.asked = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.asked.set()
                outer.release.wait(20)
                body = json.dumps(alerts).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_new_leader_reconciles_only_after_re_learning_the_firing_alerts(
    replicas: Replicas,
) -> None:
    from tests.unit.operator.test_alert_store import am_v2_alert

    am = SlowAlertmanager([am_v2_alert(fingerprint="fires")])
    try:
        a = replicas.start("a", alertmanager_url=am.url)
        wait_until(am.asked.is_set)
        time.sleep(0.3)  # several election rounds: it leads, renews, and still waits
        assert a.role.leading() and not a.workers.working
        am.release.set()
        wait_until(lambda: a.workers.working)
        assert [x.fingerprint for x in a.alerts.firing(KEY)] == ["fires"]
    finally:
        am.close()


def test_a_relearn_that_ends_after_leadership_was_lost_does_not_resume_the_workers(
    replicas: Replicas,
) -> None:
    am = SlowAlertmanager([])
    try:
        a = replicas.start("a", alertmanager_url=am.url, lease_duration=60.0)
        wait_until(am.asked.is_set)
        replicas.cluster.lease_store.down = True
        wait_until(lambda: not a.role.leading(), timeout=20)
        wait_until(lambda: a.metrics.leader._value.get() == 0, timeout=20)  # stopped leading
        am.release.set()
        for t in a._helpers:
            t.join(10)  # the relearn has finished
        assert not a.workers.working
    finally:
        am.close()


def test_kopf_skips_namespace_scanning_only_for_exact_namespace_names() -> None:
    from modeldeploy.controller.handlers import scan_needless

    assert scan_needless(("team-a", "team-b"))
    assert not scan_needless(())  # cluster-wide: kopf follows every namespace
    for pattern in ("team-*", "!kube-system", "ns-?", "a,b"):
        assert not scan_needless(("team-a", pattern)), pattern
