"""The operator process: its parts, and what happens when it starts, stops, leads and follows.

kopf supplies the watches (controller/handlers.py); they call `track`, `nudge` and `forget`.
Each other job is its own module and owns its thread(s):

| part | module | threads |
|---|---|---|
| work queue + worker pool | workqueue.py, workers.py | reconcile-0 … reconcile-N-1 |
| registry audit entries of finished rollouts | background.py | registry-audit |
| HTTP endpoints | endpoints.py | none (kopf's event loop) |
| metrics endpoint | prometheus_client | its HTTP server thread |
| leader election | leader.py | leader-election |
| alert polling | alerts/poller.py | alert-poller (only with --alerts-url) |
| registry webhook subscription | registry/subscription.py | webhook-register (until it succeeds) |
| registry polling | registry/poller.py | registry-poller |

Every replica watches, keeps its queue and alert store current and answers webhooks; only the
leader's workers reconcile, through a KubeAPI fenced by the lease (kube.Fenced). On taking the
lease a replica forgets cached registry answers, re-learns firing alerts from Alertmanager,
subscribes to registry webhooks (once per installation: a predecessor's subscription is kept)
and queues every ModelDeployment it knows; on losing it, its workers pause at once and it stops
exporting per-ModelDeployment series.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import start_http_server

from modeldeploy.alerts.poller import AlertPoller, fetch_alerts
from modeldeploy.alerts.store import AlertStore
from modeldeploy.controller.background import Background
from modeldeploy.controller.children import ChildStore, Informed
from modeldeploy.controller.endpoints import Endpoints, Hooks
from modeldeploy.controller.kube import Fenced, KubeAPI, LeaseAPI
from modeldeploy.controller.leader import LeaderElector, SoleReplica, Timing
from modeldeploy.controller.metrics import OperatorMetrics
from modeldeploy.controller.reconciler import Key, OperatorConfig, Reconciler
from modeldeploy.controller.workers import WorkerPool
from modeldeploy.controller.workqueue import HIGH, LOW, WorkQueue
from modeldeploy.registry.cache import ResolutionCache
from modeldeploy.registry.client import RegistryClient
from modeldeploy.registry.poller import RegistryPoller
from modeldeploy.registry.subscription import Subscription, Wanted

log = logging.getLogger("modeldeploy.operator")


class ClusterAPI(KubeAPI, LeaseAPI, Protocol):
    """The API server as the whole operator uses it (controller/kube.py: Kube)."""


class Operator:
    def __init__(
        self,
        kube: ClusterAPI,
        config: OperatorConfig,
        metrics: OperatorMetrics | None = None,
        client_factory: Callable[[str, Mapping[str, str]], RegistryClient] = RegistryClient,
    ) -> None:
        self.kube, self.config = kube, config
        self.metrics = metrics or OperatorMetrics()
        self.cache = ResolutionCache()
        self.alerts = AlertStore()
        self.queue: WorkQueue[Key] = WorkQueue(on_dequeue=self.metrics.queue_waited)
        self.metrics.watch_queue(self.queue.depth)
        self.children = ChildStore()
        self.known: set[Key] = set()  # ModelDeployments seen and not deleted
        self._known_lock = threading.Lock()
        url = config.advertise_url
        if config.leader_election:
            self.role: LeaderElector | SoleReplica = LeaderElector(
                kube,
                config.lease_namespace,
                config.lease_name,
                config.identity,
                url,
                Timing(config.lease_duration, config.renew_deadline, config.retry_period),
                on_started=self._started_leading,
                on_stopped=self._stopped_leading,
            )
        else:
            self.role = SoleReplica(config.identity, url)
        self.audit = Background("registry-audit")
        self.reconciler = Reconciler(
            Informed(Fenced(kube, self.role.leading), self.children),
            config,
            self.cache,
            self.metrics,
            self.alerts,
            client_factory=client_factory,
            background=self.audit,
        )
        self.workers = WorkerPool(
            self.queue, self.reconciler.reconcile, config.workers, active=self.role.leading
        )
        self.endpoints = Endpoints(
            bind_address=config.bind_address,
            port=config.webhook_port,
            role=self.role,
            alerts=self.alerts,
            hooks=Hooks(wake=self._wake, invalidate_model=self.cache.invalidate_model),
            metrics=self.metrics,
            registry_webhook_secret=config.registry_webhook_secret,
            alert_webhook_token=config.alert_webhook_token,
        )
        self.poller: AlertPoller | None = None
        if config.alerts_url:
            self.poller = AlertPoller(
                config.alerts_url, config.alerts_poll_interval, self.alerts, self._wake
            )
        self.registry_poller = RegistryPoller(self.cache, self._wake, self._polling)
        self.subscription: Subscription | None = None
        hook_url, secret = config.registry_webhook_url, config.registry_webhook_secret
        if hook_url and secret and config.default_tracking_uri:
            wanted = Wanted(config.registry_webhook_name, hook_url, secret)
            self.subscription = Subscription(config.default_tracking_uri, wanted)
        self._metrics_server: Any = None
        self._helpers: list[threading.Thread] = []
        # Each start or stop of leading is a new term: a relearn that finishes after its term
        # ended must not resume the workers.
        self._term = 0
        self._term_lock = threading.Lock()

    # --- what the watches call ----------------------------------------------------------------
    def track(self, key: Key) -> None:
        with self._known_lock:
            self.known.add(key)

    def nudge(self, key: Key, priority: int = HIGH) -> None:
        """Look at this ModelDeployment again (collapsed with other nudges for it). HIGH for a
        change or an event, LOW for a sweep (workqueue.py)."""
        self.queue.add(key, priority)

    def seen(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a ModelDeployment: kept for the reconciler to read (every event,
        also those that need no reconcile: our own status writes, an edit of a label)."""
        self.children.seen(event_type, body)

    def child_seen(self, event_type: str | None, body: Mapping[str, Any], owner: Key) -> None:
        """A watch event of a child: kept for the reconciler to read, and its owner nudged (LOW
        for the initial listing after a start, whose owners are all being looked at anyway)."""
        self.children.seen(event_type, body)
        self.nudge(owner, LOW if event_type is None else HIGH)

    def forget(self, key: Key) -> None:
        with self._known_lock:
            self.known.discard(key)
        self.queue.forget(key)
        self.workers.backoff.success(key)
        self.reconciler.forget(key)

    def monitoring_changed(self) -> None:
        self.kube.invalidate_monitoring_crds()
        for key in self._known():
            self.nudge(key, LOW)

    def _known(self) -> list[Key]:
        with self._known_lock:
            return list(self.known)

    def _polling(self) -> bool:
        return self.workers.working and self.role.leading()

    def _wake(self, key: Key) -> bool:
        with self._known_lock:
            known = key in self.known
        if known:
            self.nudge(key)
        return known

    # --- life cycle --------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        self._metrics_server, _ = start_http_server(
            cfg.metrics_port, addr=cfg.bind_address, registry=self.metrics.registry
        )
        await self.endpoints.start()
        self.audit.start()
        self.workers.start()
        self.registry_poller.start()
        if self.poller is not None:
            self.poller.start()
            log.info("polling alerts at %s every %.0fs", cfg.alerts_url, cfg.alerts_poll_interval)
        self.metrics.leader.set(0)
        if isinstance(self.role, LeaderElector):
            self.role.start()
        else:
            self._started_leading()

    async def stop(self) -> None:
        """Stops every thread and server this operator started; returns when they are gone.
        The workers finish first, then the lease is released: the next leader starts only after
        this one's last write."""
        self.workers.close()
        await asyncio.to_thread(self.workers.join, 30.0)
        await asyncio.to_thread(self.audit.stop)
        if isinstance(self.role, LeaderElector):
            await asyncio.to_thread(self.role.stop)
        for part in (self.poller, self.subscription, self.registry_poller):
            if part is not None:
                part.stop()
                await asyncio.to_thread(part.join, 10.0)
        for t in self._helpers:
            await asyncio.to_thread(t.join, 10.0)
        await self.endpoints.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()

    # --- leadership --------------------------------------------------------------------------
    def _started_leading(self) -> None:
        self.metrics.leader.set(1)
        self.cache.invalidate_all()
        if self.subscription is not None:
            self.subscription.start()
        for key in self._known():
            self.nudge(key, LOW)
        with self._term_lock:
            self._term += 1
            term = self._term
        relearn = self.config.alertmanager_url or self.config.alerts_url
        if not relearn:
            self._resume(term)
            return
        # The first reconciles must see what Alertmanager says fires now (a resolve may have
        # reached only the old leader), so the workers wait for the read, which is bounded by
        # its timeouts. It runs in its own thread: the elector must keep renewing meanwhile.
        t = threading.Thread(
            target=self._relearn_then_resume,
            args=(relearn, term),
            name="alert-relearn",
            daemon=True,
        )
        self._helpers = [h for h in self._helpers if h.is_alive()] + [t]
        t.start()

    def _resume(self, term: int) -> None:
        """Resumes the workers unless leadership ended (or began again) since `term`."""
        with self._term_lock:
            if term == self._term:
                self.workers.resume()

    def _relearn_then_resume(self, url: str, term: int) -> None:
        try:
            self._relearn_alerts(url)
        finally:
            self._resume(term)

    def _stopped_leading(self) -> None:
        with self._term_lock:
            self._term += 1
            self.workers.pause()
        self.metrics.leader.set(0)
        if self.subscription is not None:
            self.subscription.stop()
        self.metrics.forget_all()

    def _relearn_alerts(self, url: str) -> None:
        """Alerts pushed to another replica or before a restart, still firing: read them from
        Alertmanager now rather than wait for its repeat_interval."""
        began = time.time()
        try:
            changed = self.alerts.replace_pushed(fetch_alerts(url), time.time(), kept_since=began)
        except Exception as exc:
            log.warning("could not re-learn firing alerts from %s: %s", url, exc)
            return
        for key in changed:
            self._wake(key)
        log.info(
            "re-learned firing alerts from %s: %d ModelDeployment(s) changed", url, len(changed)
        )
