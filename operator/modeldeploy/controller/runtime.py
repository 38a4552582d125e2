"""The operator's moving parts besides kopf's watches: worker threads draining the work queue,
the metrics endpoint, the webhook endpoint for MLflow registry events, and registering that
webhook with the default registry.

Workers are plain threads running the sync reconciler with the official client, so nothing
blocks kopf's event loop; the HTTP endpoints are aiohttp (kopf's own dependency) on that loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from typing import Any

from aiohttp import web
from prometheus_client import start_http_server

from modeldeploy.alerts.poller import AlertPoller
from modeldeploy.alerts.store import AlertStore
from modeldeploy.controller.kube import Kube
from modeldeploy.controller.metrics import OperatorMetrics
from modeldeploy.controller.reconciler import Key, OperatorConfig, Reconciler
from modeldeploy.controller.workqueue import Backoff, WorkQueue
from modeldeploy.governance import records
from modeldeploy.registry.cache import ResolutionCache

log = logging.getLogger("modeldeploy.runtime")
WEBHOOK_EVENTS: list[Any] = [
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version.created",
    # approvals (modeldeploy approve/revoke) open and close the gate of spec.model.requireApproval
    "model_version_tag.set",
    "model_version_tag.deleted",
]
WEBHOOK_NAME = "modeldeploy-operator"
MAX_WEBHOOK_SKEW_SECONDS = 300  # how old a delivery may be
MAX_WEBHOOK_FUTURE_SECONDS = 30  # how far ahead of our clock a sender's clock may be
MAX_REMEMBERED_DELIVERIES = 10_000


class Runtime:
    def __init__(
        self, kube: Kube, config: OperatorConfig, metrics: OperatorMetrics | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics or OperatorMetrics()
        self.cache = ResolutionCache()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.backoff = Backoff(base=1.0, cap=60.0)
        self.alerts = AlertStore()
        self.reconciler = Reconciler(kube, config, self.cache, self.metrics, self.alerts)
        self.poller: AlertPoller | None = None
        self.kube = kube
        self.known: set[Key] = set()  # ModelDeployments seen and not deleted
        self._threads: list[threading.Thread] = []
        self.deliveries = DeliveryLog()
        self._runner: web.AppRunner | None = None
        self._metrics_server: Any = None

    # --- workers -------------------------------------------------------------------------
    def start_workers(self) -> None:
        for i in range(self.config.workers):
            t = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                outcome = self.reconciler.reconcile(key)
                if outcome.registry_failed:
                    delay = self.backoff.failure(key)
                else:
                    self.backoff.success(key)
                    delay = outcome.requeue_after or 0
                if outcome.requeue_after is not None:
                    self.queue.add_after(
                        key, min(delay, outcome.requeue_after) if delay else outcome.requeue_after
                    )
            except Exception:
                delay = self.backoff.failure(key)
                log.exception("reconcile of %s/%s failed; retrying in %.0fs", *key, delay)
                self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    def monitoring_changed(self) -> None:
        self.kube.invalidate_monitoring_crds()
        for key in list(self.known):
            self.queue.add(key)

    def forget(self, key: Key) -> None:
        self.known.discard(key)
        self.queue.forget(key)
        self.backoff.success(key)
        self.reconciler.forget(key)

    # --- HTTP ----------------------------------------------------------------------------
    def start_metrics(self) -> None:
        self._metrics_server, _ = start_http_server(
            self.config.metrics_port, addr=self.config.bind_address, registry=self.metrics.registry
        )

    async def start_webhooks(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/webhooks/mlflow", self._mlflow_webhook)
        app.router.add_post("/alerts/alertmanager", self._alertmanager_webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        cfg = self.config
        await web.TCPSite(self._runner, cfg.bind_address, cfg.webhook_port).start()
        log.info(
            "webhook endpoints on %s:%d (/webhooks/mlflow, /alerts/alertmanager)",
            cfg.bind_address,
            cfg.webhook_port,
        )

    async def _alertmanager_webhook(self, request: web.Request) -> web.Response:
        """Alertmanager's webhook_config receiver. Firing alerts for a known ModelDeployment wake
        it at once; the planner decides. Delivering the same notification twice is harmless."""
        token = self.config.alert_webhook_token
        if not token:  # secure by default: nobody may trigger rollbacks anonymously
            return web.json_response(
                {"error": "disabled: set MODELDEPLOY_ALERT_WEBHOOK_TOKEN on the operator"},
                status=404,
            )
        if not hmac.compare_digest(
            _raw(request.headers.get("Authorization", "")), f"Bearer {token}".encode()
        ):
            self.metrics.alert_notifications.labels("unauthorized").inc()
            log.warning("refused an Alertmanager notification: missing or wrong bearer token")
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            payload = await request.json()
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
        woken = [k for k in self.alerts.apply_notification(payload, time.time()) if k in self.known]
        for key in woken:
            self.queue.add(key)
        return web.json_response({"woken": len(woken)})

    def start_alert_poller(self) -> None:
        """Starts the one alert poller (a second call is a no-op)."""
        if self.config.alerts_url and self.poller is None:
            self.poller = AlertPoller(
                self.config.alerts_url, self.config.alerts_poll_interval, self.alerts, self._wake
            )
            self.poller.start()
            log.info(
                "polling alerts at %s every %.0fs",
                self.config.alerts_url,
                self.config.alerts_poll_interval,
            )

    def _wake(self, key: Key) -> None:
        if key in self.known:
            self.queue.add(key)

    async def _mlflow_webhook(self, request: web.Request) -> web.Response:
        secret = self.config.registry_webhook_secret
        if not secret:
            return web.json_response(
                {
                    "error": "registry webhooks are disabled: "
                    "set MODELDEPLOY_REGISTRY_WEBHOOK_SECRET"
                },
                status=404,
            )
        payload = await request.read()
        now = time.time()
        error = verify_mlflow_signature(secret, request.headers, payload, now)
        if error is None and not self.deliveries.first_time(
            request.headers["X-MLflow-Delivery-Id"], now
        ):
            error = "delivery already received (replayed)"
        if error:
            log.warning("refused registry webhook: %s", error)
            return web.json_response({"error": error}, status=401)
        try:
            event = json.loads(payload)
            model = str(event["data"]["name"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "payload has no data.name"}, status=400)
        if not wakes(event):
            return web.json_response({"model": model, "woken": 0, "ignored": "tag"})
        woken = self.cache.invalidate_model(model)
        for key in woken:
            self.queue.add(key)
        log.info(
            "registry event %s.%s for %r: %d ModelDeployment(s) woken",
            event.get("entity"),
            event.get("action"),
            model,
            len(woken),
        )
        return web.json_response({"model": model, "woken": len(woken)})

    def register_registry_webhook(self) -> None:
        """Makes the default registry call us on alias and version events (best effort)."""
        cfg = self.config
        if not (
            cfg.registry_webhook_url and cfg.registry_webhook_secret and cfg.default_tracking_uri
        ):
            return
        threading.Thread(target=self._register_loop, name="webhook-register", daemon=True).start()

    def _register_loop(self) -> None:
        from mlflow import MlflowClient

        cfg = self.config
        delay = 2.0
        while True:
            try:
                client = MlflowClient(
                    tracking_uri=cfg.default_tracking_uri, registry_uri=cfg.default_tracking_uri
                )
                existing = [w for w in client.list_webhooks() if w.name == WEBHOOK_NAME]
                if existing:
                    client.update_webhook(
                        existing[0].webhook_id,
                        url=cfg.registry_webhook_url,
                        events=WEBHOOK_EVENTS,
                        secret=cfg.registry_webhook_secret,
                        status="ACTIVE",
                    )
                else:
                    client.create_webhook(
                        name=WEBHOOK_NAME,
                        url=cfg.registry_webhook_url or "",
                        events=WEBHOOK_EVENTS,
                        secret=cfg.registry_webhook_secret,
                    )
                log.info(
                    "registry webhook %s → %s registered", WEBHOOK_NAME, cfg.registry_webhook_url
                )
                return
            except Exception as exc:
                log.warning(
                    "could not register the registry webhook (retrying in %.0fs): %s", delay, exc
                )
                time.sleep(delay)
                delay = min(delay * 2, 300)

    async def stop(self) -> None:
        """Stops every thread and server this runtime started; returns when they are gone."""
        self.queue.close()
        if self.poller is not None:
            self.poller.stop()
            await asyncio.to_thread(self.poller.join, 10.0)
        for t in self._threads:
            await asyncio.to_thread(t.join, 30.0)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()


def wakes(event: Any) -> bool:
    """Whether a registry event can change what a ModelDeployment serves. Tag events do only for
    approval tags, which people write; every other tag, in particular the audit and rejection
    tags the operator writes itself, is ignored, so the operator's own writes cause no loop."""
    if event.get("entity") != "model_version_tag":
        return True
    data = event.get("data")
    return isinstance(data, dict) and records.is_approval_key(str(data.get("key", "")))


def _raw(header: str) -> bytes:
    """A header's bytes as sent: aiohttp decodes undecodable bytes to surrogates, which a plain
    `.encode()` refuses (a 500 instead of a 401 for a junk header)."""
    return header.encode("utf-8", "surrogateescape")


class DeliveryLog:
    """Delivery ids of accepted registry webhooks, kept for as long as their timestamp is fresh:
    a captured delivery replayed within that window is refused, after it the timestamp is. Bounded
    (oldest forgotten first) so a flood of valid deliveries cannot grow it without limit."""

    def __init__(self, keep_seconds: float = MAX_WEBHOOK_SKEW_SECONDS + MAX_WEBHOOK_FUTURE_SECONDS):
        self.keep_seconds = keep_seconds
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, delivery_id: str, now: float) -> bool:
        with self._lock:
            for old in [d for d, t in self._seen.items() if now - t > self.keep_seconds]:
                del self._seen[old]
            if delivery_id in self._seen:
                return False
            while len(self._seen) >= MAX_REMEMBERED_DELIVERIES:
                del self._seen[next(iter(self._seen))]
            self._seen[delivery_id] = now
            return True


def verify_mlflow_signature(
    secret: str, headers: Any, payload: bytes | str, now: float
) -> str | None:
    """None if MLflow's HMAC-SHA256 signature over "delivery_id.timestamp.payload" is valid and
    fresh; otherwise why not. Fresh = at most 5 minutes old and at most 30 s ahead of our clock,
    so a captured delivery cannot be replayed later (DeliveryLog refuses it sooner)."""
    signature = headers.get("X-MLflow-Signature", "")
    delivery = headers.get("X-MLflow-Delivery-Id", "")
    timestamp = headers.get("X-MLflow-Timestamp", "")
    if not (signature and delivery and timestamp):
        return "missing X-MLflow-Signature/-Delivery-Id/-Timestamp headers"
    try:
        age = now - int(timestamp)
    except ValueError:
        return "X-MLflow-Timestamp is not a unix timestamp"
    if age > MAX_WEBHOOK_SKEW_SECONDS:
        return f"timestamp is {age:.0f}s old"
    if -age > MAX_WEBHOOK_FUTURE_SECONDS:
        return f"timestamp is {-age:.0f}s in the future"
    version, _, value = signature.partition(",")
    body = payload.encode() if isinstance(payload, str) else payload
    message = _raw(delivery) + b"." + _raw(timestamp) + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    # Bytes, not str: compare_digest refuses non-ASCII text, and a junk header must be a 401.
    if version != "v1" or not hmac.compare_digest(_raw(value), base64.b64encode(digest)):
        return "signature does not match"
    return None
