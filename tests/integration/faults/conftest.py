"""The fault suite's fixtures and observations (docs/reliability.md lists the cases).

The operator fixtures are the operator tests' own (imported, not copied): `start_operator` runs
`modeldeploy operator` as a subprocess and `Operator.kill()` SIGKILLs its process group. Cases
that kill a part of the stack itself (API server, MLflow, Prometheus, Alertmanager) run on a
private stack (test_outages.py); the others share the session's stack like every other
integration test, each in its own namespace.

The private stack (dev/stack.py `Stack(root=...)`: its own cluster, MLflow, Alertmanager and
Prometheus) is started once per session, in the background from the suite's first test on,
for the cases that kill its parts and for those that need the CRD exactly as this tree has it
(the session's cluster is shared with other sessions, which may apply theirs). Its supervisor
restarts a part that exits within a second, which would turn every outage into a blip; so
`outage` stops the supervisor first, kills the part (SIGKILL), waits out the outage, and starts
the supervisor again, which restarts the part with the same command line, port and data
(`kwokctl start cluster` for the API server; it also brings back the scheduler and
controller-manager, which exit when they lose their leases during a long outage), as a process
manager would on a real host.

After each fault the same questions are asked of the ModelDeployment (`Story`): which version
serves (status and the Deployment's template), what history holds, and which Events were posted
for it, counted by reason, so a duplicate rollout or rollback shows as a second Event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
import stack as devstack
from kubernetes.client.exceptions import ApiException

from modeldeploy import names
from modeldeploy.api import reasons as r
from tests.conftest import REPO, Cluster, unavailable
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures, reused as they are)
    Kube,
    Operator,
    Registry,
    crd,
    kube,
    pytest_runtest_makereport,
    registry,
    start_operator,
    wait_for,
)
from tests.integration.operator.test_high_availability import (  # noqa: F401  (fixture)
    replicas,
)

MONITORING = ("monitoring.coreos.com", "v1")
PRIVATE_PARTS = ("cluster", "mlflow", "alertmanager", "prometheus")


class Story:
    """What happened to one ModelDeployment, read from the API server."""

    def __init__(self, api: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = api, namespace, name

    def status(self) -> dict[str, Any]:
        return self.kube.status(self.namespace, self.name)

    def history(self) -> list[tuple[str, str]]:
        return [(h["version"], h["outcome"]) for h in self.status().get("history") or ()]

    def events(self) -> list[Any]:
        """Events about this ModelDeployment, oldest first: in the order the API server stored
        them (their timestamps have whole seconds; a resourceVersion is etcd's revision)."""
        items = [
            e
            for e in self.kube.core.list_namespaced_event(self.namespace).items
            if e.involved_object.kind == "ModelDeployment" and e.involved_object.name == self.name
        ]
        return sorted(items, key=lambda e: int(e.metadata.resource_version))

    def reasons(self) -> Counter[str]:
        return Counter(e.reason for e in self.events())

    def messages(self, reason: str) -> list[str]:
        return [e.message or "" for e in self.events() if e.reason == reason]

    def started(self, version: str) -> int:
        """RolloutStarted Events for `version` ("rolling out version N ...")."""
        return sum(
            m.startswith(f"rolling out version {version} ")
            for m in self.messages(r.EV_ROLLOUT_STARTED)
        )

    def template_version(self) -> str | None:
        dep = self.kube.deployment(self.namespace, self.name)
        if dep is None:
            return None
        env = dep.spec.template.spec.containers[0].env or []
        return next((e.value for e in env if e.name == "MODEL_VERSION"), None)

    def serves(self, version: str) -> bool:
        """Status and the pods' template agree on `version`, and the rollout is complete."""
        st = self.status()
        dep = self.kube.deployment(self.namespace, self.name)
        return (
            st.get("servingVersion") == version
            and self.template_version() == version
            and dep is not None
            and (dep.status.updated_replicas or 0) == dep.spec.replicas
            and (dep.status.available_replicas or 0) == dep.spec.replicas
        )

    def pause(self, paused: bool = True) -> None:
        """Holds (or lets go) the Deployment's rollout: the Deployment controller does not roll
        out a new template while paused, so the phase the operator wrote stays as it is.
        `spec.paused` is a field the operator does not set, so its apply leaves it alone."""
        self.kube.apps.patch_namespaced_deployment(
            self.name, self.namespace, {"spec": {"paused": paused}}
        )


def reconcile_errors(metrics: str) -> float:
    """Reconciles that ended in an error, from an operator's /metrics text."""
    prefix = f'{names.OP_RECONCILE_SECONDS}_count{{outcome="error"}}'
    return sum(float(ln.split()[-1]) for ln in metrics.splitlines() if ln.startswith(prefix))


def exists(read: Any) -> bool:
    try:
        read()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


@dataclass
class Private:
    stack: devstack.Stack
    cluster: Cluster
    kube: Kube
    registry: Registry
    mlflow_uri: str
    logs: Path

    def url(self, part: str) -> str:
        return f"http://127.0.0.1:{self.stack.state()[part]['port']}"

    def namespace(self) -> str:
        name = f"faults-{uuid.uuid4().hex[:6]}"
        self.kube.core.create_namespace({"metadata": {"name": name}})
        return name

    def operator(self, namespaces: list[str]) -> Operator:
        """`modeldeploy operator` on this stack, watching `namespaces`, and Alertmanager's
        receiver pointed at it (with this stack's token)."""
        extra = [a for ns in namespaces[1:] for a in ("--namespace", ns)]
        op = Operator(
            self.cluster,
            namespaces[0],
            self.mlflow_uri,
            self.logs,
            extra_env={
                "MODELDEPLOY_ALERT_WEBHOOK_TOKEN": self.stack.alert_token(),
                "MODELDEPLOY_ALERTMANAGER_URL": self.url("alertmanager"),
                "MODELDEPLOY_PROMETHEUS_URL": self.url("prometheus"),
            },
            extra_args=extra,
        ).start()
        self.stack.set_alert_webhook(f"http://127.0.0.1:{op.webhook_port}/alerts/alertmanager")
        return op


class PrivateStart:
    """`Stack.up` of the private stack on a thread of its own: a minute of start-up (MLflow's
    mostly) that overlaps the cases on the shared stack, which run first."""

    def __init__(self, root: Path) -> None:
        self.stack = devstack.Stack(root / "stack")
        self.root = root
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._up, name="private-stack", daemon=True)

    def _up(self) -> None:
        try:
            self.stack.up(PRIVATE_PARTS, build=False)
        except BaseException as exc:  # reported by `private`, in the test that needs it
            self.error = exc


@pytest.fixture(scope="session", autouse=True)
def private_start(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateStart | None]:
    """Starts the private stack as the suite begins, if any selected test uses it; stops it at
    the end of the session."""
    if not any("private" in getattr(i, "fixturenames", ()) for i in request.session.items):
        yield None
        return
    start = PrivateStart(tmp_path_factory.mktemp("faults"))
    start.thread.start()
    try:
        yield start
    finally:
        start.thread.join()
        start.stack.down()


@pytest.fixture(scope="session")
def private(private_start: PrivateStart | None) -> Iterator[Private]:
    assert private_start is not None  # started whenever a selected test asks for `private`
    private_start.thread.join()
    s = private_start.stack
    if private_start.error is not None:
        unavailable(f"private stack for the fault suite: {private_start.error}")
    previous_uri = mlflow.get_tracking_uri()
    try:
        info = s.state()["cluster"]
        cluster = Cluster(kubeconfig=info["kubeconfig"], kubectl_bin=s.binary("kubectl"))
        devstack.apply_crds(cluster.kubectl, [REPO / "crds"], ["modeldeployments.modeldeploy.io"])
        uri = f"http://127.0.0.1:{s.state()['mlflow']['port']}"
        registry = Registry(uri)  # sets MLflow's process-wide tracking URI: put back below
        mlflow.set_tracking_uri(previous_uri)
        yield Private(s, cluster, Kube(cluster), registry, uri, private_start.root)
    finally:
        mlflow.set_tracking_uri(previous_uri)


@contextlib.contextmanager
def outage(s: devstack.Stack, part: str, seconds: float) -> Iterator[dict[str, float]]:
    """SIGKILLs `part` (the API server for "cluster") with the supervisor stopped; the body runs
    during the outage, which lasts `seconds` from the kill; then the supervisor is started again
    and brings the part back. Yields {"killed": t, "restarted": t, "back": t} (monotonic: the
    kill, the supervisor started again, the part answering its health check; the last two set
    on exit)."""
    with s.locked():
        sup = s.state().get("supervisor") or {}
        s._save("supervisor", None)  # a supervisor that finds itself unrecorded exits
    if sup.get("pid"):
        devstack.terminate(int(sup["pid"]))
    if part == "cluster":
        pid = s.cluster_pids()["kube-apiserver"]
        os.kill(pid, signal.SIGKILL)
    else:
        pid = int(s.state()[part]["pid"])
        os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not devstack.pid_alive(pid), 10, f"{part} (pid {pid}) dead")
    times = {"killed": time.monotonic()}
    try:
        yield times
        time.sleep(max(0.0, seconds - (time.monotonic() - times["killed"])))
    finally:
        times["restarted"] = time.monotonic()
        s.ensure_supervisor()
    wait_for(lambda: s.healthy(part), 120, f"{part} back")
    times["back"] = time.monotonic()
