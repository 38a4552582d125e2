"""HTTP hardening of the real server: methods, media types, label bombs, slow clients, and a
latency histogram that only the prediction itself can move."""

from __future__ import annotations

import json
import select
import socket
import time
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.serving.conftest import FEATURES, Models, Server

ROW = [5.1, 3.5, 1.4, 0.2]
BODY = json.dumps({"dataframe_split": {"columns": FEATURES, "data": [ROW]}}).encode()


@pytest.fixture(scope="module")
def impatient(models: Models, serve: Any) -> Server:
    """A server that gives slow clients one second for their headers and one for their body."""
    return serve(
        f"models:/{models.classifier}@champion", "--header-timeout", "1", "--body-timeout", "1"
    )


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: 15 s)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def head(body: bytes, length: int | None = None) -> bytes:
    return (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length)
    )


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/invocations", "POST"),
        ("PUT", "/feedback", "POST"),
        ("POST", "/metrics", "GET, HEAD"),
        ("DELETE", "/ping", "GET, HEAD"),
        ("POST", "/health", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow_and_a_json_error(
    classifier: Server, method: str, path: str, allow: str
) -> None:
    import requests

    r = requests.request(method, classifier.url + path, timeout=30)
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == allow
    assert r.json()["error_code"] == "METHOD_NOT_ALLOWED"


def test_refused_methods_and_paths_are_counted(classifier: Server) -> None:
    before_inv = classifier.value("prediction_errors_total", error_type="method_not_allowed")
    before_metrics = classifier.value("http_requests_refused_total", path="/metrics", code="405")
    before_404 = classifier.value("http_requests_refused_total", path="other", code="404")
    assert classifier.get("/invocations").status_code == 405
    assert classifier.post("/metrics").status_code == 405
    assert classifier.get("/no/such/path").status_code == 404
    after_inv = classifier.value("prediction_errors_total", error_type="method_not_allowed")
    assert after_inv - before_inv == 1
    after = classifier.value("http_requests_refused_total", path="/metrics", code="405")
    assert after - before_metrics == 1
    after = classifier.value("http_requests_refused_total", path="other", code="404")
    assert after - before_404 == 1
    assert classifier.get("/metrics").status_code == 200


def test_feedback_requires_json(classifier: Server) -> None:
    before = classifier.value("prediction_feedback_total", outcome="unsupported_media_type")
    r = classifier.post(
        "/feedback", data=b'{"request_id": "x", "label": 1}', headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415 and r.json()["error_type"] == "unsupported_media_type"
    after = classifier.value("prediction_feedback_total", outcome="unsupported_media_type")
    assert after - before == 1


def test_deeply_nested_feedback_is_a_json_400(classifier: Server) -> None:
    r = classifier.post(
        "/feedback", data=b"[" * 20000 + b"]" * 20000, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["reason"] == "invalid_json"
    assert classifier.get("/ping").status_code == 200


def test_long_feedback_labels_are_refused_and_metrics_stay_small(
    classifier: Server, models: Models
) -> None:
    before = len(classifier.get("/metrics").content)
    for i in range(20):
        r = classifier.predict(models.iris[0].head(1))
        rid = r.headers["X-Request-ID"]
        bomb = f"{i}-" + "x" * 20_000  # the classifier takes 50 kB bodies
        r = classifier.post("/feedback", json={"request_id": rid, "label": bomb})
        assert r.status_code == 400 and r.json()["reason"] == "invalid_label", r.text
        assert "128 characters" in r.json()["message"]
    assert len(classifier.get("/metrics").content) < before + 20_000


def test_a_client_slow_to_send_its_headers_is_disconnected(impatient: Server) -> None:
    with connect(impatient) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
        closed = False
        for _ in range(40):  # a header byte every 0.25 s: the keep-alive timer never fires
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            time.sleep(0.25)
            sock.setblocking(False)
            try:
                closed = sock.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:  # closed with our bytes unread: the kernel sends RST
                closed = True
            finally:
                sock.setblocking(True)
            if closed:
                break
        assert closed, "the server kept a connection that never finished its headers"
    assert impatient.get("/ping").status_code == 200


def trickle(server: Server, head: bytes, piece: int = 1024) -> bytes:
    """Sends a request head a piece at a time (each its own read on the server), stopping at
    the first answer (sending on would reset the connection the server closes), and returns
    the answer."""
    with connect(server) as sock:
        for i in range(0, len(head), piece):
            sock.sendall(head[i : i + piece])
            if select.select([sock], [], [], 0.01)[0]:
                break
        return sock.recv(65536)


@pytest.mark.parametrize("one_header", [False, True], ids=["many-headers", "one-long-value"])
def test_a_request_head_over_16_kib_is_refused_and_one_under_is_served(
    classifier: Server, one_header: bool
) -> None:
    """The limit h11 had (`max_incomplete_event_size`), now the protocol's: a head still
    incomplete past 16 KiB gets uvicorn's 400 and the connection closes; one just under is
    answered. One long header value counts as well as many headers (httptools reports a header
    only once it is whole)."""
    start = b"GET /ping HTTP/1.1\r\nHost: x\r\n"

    def filler(size: int) -> bytes:
        if one_header:
            return b"X-Long: " + b"a" * size + b"\r\n"
        return b"".join(b"X-%05d: %s\r\n" % (i, b"a" * 90) for i in range(size // 100))

    over = trickle(classifier, start + filler(20 * 1024))
    assert over.startswith(b"HTTP/1.1 400 "), over[:200]
    assert over.endswith(b"\r\n\r\nInvalid HTTP request received."), over[-200:]
    under = trickle(classifier, start + filler(15 * 1024) + b"\r\n")
    assert under.startswith(b"HTTP/1.1 200 "), under[:200]
    assert classifier.get("/ping").status_code == 200


def test_a_body_that_does_not_arrive_in_time_gets_408_and_is_counted(impatient: Server) -> None:
    before = impatient.value("prediction_errors_total", error_type="request_timeout")
    count_before = impatient.value("prediction_latency_seconds_count")
    with connect(impatient) as sock:
        sock.sendall(head(BODY) + BODY[:10])  # and never the rest
        answer = read_all(sock)  # the server answers, then closes
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error_type"] == "request_timeout" and body["error_code"] == "REQUEST_TIMEOUT"
    assert impatient.value("prediction_errors_total", error_type="request_timeout") - before == 1
    assert impatient.value("prediction_latency_seconds_count") == count_before


def test_a_slow_upload_is_not_prediction_latency(classifier: Server) -> None:
    """The body arrives 3 s after the headers; the histogram must see only the prediction."""
    le1 = classifier.value("prediction_latency_seconds_bucket", le="1.0")
    count = classifier.value("prediction_latency_seconds_count")
    with connect(classifier) as sock:
        sock.sendall(head(BODY) + BODY[:5])
        time.sleep(3)
        sock.sendall(BODY[5:])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert classifier.value("prediction_latency_seconds_count") - count == 1
    assert classifier.value("prediction_latency_seconds_bucket", le="1.0") - le1 == 1


def test_an_abandoned_request_is_counted_but_not_timed(classifier: Server) -> None:
    gone = classifier.value("prediction_requests_total", code="499")
    count = classifier.value("prediction_latency_seconds_count")
    with connect(classifier) as sock:
        sock.sendall(head(BODY) + BODY[:10])
    wait_for(
        lambda: classifier.value("prediction_requests_total", code="499") - gone == 1,
        10,
        "the disconnect counted",
    )
    assert classifier.value("prediction_latency_seconds_count") == count
