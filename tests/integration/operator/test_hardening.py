"""Defects found by attacking and faulting the operator, each proved fixed on the real API
server with the operator run as users run it:

* a deleted Service, ServiceMonitor or PrometheusRule comes back in seconds, not at the next
  registry poll (every owned kind is watched);
* a registry webhook delivery replayed is refused, and junk header bytes are a 401, not a 500;
* the operator's own registry credentials go to its own registry only, never to a trackingUri a
  ModelDeployment names;
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
    """A stand-in registry on loopback that records the Authorization header of each request
    and answers every one "not found", as MLflow does for an unknown model."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                recorder.seen.append(self.headers.get("Authorization"))
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


@pytest.fixture
def recorders() -> Iterator[tuple[Recorder, Recorder]]:
    own, other = Recorder(), Recorder()
    yield own, other
    own.server.shutdown()
    other.server.shutdown()


def test_operator_credentials_go_to_its_own_registry_only(
    kube: Kube, start_operator, namespace: str, recorders: tuple[Recorder, Recorder]
) -> None:
    own, other = recorders
    start_operator(
        namespace,
        webhook=False,
        extra_env={
            "MLFLOW_TRACKING_URI": own.uri,
            "MLFLOW_TRACKING_USERNAME": "operator",
            "MLFLOW_TRACKING_PASSWORD": "operator-secret",
        },
    )
    kube.create_md(namespace, "own", {"model": {"name": "m"}})
    kube.create_md(
        namespace, "other", {"model": {"name": "m"}, "registry": {"trackingUri": other.uri}}
    )
    wait_for(lambda: own.seen and other.seen, 60, "both registries asked")
    expected = "Basic " + base64.b64encode(b"operator:operator-secret").decode()
    assert set(own.seen) == {expected}
    assert set(other.seen) == {None}, "the operator's credentials went to another server"
    assert kube.wait_phase(namespace, "other", "Failed")["conditions"]


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
