"""The MLflow registry webhook signature check: valid, fresh deliveries only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from modeldeploy import names
from modeldeploy.governance import records
from modeldeploy.registry.webhooks import (
    MAX_WEBHOOK_FUTURE_SECONDS,
    MAX_WEBHOOK_SKEW_SECONDS,
    WEBHOOK_EVENTS,
    DeliveryLog,
    check_mlflow_delivery,
    verify_mlflow_signature,
    wakes,
)

SECRET = "whsec-4f0d9c2b"
NOW = 1_750_000_000
PAYLOAD = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2025-06-15T14:13:20+00:00",
        "data": {"name": "fraud-detector", "alias": "champion", "version": "4"},
    }
)
DELIVERY = "0b6f1f2e-6d7a-4c55-9c1e-3f2a1d0e9b77"


def sign(secret: str, delivery: str, timestamp: str, payload: str) -> str:
    """As MLflow signs: HMAC-SHA256 over "delivery_id.timestamp.payload", "v1,<base64>"."""
    digest = hmac.new(
        secret.encode(), f"{delivery}.{timestamp}.{payload}".encode(), hashlib.sha256
    ).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    *, secret: str = SECRET, timestamp: int = NOW, payload: str = PAYLOAD
) -> dict[str, str]:
    ts = str(timestamp)
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": DELIVERY,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(secret, DELIVERY, ts, payload),
    }


def test_reference_signer_matches_mlflows_own() -> None:
    ts = str(NOW)
    assert sign(SECRET, DELIVERY, ts, PAYLOAD) == _generate_hmac_signature(
        SECRET, DELIVERY, ts, PAYLOAD
    )


def test_payload_signed_as_mlflow_signs_it_is_accepted() -> None:
    assert verify_mlflow_signature(SECRET, headers(), PAYLOAD, NOW) is None


def test_payload_with_non_ascii_text_is_accepted() -> None:
    payload = json.dumps({"data": {"name": "modèle-é"}}, ensure_ascii=False)
    assert verify_mlflow_signature(SECRET, headers(payload=payload), payload, NOW) is None


@pytest.mark.parametrize("skew", [-MAX_WEBHOOK_SKEW_SECONDS, MAX_WEBHOOK_FUTURE_SECONDS])
def test_timestamp_at_the_edge_of_the_window_is_accepted(skew: int) -> None:
    assert verify_mlflow_signature(SECRET, headers(timestamp=NOW + skew), PAYLOAD, NOW) is None


def test_wrong_secret_is_refused() -> None:
    error = verify_mlflow_signature(SECRET, headers(secret="guessed"), PAYLOAD, NOW)
    assert error == "signature does not match"


def test_tampered_payload_is_refused() -> None:
    tampered = PAYLOAD.replace('"version": "4"', '"version": "5"')
    assert tampered != PAYLOAD
    assert verify_mlflow_signature(SECRET, headers(), tampered, NOW) == "signature does not match"


def test_signature_replayed_with_another_delivery_id_is_refused() -> None:
    h = headers() | {"X-MLflow-Delivery-Id": "another-delivery"}
    assert verify_mlflow_signature(SECRET, h, PAYLOAD, NOW) == "signature does not match"


def test_unknown_signature_version_is_refused() -> None:
    h = headers()
    h["X-MLflow-Signature"] = h["X-MLflow-Signature"].replace("v1,", "v2,", 1)
    assert verify_mlflow_signature(SECRET, h, PAYLOAD, NOW) == "signature does not match"


@pytest.mark.parametrize(
    "missing", ["X-MLflow-Signature", "X-MLflow-Delivery-Id", "X-MLflow-Timestamp"]
)
def test_missing_header_is_refused_naming_the_headers(missing: str) -> None:
    h = headers()
    del h[missing]
    error = verify_mlflow_signature(SECRET, h, PAYLOAD, NOW)
    assert error is not None and "missing" in error and missing.removeprefix("X-MLflow") in error


@pytest.mark.parametrize("age", [MAX_WEBHOOK_SKEW_SECONDS + 1, 86_400])
def test_stale_timestamp_is_refused_even_when_correctly_signed(age: int) -> None:
    error = verify_mlflow_signature(SECRET, headers(timestamp=NOW - age), PAYLOAD, NOW)
    assert error is not None and "old" in error


@pytest.mark.parametrize(
    "ahead", [MAX_WEBHOOK_FUTURE_SECONDS + 1, MAX_WEBHOOK_SKEW_SECONDS, 86_400]
)
def test_future_timestamp_beyond_a_small_skew_is_refused(ahead: int) -> None:
    """A delivery stamped ahead would stay "fresh" (and replayable) for longer than the window."""
    error = verify_mlflow_signature(SECRET, headers(timestamp=NOW + ahead), PAYLOAD, NOW)
    assert error is not None and "in the future" in error


def test_undecodable_header_bytes_are_refused_not_raised() -> None:
    """aiohttp hands undecodable header bytes over as surrogates."""
    junk = b"v1,\xff\xfe".decode("utf-8", "surrogateescape")
    h = headers() | {"X-MLflow-Signature": junk, "X-MLflow-Delivery-Id": junk}
    assert verify_mlflow_signature(SECRET, h, PAYLOAD, NOW) == "signature does not match"


def test_a_delivery_is_accepted_once_within_the_window_and_forgotten_after() -> None:
    log = DeliveryLog()
    assert log.first_time(DELIVERY, NOW)
    assert not log.first_time(DELIVERY, NOW + 1)
    assert not log.first_time(DELIVERY, NOW + log.keep_seconds)
    assert log.first_time("another", NOW + 2)
    # Past the window the signature check refuses the old timestamp; the id may go.
    assert log.first_time(DELIVERY, NOW + log.keep_seconds + 1)


def test_the_delivery_log_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import modeldeploy.registry.webhooks as rt

    monkeypatch.setattr(rt, "MAX_REMEMBERED_DELIVERIES", 3)
    log = DeliveryLog()
    for i in range(5):
        assert log.first_time(f"d{i}", NOW)
    assert len(log._seen) == 3 and not log.first_time("d4", NOW)


def test_timestamp_that_is_not_a_number_is_refused() -> None:
    h = headers() | {"X-MLflow-Timestamp": "yesterday"}
    assert verify_mlflow_signature(SECRET, h, PAYLOAD, NOW) == (
        "X-MLflow-Timestamp is not a unix timestamp"
    )


def test_non_ascii_signature_header_is_refused_with_a_reason() -> None:
    h = headers() | {"X-MLflow-Signature": "v1,é"}
    assert verify_mlflow_signature(SECRET, h, PAYLOAD, NOW) == "signature does not match"


def event(entity: str, key: str | None = None) -> dict[str, object]:
    data: dict[str, object] = {"name": "fraud-detector", "version": "4"}
    if key is not None:
        data["key"] = key
    return {"entity": entity, "action": "set", "data": data}


def test_alias_and_version_events_wake_and_only_approval_tags_do() -> None:
    assert wakes(event("model_version_alias"))
    assert wakes(event("model_version"))
    assert wakes(event("model_version_tag", records.approval_key("production")))
    # The operator's own writes (audit entries, the rejected tag) and other people's tags
    # change nothing it serves: answering them would make every write of its own a loop.
    assert not wakes(event("model_version_tag", "modeldeploy.io/audit.20261202T120000.000Z.x.1"))
    assert not wakes(event("model_version_tag", names.TAG_REJECTED))
    assert not wakes(event("model_version_tag", "team"))
    assert not wakes(event("model_version_tag"))


def test_the_operator_subscribes_to_approval_tag_events() -> None:
    assert {"model_version_tag.set", "model_version_tag.deleted"} <= set(WEBHOOK_EVENTS)


@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        ({"X-MLflow-Signature": None}, names.WEBHOOK_UNSIGNED),
        ({"X-MLflow-Timestamp": "yesterday"}, names.WEBHOOK_FORGED),
        ({"X-MLflow-Delivery-Id": "another"}, names.WEBHOOK_FORGED),
        ({"timestamp": NOW - MAX_WEBHOOK_SKEW_SECONDS - 1}, names.WEBHOOK_STALE),
        ({"timestamp": NOW + MAX_WEBHOOK_FUTURE_SECONDS + 1}, names.WEBHOOK_FUTURE),
        # Only a signed delivery is stale or future: a forged one is a forgery whatever its date.
        ({"timestamp": NOW - 86_400, "secret": "guessed"}, names.WEBHOOK_FORGED),
        ({"timestamp": NOW + 86_400, "secret": "guessed"}, names.WEBHOOK_FORGED),
    ],
)
def test_each_refusal_names_its_outcome(change: dict[str, object], outcome: str) -> None:
    args = {k: change.pop(k) for k in ("timestamp", "secret") if k in change}
    h: dict[str, str] = headers(**args)  # type: ignore[arg-type]
    for key, value in change.items():
        if value is None:
            del h[key]
        else:
            h[key] = str(value)
    refused = check_mlflow_delivery(SECRET, h, PAYLOAD, NOW)
    assert refused is not None and refused.outcome == outcome, refused
    assert check_mlflow_delivery(SECRET, headers(), PAYLOAD, NOW) is None
