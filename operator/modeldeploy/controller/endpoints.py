"""The operator's HTTP endpoints on the webhook port (aiohttp, on kopf's event loop):

- POST /webhooks/mlflow: MLflow registry events (HMAC-signed, replays refused);
- POST /alerts/alertmanager: Alertmanager notifications (bearer token);
- GET /readyz: 200 once this replica knows its role, leader or standby (the body says which);
- GET /leaderz: 200 on the leader only.

Every replica answers the webhooks, since a Service routes to any of them. A standby checks the
delivery as the leader would (junk is refused at the edge), keeps the alerts it carries in its
own store (so they survive a failover to it), and forwards the delivery to the leader at the URL
the Lease names, answering with the leader's answer. A forwarded Alertmanager notification
carries an HMAC of its body under the bearer token instead of the token itself, so no credential
is sent to an address read from the Lease. A forwarded delivery is never forwarded again. When
the leader cannot be reached the standby answers 503 and the sender retries (Alertmanager does);
whatever was lost meanwhile, the next leader re-reads on taking over (every ModelDeployment is
reconciled afresh and firing alerts re-learned from Alertmanager's API).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from modeldeploy import names
from modeldeploy.alerts.store import AlertStore, Key
from modeldeploy.controller.leader import Holder
from modeldeploy.controller.metrics import OperatorMetrics
from modeldeploy.registry.webhooks import (
    MAX_WEBHOOK_FUTURE_SECONDS,
    MAX_WEBHOOK_SKEW_SECONDS,
    DeliveryLog,
    Refused,
    check_mlflow_delivery,
    raw_header,
    wakes,
)

log = logging.getLogger("modeldeploy.endpoints")
MLFLOW_PATH = "/webhooks/mlflow"
ALERTS_PATH = "/alerts/alertmanager"
FORWARDED_BY = "X-Modeldeploy-Forwarded-By"
FORWARDED_SIGNATURE = "X-Modeldeploy-Forwarded-Signature"
FORWARDED_TIMESTAMP = "X-Modeldeploy-Forwarded-Timestamp"
MLFLOW_HEADERS = ("X-MLflow-Signature", "X-MLflow-Delivery-Id", "X-MLflow-Timestamp")
FORWARD_TIMEOUT_SECONDS = 5.0
# A client has this long from connecting to finish its request line and headers (aiohttp closes
# a connection still waiting for them when its keep-alive timer fires, which starts at connect),
# and as long again for its body; then the connection goes. Alertmanager and MLflow send a few
# kB at once: only a slowloris client needs more. Found by the attack suite: without them a
# client sending a header byte a second held a connection for ever.
READ_TIMEOUT_SECONDS = 5.0
# After a refusal with the body unread (413, 408), read and drop the rest for at most this long.
LINGER_SECONDS = 1.0


class Role(Protocol):
    """Who leads (controller/leader.py: LeaderElector, or SoleReplica without election)."""

    identity: str

    def leading(self) -> bool: ...
    def holder(self) -> Holder | None: ...
    def observed(self) -> bool: ...


@dataclass
class Hooks:
    """What a delivery does on this replica: wake ModelDeployments (only known ones, only where
    workers run) and drop cached registry answers about a model (returns who asked)."""

    wake: Callable[[Key], bool]
    invalidate_model: Callable[[str], set[Key]]


async def _read(request: web.Request) -> bytes:
    """The body, or a 408 when it does not arrive within READ_TIMEOUT_SECONDS (a 413 from
    aiohttp past client_max_size, as soon as it is passed)."""
    try:
        return await asyncio.wait_for(request.read(), READ_TIMEOUT_SECONDS)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=json.dumps({"error": f"body not received within {READ_TIMEOUT_SECONDS:g}s"}),
            content_type="application/json",
            headers={"Connection": "close"},
        ) from None


def _json(body: bytes) -> Any:
    """json.loads, with nesting past the parser's recursion limit a ValueError (a 400) rather
    than a RecursionError (a 500). Found by the attack suite."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def forward_signature(token: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(token.encode(), timestamp.encode() + b"." + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_forwarded(token: str, headers: Any, body: bytes, now: float) -> bool:
    """A notification a standby forwarded: its HMAC under the token, and fresh."""
    timestamp = headers.get(FORWARDED_TIMESTAMP, "")
    try:
        age = now - int(timestamp)
    except ValueError:
        return False
    if age > MAX_WEBHOOK_SKEW_SECONDS or -age > MAX_WEBHOOK_FUTURE_SECONDS:
        return False
    expected = forward_signature(token, timestamp, body).encode()
    return hmac.compare_digest(raw_header(headers.get(FORWARDED_SIGNATURE, "")), expected)


class Endpoints:
    def __init__(
        self,
        *,
        bind_address: str,
        port: int,
        role: Role,
        alerts: AlertStore,
        hooks: Hooks,
        metrics: OperatorMetrics,
        registry_webhook_secret: str | None,
        alert_webhook_token: str | None,
    ) -> None:
        self.bind_address, self.port, self.role = bind_address, port, role
        self.alerts, self.hooks, self.metrics = alerts, hooks, metrics
        self.secret, self.token = registry_webhook_secret, alert_webhook_token
        self.deliveries = DeliveryLog()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post(MLFLOW_PATH, self.mlflow_webhook)
        app.router.add_post(ALERTS_PATH, self.alertmanager_webhook)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/leaderz", self.leaderz)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app(),
            access_log=None,
            keepalive_timeout=READ_TIMEOUT_SECONDS,
            lingering_time=LINGER_SECONDS,
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.bind_address, self.port).start()
        log.info(
            "endpoints on %s:%d (%s, %s, /readyz, /leaderz)",
            self.bind_address,
            self.port,
            MLFLOW_PATH,
            ALERTS_PATH,
        )

    @property
    def addresses(self) -> list[Any]:
        return list(self._runner.addresses) if self._runner is not None else []

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- health ---------------------------------------------------------------------------
    def _role(self) -> dict[str, Any]:
        holder = self.role.holder()
        return {
            "role": "leader" if self.role.leading() else "standby",
            "identity": self.role.identity,
            "leader": holder.identity if holder else None,
        }

    async def readyz(self, request: web.Request) -> web.Response:
        if not self.role.observed():
            why = {"ready": False, "why": "leader Lease not read yet"}
            return web.json_response(why, status=503)
        return web.json_response({"ready": True, **self._role()})

    async def leaderz(self, request: web.Request) -> web.Response:
        body = self._role()
        return web.json_response(body, status=200 if body["role"] == "leader" else 503)

    # --- Alertmanager ---------------------------------------------------------------------
    async def alertmanager_webhook(self, request: web.Request) -> web.Response:
        """Alertmanager's webhook_config receiver. Firing alerts for a known ModelDeployment wake
        it at once; the planner decides. Delivering the same notification twice is harmless."""
        if not self.token:  # secure by default: nobody may trigger rollbacks anonymously
            return web.json_response(
                {"error": "disabled: set MODELDEPLOY_ALERT_WEBHOOK_TOKEN on the operator"},
                status=404,
            )
        body = await _read(request)
        forwarded = FORWARDED_BY in request.headers
        if forwarded:
            authorized = verify_forwarded(self.token, request.headers, body, time.time())
        else:
            sent = raw_header(request.headers.get("Authorization", ""))
            authorized = hmac.compare_digest(sent, f"Bearer {self.token}".encode())
        if not authorized:
            self.metrics.alert_notifications.labels("unauthorized").inc()
            log.warning("refused an Alertmanager notification: missing or wrong bearer token")
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            payload = _json(body)
            if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
                raise ValueError("no alerts list")
            for alert in payload["alerts"]:
                if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
                    raise ValueError("every alert must be an object with a labels object")
        except ValueError as exc:
            self.metrics.alert_notifications.labels("malformed").inc()
            return web.json_response(
                {"error": f"not an Alertmanager notification: {exc}"}, status=400
            )
        self.metrics.alert_notifications.labels("accepted").inc()
        changed = self.alerts.apply_notification(payload, time.time())
        if not forwarded and not self.role.leading():
            ts = str(int(time.time()))
            headers = {
                FORWARDED_TIMESTAMP: ts,
                FORWARDED_SIGNATURE: forward_signature(self.token, ts, body),
            }
            return await self._forward(ALERTS_PATH, body, headers, stored=True)
        woken = [key for key in changed if self.hooks.wake(key)]
        return web.json_response({"woken": len(woken)})

    # --- MLflow ---------------------------------------------------------------------------
    async def mlflow_webhook(self, request: web.Request) -> web.Response:
        if not self.secret:
            return web.json_response(
                {
                    "error": "registry webhooks are disabled: "
                    "set MODELDEPLOY_REGISTRY_WEBHOOK_SECRET"
                },
                status=404,
            )
        payload = await _read(request)
        now = time.time()
        refused = check_mlflow_delivery(self.secret, request.headers, payload, now)
        forward = FORWARDED_BY not in request.headers and not self.role.leading()
        # Replays are refused where the delivery is acted on: a standby records nothing, so a
        # delivery it could not pass on may be retried.
        if (
            refused is None
            and not forward
            and not self.deliveries.first_time(request.headers["X-MLflow-Delivery-Id"], now)
        ):
            refused = Refused(names.WEBHOOK_REPLAYED, "delivery already received (replayed)")
        if refused is not None:
            self.metrics.registry_webhooks.labels(refused.outcome).inc()
            log.warning("refused registry webhook: %s", refused.message)
            return web.json_response({"error": refused.message}, status=401)
        try:
            event = _json(payload)
            model = str(event["data"]["name"])
        except (ValueError, KeyError, TypeError):
            self.metrics.registry_webhooks.labels(names.WEBHOOK_MALFORMED).inc()
            return web.json_response({"error": "payload has no data.name"}, status=400)
        if forward:
            headers = {h: request.headers[h] for h in MLFLOW_HEADERS}
            return await self._forward(MLFLOW_PATH, payload, headers, stored=False)
        if not wakes(event):
            self.metrics.registry_webhooks.labels(names.WEBHOOK_IGNORED).inc()
            return web.json_response({"model": model, "woken": 0, "ignored": "tag"})
        self.metrics.registry_webhooks.labels(names.WEBHOOK_ACCEPTED).inc()
        woken = [key for key in self.hooks.invalidate_model(model) if self.hooks.wake(key)]
        log.info(
            "registry event %s.%s for %r: %d ModelDeployment(s) woken",
            event.get("entity"),
            event.get("action"),
            model,
            len(woken),
        )
        return web.json_response({"model": model, "woken": len(woken)})

    # --- forwarding -------------------------------------------------------------------------
    async def _forward(
        self, path: str, body: bytes, headers: dict[str, str], stored: bool
    ) -> web.Response:
        endpoint = "mlflow" if path == MLFLOW_PATH else "alertmanager"
        holder = self.role.holder()
        if holder is None or not holder.url or holder.identity == self.role.identity:
            self.metrics.webhook_forwards.labels(endpoint, "failed").inc()
            return self._unavailable("no leader is known", stored)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS)
            )
        headers = {
            **headers,
            FORWARDED_BY: self.role.identity,
            "Content-Type": "application/json",
        }
        url = holder.url.rstrip("/") + path
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.metrics.webhook_forwards.labels(endpoint, "failed").inc()
            log.warning("could not forward a %s delivery to leader %s: %s", endpoint, url, exc)
            return self._unavailable(f"the leader {holder.identity} did not answer", stored)
        outcome = "forwarded" if status < 500 else "failed"
        self.metrics.webhook_forwards.labels(endpoint, outcome).inc()
        return web.Response(status=status, text=text, content_type="application/json")

    def _unavailable(self, why: str, stored: bool) -> web.Response:
        kept = "; the alerts are kept on this standby" if stored else ""
        return web.json_response(
            {"error": f"{why}{kept}; retry", "role": "standby"},
            status=503,
            headers={"Retry-After": "2"},
        )
