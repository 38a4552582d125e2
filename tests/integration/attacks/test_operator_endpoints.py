"""The operator's webhook endpoints (controller/endpoints.py) attacked through a real operator
process: forged, replayed, stale and future-dated deliveries refused and counted, oversized and
slow requests refused in bounded time, generated junk never a 5xx.

One operator serves the whole module (its metrics are read as deltas): it watches a namespace
of its own and registers no MLflow webhook, so nothing but this module's requests reach it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy import names
from modeldeploy.controller.endpoints import (
    FORWARDED_BY,
    FORWARDED_SIGNATURE,
    FORWARDED_TIMESTAMP,
    forward_signature,
)
from modeldeploy.registry.webhooks import MAX_WEBHOOK_FUTURE_SECONDS, MAX_WEBHOOK_SKEW_SECONDS
from tests.conftest import Cluster, wait_for
from tests.integration.attacks.junk import KNOWN_JUNK, poke_raw
from tests.integration.operator.conftest import WEBHOOK_SECRET, Operator

pytestmark = pytest.mark.attacks

MLFLOW, ALERTS = "/webhooks/mlflow", "/alerts/alertmanager"
BODY_LIMIT = 1 << 20  # the endpoints' aiohttp client_max_size


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, crd: None, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    core = client.CoreV1Api(cluster.api_client())
    ns = f"attacks-endpoints-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": ns, "labels": {"modeldeploy.io/test": "true"}}})
    op = Operator(cluster, ns, mlflow_uri, tmp_path_factory.mktemp("operator"), webhook=False)
    try:
        yield op.start()
    finally:
        op.stop()
        core.delete_namespace(ns, propagation_policy="Background")


def url(op: Operator, path: str) -> str:
    return f"http://127.0.0.1:{op.webhook_port}{path}"


def counts(op: Operator, name: str) -> dict[str, float]:
    """The samples of one operator counter, by their `outcome` label."""
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(op.metrics()):
        for s in fam.samples:
            if s.name == name:
                out[s.labels.get("outcome", "")] = s.value
    return out


def grown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def signed(payload: bytes, delivery: str, ts: int, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    message = f"{delivery}.{ts}.".encode() + payload
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": str(ts),
        "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(),
    }


def alert_token(op: Operator) -> str:
    return op.env["MODELDEPLOY_ALERT_WEBHOOK_TOKEN"]


def notification(name: str = "ModelHighErrorRate") -> bytes:
    alert = {"status": "firing", "labels": {"alertname": name, "namespace": "nowhere"}}
    return json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()


# --- forged, replayed, stale, future --------------------------------------------------------


def test_forged_replayed_stale_and_future_registry_webhooks_are_refused_and_counted(
    operator: Operator,
) -> None:
    payload = json.dumps(
        {"entity": "model_version_alias", "action": "created", "data": {"name": "no-such"}}
    ).encode()
    now = int(time.time())
    unsigned = {"Content-Type": "application/json"}
    cases = [
        # (what, headers, expected status, outcome)
        ("valid", signed(payload, "d-1", now), 200, names.WEBHOOK_ACCEPTED),
        ("replayed", signed(payload, "d-1", now), 401, names.WEBHOOK_REPLAYED),
        ("unsigned", unsigned, 401, names.WEBHOOK_UNSIGNED),
        ("wrong secret", signed(payload, "d-2", now, "guessed"), 401, names.WEBHOOK_FORGED),
        ("id swapped", {**signed(payload, "d-3", now), "X-MLflow-Delivery-Id": "d-4"}, 401,
         names.WEBHOOK_FORGED),
        ("stale", signed(payload, "d-5", now - MAX_WEBHOOK_SKEW_SECONDS - 5), 401,
         names.WEBHOOK_STALE),
        ("a day old", signed(payload, "d-6", now - 86_400), 401, names.WEBHOOK_STALE),
        ("future", signed(payload, "d-7", now + MAX_WEBHOOK_FUTURE_SECONDS + 5), 401,
         names.WEBHOOK_FUTURE),
        ("forged and old", signed(payload, "d-8", now - 86_400, "guessed"), 401,
         names.WEBHOOK_FORGED),
    ]  # fmt: skip
    before = counts(operator, names.OP_REGISTRY_WEBHOOKS)
    expected: dict[str, float] = {}
    for what, headers, status, outcome in cases:
        r = requests.post(url(operator, MLFLOW), data=payload, headers=headers, timeout=10)
        assert r.status_code == status, (what, r.status_code, r.text)
        expected[outcome] = expected.get(outcome, 0) + 1
    # The body must be the signed one: the same headers over another body are a forgery.
    tampered = payload.replace(b"no-such", b"other")
    r = requests.post(url(operator, MLFLOW), data=tampered, headers=signed(payload, "d-9", now))
    assert r.status_code == 401
    expected[names.WEBHOOK_FORGED] += 1
    # Signed, but not an MLflow event; and a tag the operator writes itself: ignored.
    r = requests.post(url(operator, MLFLOW), data=b"[]", headers=signed(b"[]", "d-10", now))
    assert r.status_code == 400
    tag = json.dumps({"entity": "model_version_tag", "data": {"name": "m", "key": "x"}}).encode()
    r = requests.post(url(operator, MLFLOW), data=tag, headers=signed(tag, "d-11", now))
    assert r.status_code == 200 and r.json()["ignored"] == "tag"
    expected[names.WEBHOOK_MALFORMED] = 1
    expected[names.WEBHOOK_IGNORED] = 1
    assert grown(before, counts(operator, names.OP_REGISTRY_WEBHOOKS)) == expected


def test_forged_and_stale_alert_notifications_are_refused_and_counted(operator: Operator) -> None:
    """Alertmanager sends a bearer token and no timestamp: a replayed notification with the
    right token is accepted again, which is harmless (firing alerts are a state, not an event;
    the planner decides). A notification a standby forwards carries an HMAC and a timestamp
    instead of the token: forged, stale and future-dated ones are refused like a wrong token."""
    body, token, now = notification(), alert_token(operator), int(time.time())

    def forwarded(ts: int, key: str = token) -> dict[str, str]:
        return {
            FORWARDED_BY: "a-standby",
            FORWARDED_TIMESTAMP: str(ts),
            FORWARDED_SIGNATURE: forward_signature(key, str(ts), body),
            "Content-Type": "application/json",
        }

    refused = [
        ("no token", {}),
        ("wrong token", {"Authorization": "Bearer guessed"}),
        ("token as basic", {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}),
        ("token without scheme", {"Authorization": token}),
        ("forwarded, forged", forwarded(now, "guessed")),
        ("forwarded, stale", forwarded(now - MAX_WEBHOOK_SKEW_SECONDS - 5)),
        ("forwarded, future", forwarded(now + MAX_WEBHOOK_FUTURE_SECONDS + 5)),
        ("forwarded, no timestamp", {**forwarded(now), FORWARDED_TIMESTAMP: ""}),
        ("forwarded with the token", {FORWARDED_BY: "x", "Authorization": f"Bearer {token}"}),
    ]
    before = counts(operator, names.OP_ALERTS_RECEIVED)
    for what, headers in refused:
        r = requests.post(url(operator, ALERTS), data=body, headers=headers, timeout=10)
        assert r.status_code == 401, (what, r.status_code, r.text)
    bearer = {"Authorization": f"Bearer {token}"}
    for _ in range(2):  # the same notification twice: both accepted, nothing happens twice
        assert requests.post(url(operator, ALERTS), data=body, headers=bearer).status_code == 200
    assert (
        requests.post(url(operator, ALERTS), data=body, headers=forwarded(now)).status_code == 200
    )
    assert grown(before, counts(operator, names.OP_ALERTS_RECEIVED)) == {
        "unauthorized": len(refused),
        "accepted": 3,
    }


# --- generated junk --------------------------------------------------------------------------

DEEP = b"[" * 5_000 + b"]" * 5_000  # past the JSON parser's recursion limit
junk_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
junk_bodies = st.one_of(
    st.binary(max_size=1000),
    junk_json.map(lambda v: json.dumps(v).encode()),
    junk_json.map(lambda v: json.dumps({"alerts": v}).encode()),
    junk_json.map(lambda v: json.dumps({"alerts": [{"labels": v}]}).encode()),
    junk_json.map(lambda v: json.dumps({"entity": "model_version", "data": v}).encode()),
    st.integers(1, 5_000).map(lambda d: b"[" * d + b"]" * d),
    st.integers(1, 5_000).map(lambda d: b'{"alerts": ' + b"[" * d + b"]" * d + b"}"),
)


def test_generated_junk_is_never_a_5xx_and_the_operator_keeps_answering(
    operator: Operator,
) -> None:
    """With valid credentials too: a holder of the token or the HMAC secret still cannot make
    the endpoint fail (deep nesting once raised RecursionError past the JSON parser: a 500)."""
    token = alert_token(operator)
    session = requests.Session()
    seen: dict[int, int] = {}

    @settings(
        max_examples=80,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        body=junk_bodies,
        path=st.sampled_from([MLFLOW, ALERTS]),
        auth=st.booleans(),
        method=st.sampled_from(["POST", "GET", "PUT", "DELETE"]),
    )
    @example(body=DEEP, path=ALERTS, auth=True, method="POST")
    @example(body=DEEP, path=MLFLOW, auth=True, method="POST")
    def probe(body: bytes, path: str, auth: bool, method: str) -> None:
        if path == MLFLOW:
            headers = signed(body, uuid.uuid4().hex, int(time.time())) if auth else {}
        else:
            headers = {"Authorization": f"Bearer {token}"} if auth else {}
        r = session.request(method, url(operator, path), data=body, headers=headers, timeout=10)
        assert r.status_code < 500, (method, path, auth, body[:200], r.status_code, r.text[:300])
        seen[r.status_code] = seen.get(r.status_code, 0) + 1

    probe()
    for junk in KNOWN_JUNK:  # not HTTP/1.1 at all: aiohttp's parser answers 400 or closes
        poke_raw("127.0.0.1", operator.webhook_port, junk)
    assert operator.proc is not None and operator.proc.poll() is None
    assert requests.get(url(operator, "/readyz"), timeout=5).status_code == 200
    assert {400, 401, 405} <= set(seen), seen


# --- oversized and slow --------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split()[1])


@pytest.mark.parametrize("path", [MLFLOW, ALERTS])
def test_a_body_over_the_limit_is_refused_without_being_read_whole(
    operator: Operator, path: str
) -> None:
    """1 GB announced, far less sent: the 413 arrives while the client still has almost all of
    it to send (the endpoint stops at its 1 MiB limit), and the connection is closed."""
    token = alert_token(operator)
    auth = f"Authorization: Bearer {token}\r\n" if path == ALERTS else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {1 << 30}\r\n\r\n"
    ).encode()
    sent = 0
    with connect(operator.webhook_port) as sock:
        sock.sendall(head)
        chunk = b" " * 65536
        answer = b""
        sock.settimeout(0.05)
        while sent < 64 * BODY_LIMIT:
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            break
    assert status_of(answer) == 413, answer[:300]
    assert sent < 8 * BODY_LIMIT, f"sent {sent} bytes before the 413"
    assert requests.get(url(operator, "/readyz"), timeout=5).status_code == 200


def test_slow_clients_on_the_webhook_port_are_dropped(operator: Operator) -> None:
    """Slowloris: headers a byte at a time, and a body that never finishes. Each must lose its
    connection (READ_TIMEOUT_SECONDS, 5 s; the client gives up after 30 s of trickling), the
    body one with a 408. Both run at once, so the test takes one timeout, not two."""
    token, body = alert_token(operator), notification()
    slow_headers = (
        b"POST /alerts/alertmanager HTTP/1.1\r\nHost: x\r\n",
        b"X-Slow: " + b"a" * 60,
    )
    slow_body = (
        f"POST {ALERTS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:5],
        b" " * 60,
    )
    with ThreadPoolExecutor(2) as pool:
        headers_done, body_done = pool.map(
            lambda case: trickle(operator.webhook_port, *case), (slow_headers, slow_body)
        )
    assert headers_done[0], "the operator kept a connection whose headers never ended"
    assert body_done == (True, 408), body_done
    assert requests.get(url(operator, "/readyz"), timeout=5).status_code == 200


def trickle(port: int, first: bytes, rest: bytes, interval: float = 0.5) -> tuple[bool, int]:
    """Sends `first`, then `rest` a byte per `interval`. (closed by the server, status it
    answered or 0), as soon as the server closes the connection or answers."""
    with connect(port) as sock:
        sock.sendall(first)
        for byte in rest:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return True, 0
            time.sleep(interval)
            sock.setblocking(False)
            try:
                got = sock.recv(65536)
                return True, status_of(got) if got else 0
            except BlockingIOError:
                pass
            except ConnectionResetError:
                return True, 0
            finally:
                sock.setblocking(True)
    return False, 0


def test_the_operators_log_names_no_credential(operator: Operator) -> None:
    """After the attacks above (and one here, so the test stands alone): refusals are logged,
    without the secrets the senders missed."""
    forged = signed(b"{}", uuid.uuid4().hex, int(time.time()), "guessed")
    assert requests.post(url(operator, MLFLOW), data=b"{}", headers=forged).status_code == 401
    text = wait_for(
        lambda: (t := Path(operator.log_path).read_text(errors="replace")) and "refused" in t and t,
        10,
        "the refusal logged",
    )
    for secret in (WEBHOOK_SECRET, alert_token(operator)):
        assert secret not in text
