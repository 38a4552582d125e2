"""High availability on the real API server and the real MLflow registry: two operator processes
on one namespace share one Lease. Only the leader writes; the standby forwards the webhooks it
receives to the leader; a standby that takes over after the leader crashed repeats nothing and
loses no alert it was handed during the handover.

Every test runs replica A (the first leader) and replica B (its standby) with the default lease
timings, so a takeover after a SIGKILL waits out the 15 s lease duration. Both are given the same
`--registry-webhook-url`, B's webhook port: MLflow calls the standby, which forwards to the
leader (only the leader registers the webhook, under a name unique to the test).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from modeldeploy import names
from modeldeploy.api import reasons as r
from tests.conftest import Cluster
from tests.integration.operator.conftest import (
    GROUP,
    PLURAL,
    VERSION,
    Kube,
    Operator,
    Registry,
    wait_for,
)
from tests.integration.operator.test_alert_intake import notification, post

LEASE_NAME = "modeldeploy-operator"  # the default --leader-election-name
ALERT = "ModelHighErrorRate"
# The status writes of one alias move by a single writer, one serving replica: the rollout
# starts (Progressing, a new history entry; its message carries the Deployment's
# "updated/available" counts as read before the apply), then one write per change of those
# counts while the Deployment controller rolls one pod with the default surge of one: the new
# template seen (0 updated), the new pod created (1 updated), the new pod available (2
# available), and the old pod gone, which is Healthy. 1 + 3 + 1 = 5 at most; fewer when the
# operator reads two steps at once (2-4 seen here). Two replicas both reconciling write far more
# (benchmarks/operator_failover_bench.py measures both).
MAX_STATUS_WRITES_PER_MOVE = 5


# --- the replicas --------------------------------------------------------------------------
def role(op: Operator) -> dict[str, Any] | None:
    """GET /readyz: {"role": "leader" | "standby", "identity", "leader"}; None until ready."""
    try:
        resp = requests.get(f"http://127.0.0.1:{op.webhook_port}/readyz", timeout=2)
    except requests.RequestException:
        return None
    return resp.json() if resp.status_code == 200 else None


def leads(op: Operator) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{op.webhook_port}/leaderz", timeout=2).ok
    except requests.RequestException:
        return False


def wait_leading(op: Operator, timeout: float = 60) -> str:
    """Waits until `op` answers /leaderz with 200; returns its identity."""
    wait_for(lambda: leads(op), timeout, f"operator on :{op.webhook_port} leading (/leaderz 200)")
    answer = role(op)
    assert answer is not None and answer["role"] == "leader", answer
    return str(answer["identity"])


def url_of(op: Operator) -> str:
    """The URL a replica advertises in the Lease (its webhook port on loopback, locally)."""
    return f"http://127.0.0.1:{op.webhook_port}"


@dataclass
class Replicas:
    a: Operator
    b: Operator
    a_id: str
    b_id: str
    hook_name: str


def registry_webhooks(registry: Registry, name: str) -> list[Any]:
    hooks, token = [], None
    while True:
        page = registry.client.list_webhooks(page_token=token)
        hooks += [h for h in page if h.name == name]
        token = page.token
        if not token:
            return hooks


def webhook_args(standby: Operator, hook_name: str) -> list[str]:
    """What both replicas are given: MLflow calls the standby's webhook port."""
    url = f"{url_of(standby)}/webhooks/mlflow"
    return ["--registry-webhook-url", url, "--registry-webhook-name", hook_name]


def start_pair(a: Operator, b: Operator, registry: Registry, hook_name: str) -> Replicas:
    """Starts A and waits until it leads, then B and waits until it is A's standby, then waits
    for A to have registered the registry webhook (pointing at B)."""
    a.start()
    a_id = wait_leading(a)
    b.start()

    def following_a() -> dict[str, Any] | None:
        answer = role(b)
        return answer if answer and answer["leader"] == a_id else None

    standby = wait_for(following_a, 60, "B ready and naming A as the leader")
    assert standby["role"] == "standby" and standby["identity"] != a_id, standby
    url = f"{url_of(b)}/webhooks/mlflow"
    wait_for(
        lambda: [h for h in registry_webhooks(registry, hook_name) if h.url == url],
        60,
        f"registry webhook {hook_name} registered by the leader, pointing at the standby",
    )
    return Replicas(a, b, a_id, str(standby["identity"]), hook_name)


def delete_registry_webhooks(registry: Registry, hook_name: str) -> None:
    for hook in registry_webhooks(registry, hook_name):
        registry.client.delete_webhook(hook.webhook_id)


@pytest.fixture
def replicas(
    cluster: Cluster,
    crd: None,
    mlflow_uri: str,
    registry: Registry,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Replicas]:
    """A leads (started first, waited for), B is its standby; both on the test's namespace, so
    they share the Lease `modeldeploy-operator` in it. The registry webhook points at B."""
    hook_name = f"ha-{namespace}"  # the shared MLflow holds other tests' webhooks
    b = Operator(cluster, namespace, mlflow_uri, tmp_path, webhook=False)
    b.args += webhook_args(b, hook_name)
    a = Operator(
        cluster,
        namespace,
        mlflow_uri,
        tmp_path,
        webhook=False,
        extra_args=webhook_args(b, hook_name),
    )
    pair = None
    try:
        pair = start_pair(a, b, registry, hook_name)
        yield pair
    finally:
        for op in (b, a):  # the standby first: no handover while tearing down
            op.stop()
        report = getattr(request.node, "rep_call", None)
        if pair is None or (report is not None and report.failed):
            for label, op in (("A", a), ("B", b)):
                print(f"--- replica {label} log {op.log_path} ---\n{op.log()}")
        delete_registry_webhooks(registry, hook_name)


# --- observing -----------------------------------------------------------------------------
class StatusWatch:
    """Every status a watch sees on the namespace's ModelDeployments, from a listing on: each
    MODIFIED event whose status differs from the one before is a status write (nothing but the
    operator writes them in these tests)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.custom, self.namespace = kube.custom, namespace
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        self._rv = listing["metadata"]["resourceVersion"]
        self.last = {i["metadata"]["name"]: i.get("status") or {} for i in listing["items"]}
        self.writes: list[tuple[float, str, dict[str, Any]]] = []  # (monotonic time, name, status)
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=self._rv,
                    timeout_seconds=5,
                ):
                    self._seen(ev["type"], ev["object"])
                    if self._stop.is_set():
                        w.stop()
                        break
            except ApiException as exc:  # 410 Gone: events were lost, the count would be wrong
                with self._lock:
                    self.errors.append(f"watch failed: {exc.status} {exc.reason}")
                return
            except Exception:  # a dropped connection: resume from the last resourceVersion
                self._stop.wait(0.5)

    def _seen(self, type_: str, obj: dict[str, Any]) -> None:
        name, status = obj["metadata"]["name"], obj.get("status") or {}
        with self._lock:
            self._rv = obj["metadata"]["resourceVersion"]
            if type_ == "MODIFIED" and status != self.last.get(name):
                self.writes.append((time.monotonic(), name, status))
            self.last[name] = status

    def count(self) -> int:
        with self._lock:
            return len(self.writes)

    def phases(self, since: int = 0) -> list[str]:
        with self._lock:
            return [str(st.get("phase")) for _, _, st in self.writes[since:]]

    def first(self, check: Callable[[dict[str, Any]], bool], since: float = 0.0) -> float | None:
        """When the watch saw the first write at or after `since` whose status passes `check`."""
        with self._lock:
            return next((at for at, _, st in self.writes if at >= since and check(st)), None)

    def wait_status(self, name: str, check: Callable[[dict[str, Any]], bool], what: str) -> None:
        def seen() -> bool:
            with self._lock:
                assert not self.errors, self.errors
                return check(self.last.get(name) or {})

        wait_for(seen, 60, f"the watch sees {what}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def reconciled(kube: Kube, namespace: str, name: str) -> None:
    """Returns once the leader has run a whole reconcile of `name` that began after this call:
    its Service (a child it repairs) is deleted and re-created twice. Reconciles of one key run
    one at a time, so the first re-creation's reconcile, Events included, has ended when the
    second re-creation is seen. Whatever a reconcile would repeat (a second rollback, a second
    Event) is done by then: no sleeping and hoping."""
    for _ in range(2):
        old = kube.core.read_namespaced_service(name, namespace).metadata.uid

        def recreated(old: str = old) -> bool:
            try:
                return kube.core.read_namespaced_service(name, namespace).metadata.uid != old
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise

        kube.core.delete_namespaced_service(name, namespace)
        wait_for(recreated, 60, f"Service {namespace}/{name} re-created by the leader")


def events_for(kube: Kube, namespace: str, reason: str, text: str = "") -> list[Any]:
    return [e for e in kube.events(namespace, reason) if text in (e.message or "")]


def metric_lines(op: Operator, name: str) -> list[str]:
    return [ln for ln in op.metrics().splitlines() if ln.startswith(name)]


def history(status: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h["version"], h["outcome"]) for h in status.get("history") or ()]


def follow_alias(kube: Kube, namespace: str, model: str, **spec: Any) -> None:
    """A ModelDeployment following @champion. The registry is polled once an hour: a move is
    seen in time only through the registry webhook, or by a new leader re-reading everything."""
    kube.create_md(
        namespace,
        "m",
        {"model": {"name": model, "alias": "champion"}, "registry": {"pollInterval": "1h"}, **spec},
    )


# --- the tests -----------------------------------------------------------------------------
def test_only_the_leader_writes_while_the_standby_forwards_registry_events(
    kube: Kube, registry: Registry, replicas: Replicas, namespace: str
) -> None:
    model = registry.new_model(versions=3)
    registry.set_alias(model, "champion", "1")
    follow_alias(kube, namespace, model)
    kube.wait_phase(namespace, "m", r.HEALTHY, serving="1")

    status_watch = StatusWatch(kube, namespace)
    writes_per_move: dict[str, list[str]] = {}
    try:
        for version in ("2", "3", "1"):
            before = status_watch.count()
            registry.set_alias(model, "champion", version)
            kube.wait_phase(namespace, "m", r.HEALTHY, serving=version, timeout=60)
            status_watch.wait_status(
                "m",
                lambda st, v=version: (st.get("phase"), st.get("servingVersion")) == (r.HEALTHY, v),
                f"Healthy on version {version}",
            )
            writes_per_move[version] = status_watch.phases(before)
        settled = status_watch.count()
        reconciled(kube, namespace, "m")
        late = status_watch.phases(settled)
    finally:
        status_watch.stop()

    # Nothing after the last Healthy: repairing a child (reconciled) changes no status either.
    assert late == [], late

    for version, phases in writes_per_move.items():
        # Each move is written by one writer: it starts, progresses, ends Healthy.
        assert phases[0] == r.PROGRESSING and phases[-1] == r.HEALTHY, (version, phases)
        assert len(phases) <= MAX_STATUS_WRITES_PER_MOVE, (version, phases)
    st = kube.status(namespace, "m")
    assert history(st) == [
        ("1", "Succeeded"),
        ("2", "Succeeded"),
        ("3", "Succeeded"),
        ("1", "Succeeded"),
    ]
    # One RolloutStarted per rollout (the first deploy of v1 and the three moves), all from A.
    started = kube.events(namespace, r.EV_ROLLOUT_STARTED)
    assert sorted(e.message.split()[3] for e in started) == ["1", "1", "2", "3"], [
        e.message for e in started
    ]
    ours = [
        e
        for e in kube.core.list_namespaced_event(namespace).items
        if e.involved_object.kind == "ModelDeployment"
    ]
    assert {e.reporting_instance for e in ours} == {replicas.a_id}, [
        (e.reason, e.reporting_instance) for e in ours
    ]
    lease = client.CoordinationV1Api(kube.cluster.api_client()).read_namespaced_lease(
        LEASE_NAME, namespace
    )
    assert lease.spec.holder_identity == replicas.a_id

    # B never reconciled: no reconcile timings, no per-ModelDeployment series, leader gauge 0.
    b_metrics = replicas.b.metrics()
    assert f"{names.OP_LEADER} 0.0" in b_metrics.splitlines()
    assert f"{names.OP_ROLLOUT_STATUS}{{" not in b_metrics
    assert f"{names.OP_RECONCILE_SECONDS}_count{{" not in b_metrics
    # ... and it passed MLflow's alias events on (at least the three moves, none lost).
    forwards = metric_lines(replicas.b, f"{names.OP_WEBHOOK_FORWARDS}{{")
    forwarded = next(ln for ln in forwards if 'endpoint="mlflow",outcome="forwarded"' in ln)
    assert float(forwarded.split()[-1]) >= 3, forwards
    assert not [ln for ln in forwards if 'outcome="failed"' in ln], forwards
    a_metrics = replicas.a.metrics()
    assert f"{names.OP_LEADER} 1.0" in a_metrics.splitlines()
    healthy = f'{names.OP_ROLLOUT_STATUS}{{name="m",namespace="{namespace}",phase="Healthy"}} 1.0'
    assert healthy in a_metrics


def test_standby_takes_over_after_the_leader_is_killed_and_rolls_out_once(
    kube: Kube, registry: Registry, replicas: Replicas, namespace: str
) -> None:
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    follow_alias(kube, namespace, model)
    kube.wait_phase(namespace, "m", r.HEALTHY, serving="1")

    replicas.a.kill()
    # MLflow tells B, B cannot reach A: the move is picked up when B takes over and re-reads.
    registry.set_alias(model, "champion", "2")
    assert wait_leading(replicas.b) == replicas.b_id
    st = kube.wait_phase(namespace, "m", r.HEALTHY, serving="2", timeout=60)
    assert history(st) == [("1", "Succeeded"), ("2", "Succeeded")]

    reconciled(kube, namespace, "m")
    assert history(kube.status(namespace, "m")) == [("1", "Succeeded"), ("2", "Succeeded")]
    started = events_for(kube, namespace, r.EV_ROLLOUT_STARTED, "rolling out version 2 ")
    succeeded = events_for(kube, namespace, r.EV_ROLLOUT_SUCCEEDED, "version 2 is serving")
    assert len(started) == 1 and len(succeeded) == 1, (started, succeeded)
    assert {e.reporting_instance for e in started + succeeded} == {replicas.b_id}

    lease = client.CoordinationV1Api(kube.cluster.api_client()).read_namespaced_lease(
        LEASE_NAME, namespace
    )
    assert lease.spec.holder_identity == replicas.b_id
    assert lease.spec.lease_transitions == 1  # A acquired it, B took it over: one transition
    assert lease.metadata.annotations[names.ANNOTATION_LEADER_URL] == url_of(replicas.b)


def deploy_v2_after_healthy_v1(kube: Kube, registry: Registry, namespace: str) -> None:
    """v1 healthy first, so v2 has a version to roll back to; rolled back on ALERT."""
    model = registry.new_model(versions=2)
    registry.set_alias(model, "champion", "1")
    follow_alias(kube, namespace, model, rollback={"enabled": True, "onAlerts": [ALERT]})
    kube.wait_phase(namespace, "m", r.HEALTHY, serving="1")
    registry.set_alias(model, "champion", "2")
    kube.wait_phase(namespace, "m", r.HEALTHY, serving="2", timeout=60)


def assert_rolled_back_once(kube: Kube, namespace: str, by: Operator, identity: str) -> None:
    reconciled(kube, namespace, "m")
    st = kube.status(namespace, "m")
    assert (st["phase"], st["servingVersion"]) == (r.ROLLED_BACK, "1")
    assert st["rejectedVersions"] == ["2"]
    assert history(st) == [("1", "Succeeded"), ("2", "RolledBack"), ("1", "Succeeded")]
    rolled_back = kube.events(namespace, r.EV_ROLLED_BACK)
    assert len(rolled_back) == 1, [e.message for e in rolled_back]
    assert rolled_back[0].reporting_instance == identity
    labels = f'alert="{ALERT}",name="m",namespace="{namespace}"'
    assert f"{names.OP_ROLLBACKS}{{{labels}}} 1.0" in by.metrics().splitlines()


def test_alert_sent_to_the_standby_during_the_handover_rolls_back_exactly_once(
    kube: Kube, registry: Registry, replicas: Replicas, namespace: str
) -> None:
    deploy_v2_after_healthy_v1(kube, registry, namespace)
    payload = notification(namespace, "m", "2", alert=ALERT)

    replicas.a.kill()
    # B still reads the Lease as A's (it expires 15 s after A's last renewal): B keeps the
    # alert, cannot forward it to A's dead port, and asks the sender to retry.
    during = post(replicas.b, payload)
    assert during.status_code == 503, during.text
    assert "kept on this standby" in during.json()["error"]
    assert during.headers.get("Retry-After")

    assert wait_leading(replicas.b) == replicas.b_id
    kube.wait_phase(namespace, "m", r.ROLLED_BACK, serving="1", timeout=60)
    assert_rolled_back_once(kube, namespace, replicas.b, replicas.b_id)
    failed = f'{names.OP_WEBHOOK_FORWARDS}{{endpoint="alertmanager",outcome="failed"}} 1.0'
    assert failed in replicas.b.metrics().splitlines()

    # Alertmanager retries and repeats: the same notification again, now to the leader B.
    again = post(replicas.b, payload)
    assert again.status_code == 200 and again.json() == {"woken": 0}, again.text
    assert_rolled_back_once(kube, namespace, replicas.b, replicas.b_id)


def test_standby_forwards_an_alert_to_the_living_leader_which_rolls_back(
    kube: Kube, registry: Registry, replicas: Replicas, namespace: str
) -> None:
    deploy_v2_after_healthy_v1(kube, registry, namespace)

    answer = post(replicas.b, notification(namespace, "m", "2", alert=ALERT))
    assert answer.status_code == 200 and answer.json() == {"woken": 1}, answer.text  # A's answer
    kube.wait_phase(namespace, "m", r.ROLLED_BACK, serving="1", timeout=60)
    assert_rolled_back_once(kube, namespace, replicas.a, replicas.a_id)
    forwards = metric_lines(replicas.b, f"{names.OP_WEBHOOK_FORWARDS}{{")
    assert f'{names.OP_WEBHOOK_FORWARDS}{{endpoint="alertmanager",outcome="forwarded"}} 1.0' in (
        forwards
    )
    assert f"{names.OP_ROLLBACKS}{{" not in replicas.b.metrics()
