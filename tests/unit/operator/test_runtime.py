"""The operator runtime's life cycle and its registry webhook endpoint, on loopback ports with
in-memory fakes behind it: exactly one thread of each kind after start-up, none after stop; a
replayed or junk delivery is a 401, never a 500 and never a second wake-up."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import kopf
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from modeldeploy.controller import handlers
from modeldeploy.controller.reconciler import OperatorConfig
from modeldeploy.controller.runtime import Runtime
from tests.unit.operator.fakes import FakeKube
from tests.unit.operator.test_webhook_signature import DELIVERY, PAYLOAD, SECRET, sign

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def test_startup_starts_one_thread_of_each_kind_and_cleanup_stops_them() -> None:
    cfg = OperatorConfig(
        workers=2,
        metrics_port=free_port(),
        webhook_port=free_port(),
        alerts_url=f"http://{LOOPBACK}:{free_port()}",  # nobody listens: polls fail, harmlessly
        alerts_poll_interval=0.05,
    )
    runtime = Runtime(FakeKube(), cfg)  # type: ignore[arg-type]
    before = len(threads("alert-poller")), len(threads("reconcile-"))

    async def life() -> tuple[int, int]:
        memo = kopf.Memo(runtime=runtime)
        await handlers.startup(settings=kopf.OperatorSettings(), memo=memo)
        running = len(threads("alert-poller")) - before[0], len(threads("reconcile-")) - before[1]
        await handlers.cleanup(memo=memo)
        return running

    assert asyncio.run(life()) == (1, 2)
    assert (len(threads("alert-poller")), len(threads("reconcile-"))) == before


def test_endpoints_listen_on_the_bind_address_only() -> None:
    cfg = OperatorConfig(metrics_port=free_port(), webhook_port=free_port())
    runtime = Runtime(FakeKube(), cfg)  # type: ignore[arg-type]

    async def bound() -> set[str]:
        runtime.start_metrics()
        await runtime.start_webhooks()
        try:
            assert runtime._runner is not None
            return {str(addr[0]) for addr in runtime._runner.addresses}
        finally:
            await runtime.stop()

    assert asyncio.run(bound()) == {LOOPBACK}
    assert runtime._metrics_server.server_address[0] == LOOPBACK


def webhook_runtime() -> Runtime:
    runtime = Runtime(FakeKube(), OperatorConfig(registry_webhook_secret=SECRET))  # type: ignore[arg-type]
    runtime.known.add(("ml", "fraud"))
    return runtime


def signed(delivery: str = DELIVERY, payload: str = PAYLOAD) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(SECRET, delivery, ts, payload),
    }


def post_all(runtime: Runtime, requests: list[Mapping[str, str]]) -> list[tuple[int, Any]]:
    async def go() -> list[tuple[int, Any]]:
        app = web.Application()
        app.router.add_post("/webhooks/mlflow", runtime._mlflow_webhook)
        out = []
        async with TestClient(TestServer(app)) as client:
            for h in requests:
                resp = await client.post("/webhooks/mlflow", data=PAYLOAD, headers=dict(h))
                out.append((resp.status, json.loads(await resp.text())))
        return out

    return asyncio.run(go())


def test_a_replayed_delivery_is_refused_and_wakes_nothing() -> None:
    runtime = webhook_runtime()
    first = signed()
    answers = post_all(runtime, [first] * 20 + [signed("another-delivery")])
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
    cfg = OperatorConfig(
        webhook_port=free_port(), alert_webhook_token="tok", registry_webhook_secret=SECRET
    )
    runtime = Runtime(FakeKube(), cfg)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    loop.run_until_complete(runtime.start_webhooks())
    server = threading.Thread(target=loop.run_forever, daemon=True)
    server.start()
    try:
        port = cfg.webhook_port
        junk = b"Bearer \xff\xfe\xc3(\r\n"
        assert raw_request(port, "/alerts/alertmanager", b"Authorization: " + junk, b"{}") == 401
        mlflow = (
            b"X-MLflow-Delivery-Id: \xff\r\nX-MLflow-Timestamp: "
            + str(int(time.time())).encode()
            + b"\r\nX-MLflow-Signature: v1,\xe9\xff\r\n"
        )
        assert raw_request(port, "/webhooks/mlflow", mlflow, b"{}") == 401
    finally:
        asyncio.run_coroutine_threadsafe(runtime.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        server.join(10)
