"""MLflow registry webhooks as the operator receives them: which events it subscribes to, the
HMAC signature and freshness check, replay refusal, and which events can change what a
ModelDeployment serves. Pure functions and one small bounded log; the HTTP endpoint that uses
them is controller/endpoints.py, the subscription registry/subscription.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from typing import Any, NamedTuple

from modeldeploy import names
from modeldeploy.governance import records

WEBHOOK_EVENTS: list[Any] = [
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version.created",
    # approvals (modeldeploy approve/revoke) open and close the gate of spec.model.requireApproval
    "model_version_tag.set",
    "model_version_tag.deleted",
]
MAX_WEBHOOK_SKEW_SECONDS = 300  # how old a delivery may be
MAX_WEBHOOK_FUTURE_SECONDS = 30  # how far ahead of our clock a sender's clock may be
MAX_REMEMBERED_DELIVERIES = 10_000


def wakes(event: Any) -> bool:
    """Whether a registry event can change what a ModelDeployment serves. Tag events do only for
    approval tags, which people write; every other tag, in particular the audit and rejection
    tags the operator writes itself, is ignored, so the operator's own writes cause no loop."""
    if event.get("entity") != "model_version_tag":
        return True
    data = event.get("data")
    return isinstance(data, dict) and records.is_approval_key(str(data.get("key", "")))


def raw_header(header: str) -> bytes:
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


class Refused(NamedTuple):
    """Why a delivery is refused: `outcome` labels modeldeploy_registry_webhooks_total."""

    outcome: str
    message: str


def verify_mlflow_signature(
    secret: str, headers: Any, payload: bytes | str, now: float
) -> str | None:
    """None if MLflow's HMAC-SHA256 signature over "delivery_id.timestamp.payload" is valid and
    fresh; otherwise why not (check_mlflow_delivery says which kind of refusal it is)."""
    refused = check_mlflow_delivery(secret, headers, payload, now)
    return None if refused is None else refused.message


def check_mlflow_delivery(
    secret: str, headers: Any, payload: bytes | str, now: float
) -> Refused | None:
    """None if the signature is valid and fresh. Fresh = at most 5 minutes old and at most 30 s
    ahead of our clock, so a captured delivery cannot be replayed later (DeliveryLog refuses it
    sooner). The signature is checked before the age, so that only a signed delivery is counted
    stale or future: an unsigned one with an odd timestamp is a forgery, whatever its date."""
    signature = headers.get("X-MLflow-Signature", "")
    delivery = headers.get("X-MLflow-Delivery-Id", "")
    timestamp = headers.get("X-MLflow-Timestamp", "")
    if not (signature and delivery and timestamp):
        return Refused(
            names.WEBHOOK_UNSIGNED, "missing X-MLflow-Signature/-Delivery-Id/-Timestamp headers"
        )
    try:
        age = now - int(timestamp)
    except ValueError:
        return Refused(names.WEBHOOK_FORGED, "X-MLflow-Timestamp is not a unix timestamp")
    version, _, value = signature.partition(",")
    body = payload.encode() if isinstance(payload, str) else payload
    message = raw_header(delivery) + b"." + raw_header(timestamp) + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    # Bytes, not str: compare_digest refuses non-ASCII text, and a junk header must be a 401.
    if version != "v1" or not hmac.compare_digest(raw_header(value), base64.b64encode(digest)):
        return Refused(names.WEBHOOK_FORGED, "signature does not match")
    if age > MAX_WEBHOOK_SKEW_SECONDS:
        return Refused(names.WEBHOOK_STALE, f"timestamp is {age:.0f}s old")
    if -age > MAX_WEBHOOK_FUTURE_SECONDS:
        return Refused(names.WEBHOOK_FUTURE, f"timestamp is {-age:.0f}s in the future")
    return None
