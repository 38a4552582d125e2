"""The operator's own Prometheus metrics (names in modeldeploy.names)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modeldeploy import names
from modeldeploy.api import reasons as r
from modeldeploy.api.reasons import PHASES
from modeldeploy.api.status import epoch
from modeldeploy.controller.workqueue import PRIORITY_NAMES


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.rollout_status = Gauge(
            names.OP_ROLLOUT_STATUS,
            "1 for the phase each ModelDeployment is in, 0 for the others",
            ["namespace", "name", "phase"],
            registry=reg,
        )
        self.version_info = Gauge(
            names.OP_MODEL_VERSION_INFO,
            "1 for the model version each ModelDeployment serves",
            ["namespace", "name", "model", "version"],
            registry=reg,
        )
        self.rollouts_started = Counter(
            names.OP_ROLLOUTS_STARTED.removesuffix("_total"),
            "Rollouts of a new model version started",
            ["namespace", "name"],
            registry=reg,
        )
        self.rollouts_completed = Counter(
            names.OP_ROLLOUTS_COMPLETED.removesuffix("_total"),
            "Rollouts finished, by outcome (Succeeded, Failed, Superseded)",
            ["namespace", "name", "outcome"],
            registry=reg,
        )
        self.reconcile_seconds = Histogram(
            names.OP_RECONCILE_SECONDS,
            "Time to observe, plan and apply one ModelDeployment",
            ["outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=reg,
        )
        self.registry_requests = Counter(
            names.OP_REGISTRY_REQUESTS.removesuffix("_total"),
            "Calls to the MLflow registry, by outcome (ok, not_found, unreachable)",
            ["outcome"],
            registry=reg,
        )
        self.registry_seconds = Histogram(
            names.OP_REGISTRY_SECONDS,
            "Latency of calls to the MLflow registry",
            ["outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=reg,
        )
        self.last_completed = Gauge(
            names.OP_ROLLOUT_LAST_COMPLETED,
            "When the last rollout of each outcome ended (Unix seconds)",
            ["namespace", "name", "outcome"],
            registry=reg,
        )
        self.last_duration = Gauge(
            names.OP_ROLLOUT_LAST_DURATION,
            "How long the last rollout of each outcome took, from its start to its end",
            ["namespace", "name", "outcome"],
            registry=reg,
        )
        self.rollbacks = Counter(
            names.OP_ROLLBACKS.removesuffix("_total"),
            "Automatic rollbacks, by the alert that caused them",
            ["namespace", "name", "alert"],
            registry=reg,
        )
        self.canary_analyses = Counter(
            names.OP_CANARY_ANALYSES.removesuffix("_total"),
            "Analyses of canary steps and blue-green previews, by verdict",
            ["namespace", "name", "verdict"],
            registry=reg,
        )
        self.alert_to_rollback = Histogram(
            names.OP_ALERT_TO_ROLLBACK,
            "Time from first hearing of an alert to the rolled-back Deployment applied",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=reg,
        )
        self.alert_notifications = Counter(
            names.OP_ALERTS_RECEIVED.removesuffix("_total"),
            "Alertmanager webhook notifications, by outcome (accepted, unauthorized, malformed)",
            ["outcome"],
            registry=reg,
        )
        self.registry_webhooks = Counter(
            names.OP_REGISTRY_WEBHOOKS.removesuffix("_total"),
            "MLflow registry webhook deliveries acted on or refused here, by outcome (accepted, "
            "ignored, unsigned, forged, stale, future, replayed, malformed); a standby counts "
            "only its refusals, the leader the deliveries it forwards",
            ["outcome"],
            registry=reg,
        )
        self.leader = Gauge(
            names.OP_LEADER,
            "1 while this replica holds the leader Lease and reconciles, 0 on a standby",
            registry=reg,
        )
        self.webhook_forwards = Counter(
            names.OP_WEBHOOK_FORWARDS.removesuffix("_total"),
            "Webhook deliveries a standby passed on to the leader, by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=reg,
        )
        self.kube_requests = Counter(
            names.OP_KUBE_REQUESTS.removesuffix("_total"),
            "Requests sent to the Kubernetes API server by the operator's own client (kopf's "
            "watches not included), by method and resource",
            ["method", "resource"],
            registry=reg,
        )
        self.queue_depth = Gauge(
            names.OP_WORKQUEUE_DEPTH,
            "ModelDeployment keys ready and waiting for a reconcile worker, by priority",
            ["priority"],
            registry=reg,
        )
        self.queue_wait = Histogram(
            names.OP_WORKQUEUE_WAIT,
            "Time a ModelDeployment key waited in the queue before a worker took it, by priority",
            ["priority"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=reg,
        )
        self._versions: dict[tuple[str, str], tuple[str, str]] = {}
        self._rollback_alerts: dict[tuple[str, str], set[str]] = {}
        self._outcomes: dict[tuple[str, str], set[str]] = {}

    def watch_queue(self, depth: Callable[[int], int]) -> None:
        """Exports the queue's depth per priority, read at each scrape."""
        for level, label in enumerate(PRIORITY_NAMES):
            self.queue_depth.labels(label).set_function(functools.partial(depth, level))

    def kube_request(self, method: str, resource: str) -> None:
        self.kube_requests.labels(method, resource).inc()

    def queue_waited(self, priority: int, seconds: float) -> None:
        self.queue_wait.labels(PRIORITY_NAMES[priority]).observe(seconds)

    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        for p in PHASES:
            self.rollout_status.labels(namespace, name, p).set(1 if p == phase else 0)

    def set_version(self, namespace: str, name: str, model: str, version: str | None) -> None:
        key = (namespace, name)
        old = self._versions.get(key)
        if old == (model, version or ""):
            return
        if old:
            self.version_info.remove(namespace, name, *old)
        if version:
            self.version_info.labels(namespace, name, model, version).set(1)
            self._versions[key] = (model, version)
        else:
            self._versions.pop(key, None)

    def rollout_finished(
        self, namespace: str, name: str, outcome: str, started_at: str | None, ended_at: str | None
    ) -> None:
        """One rollout ended; `started_at`/`ended_at` are the history entry's RFC 3339 times
        (its end unknown: now)."""
        self.rollouts_completed.labels(namespace, name, outcome).inc()
        end = epoch(ended_at) or time.time()
        self.last_completed.labels(namespace, name, outcome).set(end)
        start = epoch(started_at)
        if start is not None and start <= end:
            self.last_duration.labels(namespace, name, outcome).set(end - start)
        self._outcomes.setdefault((namespace, name), set()).add(outcome)

    def watch_rollbacks(self, namespace: str, name: str, alerts: Iterable[str]) -> None:
        """Creates the rollback counter of each alert that can roll this ModelDeployment back,
        at 0: `increase()` cannot count the first rollback of a series born at 1."""
        known = self._rollback_alerts.setdefault((namespace, name), set())
        for alert in set(alerts) - known:
            self.rollbacks.labels(namespace, name, alert)
            known.add(alert)

    def forget_all(self) -> None:
        """Drops every per-ModelDeployment series: a replica that stops leading no longer reports
        them (the new leader does), so sums over replicas do not count them twice."""
        for gauge in (self.rollout_status, self.version_info, self.last_completed):
            gauge.clear()
        for metric in (self.last_duration, self.rollbacks, self.rollouts_started):
            metric.clear()
        self.canary_analyses.clear()
        self.rollouts_completed.clear()
        self._versions.clear()
        self._rollback_alerts.clear()
        self._outcomes.clear()

    def forget(self, namespace: str, name: str) -> None:
        for p in PHASES:
            with contextlib.suppress(KeyError):
                self.rollout_status.remove(namespace, name, p)
        self.set_version(namespace, name, "", None)
        for outcome in self._outcomes.pop((namespace, name), set()):
            for gauge in (self.last_completed, self.last_duration):
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, name, outcome)
        for alert in self._rollback_alerts.pop((namespace, name), set()):
            with contextlib.suppress(KeyError):
                self.rollbacks.remove(namespace, name, alert)
        for verdict in VERDICTS:
            with contextlib.suppress(KeyError):
                self.canary_analyses.remove(namespace, name, verdict)


VERDICTS = (r.VERDICT_PASSED, r.VERDICT_FAILED, r.VERDICT_INCONCLUSIVE, r.VERDICT_UNAVAILABLE)
