"""The operator's subscription to MLflow registry events: one webhook per operator installation.

Only the leader subscribes (controller/operator.py), so the replicas of one installation do not
take turns rewriting it. The webhook is looked up by its name, which the chart makes unique per
installation; it is created when missing and updated only when it differs from what this
installation wants (URL, events, active, and the secret, recognised by a fingerprint in the
description since MLflow never returns a secret). A leader that takes over therefore writes
nothing when its predecessor already subscribed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from modeldeploy.registry.client import CREDENTIAL_KEYS
from modeldeploy.registry.rest import API, MlflowRest
from modeldeploy.registry.webhooks import WEBHOOK_EVENTS

log = logging.getLogger("modeldeploy.subscription")
DEFAULT_WEBHOOK_NAME = "modeldeploy-operator"
_WEBHOOKS = f"{API}/webhooks"  # MLflow's WebhookService lives under /api/2.0 (rest_store.py)
_MAX_PAGES = 100


class WebhookAPI(Protocol):
    """The part of `mlflow.MlflowClient` the subscription uses (RestWebhooks implements it)."""

    def list_webhooks(self) -> Any: ...
    def create_webhook(self, **kwargs: Any) -> Any: ...
    def update_webhook(self, webhook_id: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Wanted:
    name: str
    url: str
    secret: str

    @property
    def description(self) -> str:
        # 12 hex digits of SHA-256 of a high-entropy secret tell whether it changed, nothing more.
        digest = hashlib.sha256(self.secret.encode()).hexdigest()[:12]
        return f"modeldeploy operator (secret sha256:{digest})"


def ensure(client: WebhookAPI, wanted: Wanted) -> str:
    """Makes the registry hold the wanted webhook; returns what it did: created, updated or kept."""
    existing = [w for w in client.list_webhooks() if w.name == wanted.name]
    if not existing:
        client.create_webhook(
            name=wanted.name,
            url=wanted.url,
            events=WEBHOOK_EVENTS,
            secret=wanted.secret,
            description=wanted.description,
        )
        return "created"
    hook = existing[0]
    events = sorted(str(e) for e in (getattr(hook, "events", None) or ()))
    same = (
        hook.url == wanted.url
        and events == sorted(str(e) for e in WEBHOOK_EVENTS)
        and str(getattr(hook, "status", "")).endswith("ACTIVE")
        and getattr(hook, "description", None) == wanted.description
    )
    if same:
        return "kept"
    client.update_webhook(
        hook.webhook_id,
        url=wanted.url,
        events=WEBHOOK_EVENTS,
        secret=wanted.secret,
        description=wanted.description,
        status="ACTIVE",
    )
    return "updated"


@dataclass(frozen=True)
class Webhook:
    """A registered webhook as MLflow's REST API returns it; events read "entity.action" as
    `str(mlflow.entities.webhook.WebhookEvent)` does."""

    webhook_id: str
    name: str
    url: str
    events: tuple[str, ...]
    status: str
    description: str | None


class RestWebhooks:
    """`WebhookAPI` over MLflow's REST API (registry/rest.py; the paths of MLflow's
    WebhookService), with the MLFLOW_TRACKING_* credentials of the operator's environment, as
    MlflowClient would read them."""

    def __init__(self, tracking_uri: str, credentials: Mapping[str, str] | None = None) -> None:
        if credentials is None:
            credentials = {k: os.environ[k] for k in CREDENTIAL_KEYS if os.environ.get(k)}
        self._rest = MlflowRest(tracking_uri, credentials)

    def list_webhooks(self) -> list[Webhook]:
        """Every page of the list (MlflowClient's returns the first only)."""
        hooks: list[Webhook] = []
        token = None
        for _ in range(_MAX_PAGES):
            answer = self._rest.call("GET", _WEBHOOKS, {"page_token": token} if token else None)
            hooks.extend(_webhook(w) for w in answer.get("webhooks") or ())
            token = answer.get("next_page_token")
            if not token:
                break
        return hooks

    def create_webhook(self, **kwargs: Any) -> Webhook:
        return _webhook(self._rest.call("POST", _WEBHOOKS, _body(kwargs)).get("webhook") or {})

    def update_webhook(self, webhook_id: str, **kwargs: Any) -> Webhook:
        endpoint = f"{_WEBHOOKS}/{quote(webhook_id, safe='')}"
        return _webhook(self._rest.call("PATCH", endpoint, _body(kwargs)).get("webhook") or {})


def _body(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of MlflowClient's create/update → the JSON MLflow sends."""
    body = {k: v for k, v in fields.items() if v is not None and k != "events"}
    if fields.get("events"):
        body["events"] = [
            {"entity": entity.upper(), "action": action.upper()}
            for entity, _, action in (str(e).partition(".") for e in fields["events"])
        ]
    if "status" in body:
        body["status"] = str(body["status"]).upper()
    return body


def _webhook(raw: Mapping[str, Any]) -> Webhook:
    events = tuple(
        f"{str(e.get('entity', '')).lower()}.{str(e.get('action', '')).lower()}"
        for e in raw.get("events") or ()
        if isinstance(e, dict)
    )
    return Webhook(
        webhook_id=str(raw.get("webhook_id", "")),
        name=str(raw.get("name", "")),
        url=str(raw.get("url", "")),
        events=events,
        status=str(raw.get("status", "")),
        description=raw.get("description"),
    )


class Subscription:
    """Subscribes in a background thread, retrying with backoff until the registry answers;
    `stop()` ends the retries."""

    def __init__(
        self,
        tracking_uri: str,
        wanted: Wanted,
        client_factory: Callable[[str], WebhookAPI] = RestWebhooks,
    ) -> None:
        self.tracking_uri, self.wanted = tracking_uri, wanted
        self._client_factory = client_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.result: str | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="webhook-register", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = 2.0
        while not self._stop.is_set():
            try:
                self.result = ensure(self._client_factory(self.tracking_uri), self.wanted)
                log.info(
                    "registry webhook %s → %s %s", self.wanted.name, self.wanted.url, self.result
                )
                return
            except Exception as exc:
                log.warning(
                    "could not register the registry webhook (retrying in %.0fs): %s", delay, exc
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 300)
