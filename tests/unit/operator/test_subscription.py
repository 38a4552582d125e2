"""The registry webhook subscription: one webhook per installation, written only when it
differs from what this installation wants, so a new leader (or a second replica) leaves its
predecessor's subscription alone."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities.webhook import WebhookEvent, WebhookStatus

from modeldeploy.registry.subscription import Subscription, Wanted, ensure
from modeldeploy.registry.webhooks import WEBHOOK_EVENTS

WANTED = Wanted("prod-modeldeploy", "http://op.svc:8081/webhooks/mlflow", "s3cret")


@dataclass
class Hook:
    webhook_id: str
    name: str
    url: str
    events: list[WebhookEvent]
    description: str | None
    status: WebhookStatus = WebhookStatus.ACTIVE


@dataclass
class FakeMlflow:
    hooks: list[Hook] = field(default_factory=list)
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ids: Any = field(default_factory=lambda: itertools.count(1))

    def list_webhooks(self) -> list[Hook]:
        return list(self.hooks)

    def create_webhook(self, **kw: Any) -> Hook:
        self.writes.append(("create", kw))
        hook = Hook(
            str(next(self.ids)),
            kw["name"],
            kw["url"],
            [WebhookEvent.from_str(e) for e in kw["events"]],
            kw.get("description"),
        )
        self.hooks.append(hook)
        return hook

    def update_webhook(self, webhook_id: str, **kw: Any) -> Hook:
        self.writes.append(("update", kw))
        hook = next(h for h in self.hooks if h.webhook_id == webhook_id)
        hook.url, hook.description = kw["url"], kw["description"]
        hook.events = [WebhookEvent.from_str(e) for e in kw["events"]]
        hook.status = WebhookStatus(kw["status"])
        return hook


def test_created_once_then_kept_by_every_later_leader() -> None:
    mlflow = FakeMlflow()
    assert ensure(mlflow, WANTED) == "created"
    assert [ensure(mlflow, WANTED) for _ in range(3)] == ["kept"] * 3
    assert [w[0] for w in mlflow.writes] == ["create"]
    assert sorted(str(e) for e in mlflow.hooks[0].events) == sorted(WEBHOOK_EVENTS)


def test_another_installation_gets_its_own_webhook() -> None:
    mlflow = FakeMlflow()
    ensure(mlflow, WANTED)
    other = Wanted("staging-modeldeploy", "http://op.staging:8081/webhooks/mlflow", "x")
    assert ensure(mlflow, other) == "created"
    assert {h.name: h.url for h in mlflow.hooks} == {WANTED.name: WANTED.url, other.name: other.url}


def test_a_changed_url_secret_or_a_disabled_webhook_is_updated() -> None:
    mlflow = FakeMlflow()
    ensure(mlflow, WANTED)
    moved = Wanted(WANTED.name, "http://elsewhere:8081/webhooks/mlflow", WANTED.secret)
    assert ensure(mlflow, moved) == "updated"
    rotated = Wanted(WANTED.name, moved.url, "n3w-s3cret")
    assert ensure(mlflow, rotated) == "updated"
    assert mlflow.writes[-1][1]["secret"] == "n3w-s3cret"
    mlflow.hooks[0].status = WebhookStatus.DISABLED
    assert ensure(mlflow, rotated) == "updated"
    assert ensure(mlflow, rotated) == "kept"
    assert "n3w-s3cret" not in str(mlflow.hooks[0].description)  # only a fingerprint


def test_the_subscription_retries_until_the_registry_answers_and_stops_when_told() -> None:
    mlflow = FakeMlflow()
    attempts: list[int] = []

    def factory(uri: str) -> FakeMlflow:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("registry down")
        return mlflow

    sub = Subscription("http://mlflow:5000", WANTED, factory)
    sub._stop.wait = lambda delay: False  # type: ignore[method-assign]  # no real backoff sleep
    sub.start()
    sub.join(5)
    assert sub.result == "created" and len(attempts) == 2

    never = Subscription("http://mlflow:5000", WANTED, lambda uri: (_ for _ in ()).throw(OSError()))
    never.start()
    never.stop()
    never.join(5)
    assert never.result is None and not never._thread.is_alive()  # type: ignore[union-attr]
