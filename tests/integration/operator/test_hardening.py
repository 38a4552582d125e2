"""Defects found by attacking and faulting the operator, each proved fixed on the real API
server with the operator run as users run it:

* a deleted Service, ServiceMonitor or PrometheusRule comes back in seconds, not at the next
  registry poll (every owned kind is watched);
* a registry webhook delivery replayed is refused, and junk header bytes are a 401, not a 500;
* the operator's own registry credentials go to its own registry only, never to a trackingUri a
  ModelDeployment names, and no credential (the operator's, a ModelDeployment's Secret's, the
  webhook secrets) shows in the operator's log, Events, status or metrics;
* the operator's endpoints listen on loopback unless told otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import stack as devstack
from kubernetes.client.exceptions import ApiException

from tests.conftest import Cluster
from tests.integration.operator.conftest import WEBHOOK_SECRET, Kube, Registry, wait_for

MONITORING = ("monitoring.coreos.com", "v1")


def _exists(read: object) -> bool:
    try:
        read()  # type: ignore[operator]
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def test_deleted_children_come_back_within_seconds(
    kube: Kube, registry: Registry, start_operator, namespace: str, cluster: Cluster
) -> None:
    devstack.install_monitoring_crds(cluster.kubectl)
    model = registry.new_model()
    start_operator(namespace)
    # An hour between registry polls: only the child watches can bring them back in time.
    spec = {"model": {"name": model, "version": "1"}, "registry": {"pollInterval": "1h"}}
    kube.create_md(namespace, "kids", spec)
    kube.wait_phase(namespace, "kids", "Healthy", serving="1")
    wait_for(
        lambda: kube.condition(namespace, "kids", "MonitoringReady").get("status") == "True",
        60,
        "MonitoringReady",
    )
    custom = kube.custom
    readers = {
        "Service": lambda: kube.core.read_namespaced_service("kids", namespace),
        "ServiceMonitor": lambda: custom.get_namespaced_custom_object(
            *MONITORING, namespace, "servicemonitors", "kids"
        ),
        "PrometheusRule": lambda: custom.get_namespaced_custom_object(
            *MONITORING, namespace, "prometheusrules", "kids"
        ),
    }
    deleters = {
        "Service": lambda: kube.core.delete_namespaced_service("kids", namespace),
        "ServiceMonitor": lambda: custom.delete_namespaced_custom_object(
            *MONITORING, namespace, "servicemonitors", "kids"
        ),
        "PrometheusRule": lambda: custom.delete_namespaced_custom_object(
            *MONITORING, namespace, "prometheusrules", "kids"
        ),
    }
    for kind, delete in deleters.items():
        uid = readers[kind]()
        uid = uid.metadata.uid if kind == "Service" else uid["metadata"]["uid"]
        delete()

        def recreated(kind: str = kind, old: str = uid) -> bool:
            if not _exists(readers[kind]):
                return False
            obj = readers[kind]()
            new = obj.metadata.uid if kind == "Service" else obj["metadata"]["uid"]
            return bool(new != old)

        wait_for(recreated, 30, f"{kind} recreated after deletion")


def _signed(payload: str, delivery: str) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(
        WEBHOOK_SECRET.encode(), f"{delivery}.{ts}.{payload}".encode(), hashlib.sha256
    ).digest()
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
    }


def _raw_post(port: int, path: str, headers: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + headers
            + b"Content-Length: 2\r\n\r\n{}"
        )
        return int(s.recv(4096).split()[1])


@pytest.mark.attacks
def test_replayed_webhook_delivery_is_refused_and_junk_headers_are_401(
    kube: Kube, registry: Registry, start_operator, namespace: str
) -> None:
    model = registry.new_model()
    op = start_operator(namespace)
    url = f"http://127.0.0.1:{op.webhook_port}/webhooks/mlflow"
    payload = json.dumps({"entity": "model_version_alias", "data": {"name": model}})
    headers = _signed(payload, "delivery-1")
    codes = [requests.post(url, data=payload, headers=headers, timeout=10).status_code]
    codes += [requests.post(url, data=payload, headers=headers, timeout=10).status_code] * 19
    assert codes[0] == 200 and set(codes[1:]) == {401}, codes
    fresh = requests.post(url, data=payload, headers=_signed(payload, "delivery-2"), timeout=10)
    assert fresh.status_code == 200

    ts = str(int(time.time())).encode()
    junk_signature = (
        b"X-MLflow-Delivery-Id: d\xff\r\nX-MLflow-Timestamp: " + ts + b"\r\n"
        b"X-MLflow-Signature: v1,\xe9\xff\r\n"
    )
    assert _raw_post(op.webhook_port, "/webhooks/mlflow", junk_signature) == 401
    junk_bearer = b"Authorization: Bearer \xff\xfe\r\n"
    assert _raw_post(op.webhook_port, "/alerts/alertmanager", junk_bearer) == 401
    assert op.proc is not None and op.proc.poll() is None


class Recorder:
    """A stand-in registry on loopback that records the path and Authorization header of each
    request and answers every one "not found", as MLflow does for an unknown model. A
    ModelDeployment tells its registries apart by the path of its trackingUri."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization")))
                body = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such model"}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def auth(self, prefix: str = "") -> set[str | None]:
        """The Authorization headers of the requests under `prefix`."""
        return {a for path, a in self.seen if path.startswith(prefix)}


@pytest.fixture
def recorders() -> Iterator[tuple[Recorder, Recorder]]:
    own, other = Recorder(), Recorder()
    yield own, other
    own.server.shutdown()
    other.server.shutdown()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.attacks
def test_operator_credentials_go_to_its_own_registry_only(
    kube: Kube, start_operator, namespace: str, recorders: tuple[Recorder, Recorder]
) -> None:
    """Unique values planted in the operator's environment and in a ModelDeployment's Secret:
    each credential reaches only the registry it belongs to, and none of them appears in the
    operator's log, Events, status, annotations or metrics."""
    own, other = recorders
    tag = uuid.uuid4().hex[:10]
    planted = {
        "MLFLOW_TRACKING_USERNAME": f"op-user-{tag}",
        "MLFLOW_TRACKING_PASSWORD": f"op-pass-{tag}",
        "MLFLOW_TRACKING_TOKEN": f"op-token-{tag}",
        "MODELDEPLOY_ALERT_WEBHOOK_TOKEN": f"alert-token-{tag}",
        "MODELDEPLOY_REGISTRY_WEBHOOK_SECRET": f"hook-secret-{tag}",
    }
    in_secret = {
        "MLFLOW_TRACKING_USERNAME": f"md-user-{tag}",
        "MLFLOW_TRACKING_PASSWORD": f"md-pass-{tag}",
        "MLFLOW_TRACKING_TOKEN": f"md-token-{tag}",
    }
    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": in_secret}
    )
    op = start_operator(
        namespace, webhook=False, extra_env={"MLFLOW_TRACKING_URI": own.uri, **planted}
    )
    kube.create_md(namespace, "own", {"model": {"name": "m"}})
    kube.create_md(
        namespace, "other", {"model": {"name": "m"}, "registry": {"trackingUri": other.uri}}
    )
    kube.create_md(
        namespace,
        "with-secret",
        {"model": {"name": "m"},
         "registry": {"trackingUri": other.uri + "/team", "credentialsSecret": "creds"}},
    )  # fmt: skip
    # The same registry as the one with a Secret, without one: nothing is borrowed.
    borrower = {"model": {"name": "m"}, "registry": {"trackingUri": other.uri + "/team2"}}
    kube.create_md(namespace, "borrower", borrower)
    wait_for(
        lambda: own.seen and other.auth("/api") and other.auth("/team/") and other.auth("/team2/"),
        60,
        "every registry asked",
    )
    operator_creds = _basic(
        planted["MLFLOW_TRACKING_USERNAME"], planted["MLFLOW_TRACKING_PASSWORD"]
    )
    md_creds = _basic(in_secret["MLFLOW_TRACKING_USERNAME"], in_secret["MLFLOW_TRACKING_PASSWORD"])
    assert own.auth() == {operator_creds}
    assert other.auth("/api") == {None}, "the operator's credentials went to another server"
    assert other.auth("/team/") == {md_creds}, "the Secret's credentials did not reach its registry"
    assert other.auth("/team2/") == {None}, "a ModelDeployment borrowed another's credentials"
    for name in ("own", "other", "with-secret", "borrower"):
        assert kube.wait_phase(namespace, name, "Failed")["conditions"]

    secrets = [*planted.values(), *in_secret.values(), operator_creds, md_creds]
    secrets += [v.split(" ", 1)[1] for v in (operator_creds, md_creds)]  # the base64 alone
    mds = [kube.md(namespace, n) for n in ("own", "other", "with-secret", "borrower")]
    events = kube.core.list_namespaced_event(namespace).items
    assert events, "no Events to scan"
    places = {
        "operator log": op.log_path.read_text(errors="replace"),
        "Events": json.dumps([e.to_dict() for e in events], default=str),
        "ModelDeployments (status, annotations)": json.dumps(mds),
        "operator metrics": op.metrics(),
    }
    for where, text in places.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{where} holds {leaked}"


def _listening(port: int) -> set[str]:
    """Local addresses listening on `port` (IPv4 and IPv6), from /proc."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hexport = local.split(":")
                if state == "0A" and int(hexport, 16) == port:
                    raw = bytes.fromhex(addr)
                    if width == 8:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:
                        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_operator_endpoints_listen_on_loopback_only(start_operator, namespace: str) -> None:
    op = start_operator(namespace)
    for port in (op.metrics_port, op.webhook_port, op.health_port):
        assert _listening(port) == {"127.0.0.1"}, port
