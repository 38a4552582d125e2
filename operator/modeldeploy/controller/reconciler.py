"""Observe → plan → apply → status, for one ModelDeployment key.

Each reconcile reads the ModelDeployment as last stored (its watch, and the answers to our own
status writes: controller/children.py; a status write against an older version than the API
server's is refused and retried on a fresh read, so a restarted operator, or a key nudged twice,
always plans from the stored status), asks the registry through the shared cache, reads the
serving Deployment, and hands all of it to the pure planner. Status is written only when the
planned status differs from the stored one; Events and counters follow a successful status
write, so they are not repeated for work already recorded.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from modeldeploy import names
from modeldeploy.alerts.store import AlertStore
from modeldeploy.analysis.prometheus import PrometheusAPI, measure
from modeldeploy.analysis.types import AnalysisUnavailable
from modeldeploy.api import reasons as r
from modeldeploy.api.spec import CANARY, ModelDeploymentSpec, SpecError, parse_spec
from modeldeploy.api.status import AnalysisRecord, Status
from modeldeploy.controller.background import Background
from modeldeploy.controller.kube import KubeAPI
from modeldeploy.controller.metrics import OperatorMetrics
from modeldeploy.governance import records
from modeldeploy.registry.cache import Question, ResolutionCache
from modeldeploy.registry.client import RegistryClient
from modeldeploy.registry.preflight import Preflight
from modeldeploy.registry.subscription import DEFAULT_WEBHOOK_NAME
from modeldeploy.registry.types import (
    ModelNotFound,
    RegistryError,
    RegistryUnreachable,
    ResolvedVersion,
    Unservable,
    same_server,
)
from modeldeploy.render import objects as render
from modeldeploy.rollout import analysis as verdicts
from modeldeploy.rollout import progressive
from modeldeploy.rollout.deployment import DeploymentState
from modeldeploy.rollout.planner import Context, InvalidSpec, Plan, lost_status
from modeldeploy.rollout.preflight import plan_checked
from modeldeploy.rollout.rollback import ALLOW_VERSION_ANNOTATION, Rollback

log = logging.getLogger("modeldeploy.reconciler")
HTTPROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
Key = tuple[str, str]
# A failed registry answer is reused for at most this long, so backoff retries really retry.
ERROR_TTL_SECONDS = 2.0
# The safety net (controller-runtime's SyncPeriod): each ModelDeployment is reconciled at least
# this often (or at its poll interval, if longer) when nothing says it changed. Changes come
# from elsewhere: the registry's from its poller (registry/poller.py) and webhooks, the
# children's and the spec's from the watches, alerts from their webhook and poller.
RESYNC_SECONDS = 600.0


@dataclass(frozen=True)
class OperatorConfig:
    default_tracking_uri: str | None = None
    default_credentials: Mapping[str, str] = field(default_factory=dict)
    serving_image: str = "ghcr.io/modeldeploy/modeldeploy-serving:0.1.0"
    namespaces: tuple[str, ...] = ()
    workers: int = 4
    poll_interval: float = 30.0
    metrics_port: int = 9100
    webhook_port: int = 8081
    health_port: int = 8080
    # Where the metrics, webhook and health endpoints listen: loopback unless told otherwise
    # (the chart and manifests set 0.0.0.0, the pod's own network).
    bind_address: str = "127.0.0.1"
    registry_webhook_url: str | None = None
    registry_webhook_secret: str | None = None
    serving_env: tuple[tuple[str, str], ...] = ()
    alert_webhook_token: str | None = None
    alerts_url: str | None = None
    alerts_poll_interval: float = 5.0
    # Read when this replica starts leading, to re-learn alerts pushed by webhook to another
    # replica (default: alerts_url).
    alertmanager_url: str | None = None
    # Prometheus whose serving metrics judge canary steps (spec.strategy); None: steps hold.
    prometheus_url: str | None = None
    registry_webhook_name: str = DEFAULT_WEBHOOK_NAME
    # High availability (controller/leader.py). Off here, on in `modeldeploy operator`.
    leader_election: bool = False
    identity: str = "modeldeploy-operator"
    advertise_url: str | None = None  # where other replicas reach this one's webhook port
    lease_namespace: str = "default"
    lease_name: str = "modeldeploy-operator"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclass(frozen=True)
class Outcome:
    requeue_after: float | None
    registry_failed: bool = False


class Reconciler:
    def __init__(
        self,
        kube: KubeAPI,
        config: OperatorConfig,
        cache: ResolutionCache,
        metrics: OperatorMetrics,
        alerts: AlertStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client_factory: Callable[[str, Mapping[str, str]], RegistryClient] = RegistryClient,
        background: Background | None = None,
    ) -> None:
        """`background` writes the registry's audit entries of finished rollouts off the
        reconcile's path (controller/background.py); without one (or before it is started) they
        are written inline."""
        self.kube, self.config, self.cache, self.metrics = kube, config, cache, metrics
        self.background = background or Background("registry-audit")
        self.alerts = alerts or AlertStore()
        self.clock = clock
        self._client_factory = client_factory
        self._clients: dict[tuple[str, str], RegistryClient] = {}
        # Pre-flight checks judge loadability under the trust setting serving pods are given.
        self.preflight = Preflight.for_serving_env(config.serving_env)
        self.prometheus = PrometheusAPI(config.prometheus_url) if config.prometheus_url else None

    def reconcile(self, key: Key) -> Outcome:
        t0 = time.perf_counter()
        outcome = "error"
        try:
            result = self._reconcile(key)
            outcome = "ok"
            return result
        finally:
            self.metrics.reconcile_seconds.labels(outcome).observe(time.perf_counter() - t0)

    def _reconcile(self, key: Key) -> Outcome:
        namespace, name = key
        body = self.kube.get_modeldeployment(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.forget(key)
            return Outcome(None)
        meta = body["metadata"]
        old_status = body.get("status") or {}
        generation = int(meta.get("generation") or 0)
        spec: ModelDeploymentSpec | None = None
        ctx: Context | InvalidSpec
        try:
            spec = parse_spec(body.get("spec") or {})
        except SpecError as exc:
            ctx = InvalidSpec(Status.from_dict(old_status), str(exc), self.clock(), generation)
        else:
            ctx = self._observe(key, body, spec)
        p = plan_checked(ctx, lambda version, fresh: self._preflight(key, spec, version, fresh))
        self._carry_out(body, old_status, p, spec)
        self.metrics.set_phase(namespace, name, p.status.phase or r.RESOLVING)
        if spec is None:  # nothing to poll or serve until the spec changes (a watch event)
            return Outcome(None)
        self.metrics.set_version(namespace, name, spec.model.name, p.status.serving_version)
        if spec.rollback.enabled:
            watched = list(spec.rollback.on_alerts)
            if spec.strategy.progressive:
                watched.append(names.CANARY_ANALYSIS)
            self.metrics.watch_rollbacks(namespace, name, watched)
        assert isinstance(ctx, Context)
        failed = isinstance(ctx.resolution, RegistryUnreachable)
        delay = max(self._poll_interval(spec), RESYNC_SECONDS)
        if p.requeue_after is not None:
            delay = min(delay, p.requeue_after)
        return Outcome(delay, registry_failed=failed)

    def _observe(self, key: Key, body: Mapping[str, Any], spec: ModelDeploymentSpec) -> Context:
        """Everything the planner needs to know about a ModelDeployment with a usable spec."""
        namespace, name = key
        meta = body["metadata"]
        dep_obj = self.kube.get_deployment(namespace, name)
        status = Status.from_dict(body.get("status") or {})
        dep = DeploymentState.from_object(dep_obj) if dep_obj else None
        # A lost status is planned from the registry's own record (its rejected tag), which a
        # cached answer may predate: ask afresh, once per lost status.
        resolution = self._resolve(key, spec, fresh=lost_status(status, dep))
        canary, route = self._observe_progress(key, spec, status)
        now = self.clock()
        return Context(
            name=name,
            namespace=namespace,
            uid=meta["uid"],
            generation=int(meta.get("generation") or 0),
            spec=spec,
            status=status,
            resolution=resolution,
            deployment=dep,
            monitoring_crds=self.kube.monitoring_crds(),
            image=spec.serving.image or self.config.serving_image,
            tracking_uri=self._tracking_uri(spec) or "",
            now=now,
            serving_env=self.config.serving_env,
            alerts=self.alerts.firing(key),
            allow_version=(meta.get("annotations") or {}).get(ALLOW_VERSION_ANNOTATION),
            canary_deployment=canary,
            route=route,
            analysis=self._analyse(key, spec, status, dep, now),
        )

    def _observe_progress(
        self, key: Key, spec: ModelDeploymentSpec, status: Status
    ) -> tuple[DeploymentState | None, progressive.RouteState | None]:
        """The canary Deployment (named as the stored canary's strategy named it) and the
        HTTPRoute the strategy names; neither is read for a plain rolling update."""
        namespace, name = key
        canary = None
        cs = status.canary
        if spec.strategy.progressive or cs is not None:
            named = spec
            if cs is not None and cs.strategy != spec.strategy.type:
                named = replace(spec, strategy=replace(spec.strategy, type=cs.strategy))
            obj = self.kube.get_deployment(namespace, render.second_name(name, named))
            canary = DeploymentState.from_object(obj) if obj else None
        route = None
        if spec.strategy.type == CANARY and spec.strategy.http_route:
            obj = self.kube.get_object(*HTTPROUTE, namespace, spec.strategy.http_route)
            route = progressive.RouteState.from_object(
                spec.strategy.http_route, obj, name, render.second_name(name, spec)
            )
        return canary, route

    def _analyse(
        self,
        key: Key,
        spec: ModelDeploymentSpec,
        status: Status,
        dep: DeploymentState | None,
        now: datetime,
    ) -> AnalysisRecord | None:
        """The analysis of the stored canary step, when one is due: the canary's version against
        what the stable Deployment runs, over the window since the step started."""
        window = progressive.analysis_due(status, spec, now)
        cs = status.canary
        if window is None or cs is None or dep is None or dep.version is None:
            return None
        if self.prometheus is None:
            why = "no Prometheus to ask (the operator's --prometheus-url is not set)"
            record = verdicts.unavailable(cs.step, now, why)
        else:
            try:
                m = measure(self.prometheus, *key, cs.version, dep.version, window, now.timestamp())
            except AnalysisUnavailable as exc:
                record = verdicts.unavailable(cs.step, now, str(exc))
            else:
                record = verdicts.judge(m, spec.limits(), cs.step, now)
        self.metrics.canary_analyses.labels(key[0], key[1], record.verdict).inc()
        log.info("%s/%s: %s analysis: %s", *key, record.verdict, record.message)
        return record

    def _count_rollback(self, body: Mapping[str, Any], rb: Rollback) -> None:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        self.metrics.watch_rollbacks(ns, name, [rb.alert.name])
        self.metrics.rollbacks.labels(ns, name, rb.alert.name).inc()
        self.metrics.alert_to_rollback.observe(max(0.0, time.time() - rb.alert.received_at))
        log.warning("%s/%s: rolled back %s → %s (%s)", ns, name, rb.bad, rb.good, rb.alert.name)

    def _record_rollback(
        self, body: Mapping[str, Any], spec: ModelDeploymentSpec, rb: Rollback
    ) -> None:
        """The registry records on the bad version: the rejected tag and an audit entry (best
        effort: the rollback is done and recorded in status whatever the registry says)."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        now = self.clock()
        rejected = f"{ns}/{name}: {rb.alert.name} at {now.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        details = {
            "modeldeployment": f"{ns}/{name}",
            "alert": rb.alert.name,
            "to": rb.good,
            "reason": rb.why,
        }
        tags = {names.TAG_REJECTED: rejected}
        self._tag_version(body, spec, rb.bad, records.ACTION_ROLLBACK, details, tags, now)

    def _record_deploys(
        self, body: Mapping[str, Any], spec: ModelDeploymentSpec, p: Plan, previous: str | None
    ) -> None:
        """An audit entry on each version this plan saw fully rolled out, written in the
        background: it is best effort and status already records the rollout, so the worker
        does not wait for the registry (a rollback's records, which later planning reads, are
        written in the reconcile: `_record_rollback`)."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        now = self.clock()
        for version, outcome in p.rollouts_completed:
            if outcome != r.OUTCOME_SUCCEEDED:
                continue
            entry = next((h for h in reversed(p.status.history) if h.version == version), None)
            details = {"modeldeployment": f"{ns}/{name}"}
            if previous and previous != version:
                details["previous"] = previous
            if entry is not None and entry.reason:
                details["reason"] = entry.reason
            self.background.submit(
                f"audit entry of {ns}/{name} deploying version {version}",
                functools.partial(
                    self._tag_version,
                    body,
                    spec,
                    version,
                    records.ACTION_DEPLOY,
                    details,
                    now=now,
                ),
            )

    def _tag_version(
        self,
        body: Mapping[str, Any],
        spec: ModelDeploymentSpec,
        version: str,
        action: str,
        details: Mapping[str, str],
        tags: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> None:
        """An audit entry (and `tags`) on a model version in the ModelDeployment's registry, with
        its credentials. Best effort: status already holds the record; a failure is logged and
        posted as an Event."""
        uri = self._tracking_uri(spec)
        if not uri:
            return
        now = now or self.clock()
        audit = records.AuditRecord(
            action, records.timestamp(now), records.OPERATOR_ACTOR, dict(details)
        )
        key = records.audit_key(audit, now, secrets.token_hex(3))
        try:
            creds = self._credentials(body["metadata"]["namespace"], spec) or {}
            client = self._client(uri, creds, Question.fingerprint(creds))
            for tag, value in {**(tags or {}), key: audit.to_json()}.items():
                client.set_version_tag(spec.model.name, version, tag, value)
        except Exception as exc:
            log.warning(
                "could not record %s of %s version %s: %s",
                audit.action,
                spec.model.name,
                version,
                exc,
            )
            self._post_event(
                body,
                "Warning",
                r.EV_REGISTRY_TAG_FAILED,
                f"could not record the {audit.action} of version {version} in the registry: {exc}",
            )

    def _preflight(
        self, key: Key, spec: ModelDeploymentSpec | None, version: str, fresh: bool
    ) -> Unservable | None:
        """Any version the plan would roll out that the pods do not run yet, checked against the
        registry first with the same registry and credentials as the resolution
        (rollout/preflight.py, registry/preflight.py)."""
        if spec is None:  # an invalid spec proposes no version; refuse if one ever did
            return Unservable(r.INVALID_SPEC, "the spec is invalid")
        uri = self._tracking_uri(spec)
        creds = self._credentials(key[0], spec) if uri else None
        if not uri or creds is None:
            return Unservable(r.REGISTRY_UNREACHABLE, "no registry or credentials to ask")
        fingerprint = Question.fingerprint(creds)
        client = self._client(uri, creds, fingerprint)
        failure = self.preflight.check(client, fingerprint, spec.model.name, version, fresh)
        if failure is None and fresh and spec.require_approval:
            return self._approved(client, spec.model.name, version, spec.require_approval)
        return failure

    def _approved(
        self, client: RegistryClient, model: str, version: str, stage: str
    ) -> Unservable | None:
        """A rollback target of a ModelDeployment that requires approval must still hold it: a
        rollback does not wait for a person, but it goes only where a person agreed (and a
        history entry written by someone with status access gets no unapproved version out)."""
        try:
            tags = client.version_tags(model, version)
        except RegistryError as exc:
            return Unservable(r.REGISTRY_UNREACHABLE, str(exc))
        if records.approval(tags, stage) is None:
            return Unservable(r.APPROVAL_MISSING, f"it is not approved for {stage}")
        return None

    def forget(self, key: Key) -> None:
        self.metrics.forget(*key)
        self.cache.forget_asker(key)

    def _poll_interval(self, spec: ModelDeploymentSpec) -> float:
        return spec.registry.poll_interval or self.config.poll_interval

    def _tracking_uri(self, spec: ModelDeploymentSpec) -> str | None:
        return spec.registry.tracking_uri or self.config.default_tracking_uri

    def _resolve(
        self, key: Key, spec: ModelDeploymentSpec, fresh: bool = False
    ) -> ResolvedVersion | RegistryError:
        uri = self._tracking_uri(spec)
        if not uri:
            return RegistryUnreachable(
                "no registry configured: set spec.registry.trackingUri "
                "or the operator's MLFLOW_TRACKING_URI"
            )
        creds = self._credentials(key[0], spec)
        if creds is None:
            return RegistryUnreachable(
                f"credentials Secret {spec.registry.credentials_secret!r} "
                f"not found in namespace {key[0]}"
            )
        question = Question(uri, Question.fingerprint(creds), spec.model)
        client = self._client(uri, creds, question.credentials)
        ttl = 0.0 if fresh else self._poll_interval(spec)

        def load() -> ResolvedVersion:
            t0 = time.perf_counter()
            outcome = "ok"
            try:
                return client.resolve(spec.model)
            except ModelNotFound:
                outcome = "not_found"
                raise
            except RegistryError:
                outcome = "unreachable"
                raise
            finally:
                self.metrics.registry_requests.labels(outcome).inc()
                self.metrics.registry_seconds.labels(outcome).observe(time.perf_counter() - t0)

        answer, _ = self.cache.get(question, ttl, load, asker=key, error_ttl=ERROR_TTL_SECONDS)
        return answer

    def _credentials(self, namespace: str, spec: ModelDeploymentSpec) -> Mapping[str, str] | None:
        """The registry credentials for `spec`; None if its Secret does not exist.

        The operator's own credentials (its environment) go only to the operator's own registry:
        a ModelDeployment naming another trackingUri and no Secret is asked for anonymously, so
        its author cannot make the operator send them to a server of their choosing."""
        if spec.registry.credentials_secret:
            return self.kube.read_secret(namespace, spec.registry.credentials_secret)
        default = self.config.default_tracking_uri
        if default and same_server(self._tracking_uri(spec) or "", default):
            return self.config.default_credentials
        return {}

    def _client(self, uri: str, creds: Mapping[str, str], fingerprint: str) -> RegistryClient:
        client = self._clients.get((uri, fingerprint))
        if client is None:
            client = self._clients[(uri, fingerprint)] = self._client_factory(uri, creds)
        return client

    def _carry_out(
        self,
        body: Mapping[str, Any],
        old_status: Mapping[str, Any],
        p: Plan,
        spec: ModelDeploymentSpec | None = None,
    ) -> None:
        """Decision first, then the world, then what reports it.

        A rollback decision is written before any child is touched (a crash after it cannot
        redeploy the rejected version) and announced once written. The children are applied
        next. The full status, whose conditions report what was applied and observed, is written
        only after the apply succeeded, and the plan's Events and counters follow that write: a
        failed apply leaves the status as it was, so the retry plans, writes and announces the
        same transition once. The rollback's counter goes with its decision, its registry records
        right after the apply (or its failure): a slow registry must not delay the rollback."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        stored: Mapping[str, Any] = old_status
        # Each status patch is made against the version its `stored` status was read at.
        version: str | None = meta.get("resourceVersion")
        decided_now: Rollback | None = None
        if p.record_first is not None:
            decided = p.record_first.to_dict()
            if decided != stored:
                written = self.kube.patch_status(namespace, name, stored, decided, version)
                version = (written.get("metadata") or {}).get("resourceVersion")
                stored = decided
                for ev in p.decision_events:
                    self._post_event(body, ev.type, ev.reason, ev.message)
                if p.rollback is not None:
                    decided_now = p.rollback
                    self._count_rollback(body, p.rollback)
        try:
            for obj in p.apply:
                self.kube.apply(obj)
            # The route's weights before any delete: a finished canary's Service goes only
            # once the route no longer sends to it (a refused patch keeps it for the retry).
            if p.route_patch is not None:
                route, ops = p.route_patch
                self.kube.json_patch(*HTTPROUTE, namespace, route, list(ops))
            for kind, obj_name in p.prune:
                self.kube.delete("monitoring.coreos.com/v1", kind, namespace, obj_name)
            for api_version, kind, obj_name in p.delete:
                self.kube.delete(api_version, kind, namespace, obj_name)
        finally:
            # After the apply, so a slow registry cannot delay the rollback itself; in `finally`,
            # so a failed apply (whose retry finds the decision stored) still records it once.
            if decided_now is not None and spec is not None:
                self._record_rollback(body, spec, decided_now)
        new_status = p.status.to_dict()
        if new_status != stored:
            self.kube.patch_status(namespace, name, stored, new_status, version)
        if new_status == old_status:
            return
        for ev in p.events:
            self._post_event(body, ev.type, ev.reason, ev.message)
        if spec is not None and p.rollouts_completed:
            self._record_deploys(body, spec, p, old_status.get("servingVersion"))
        for _ in p.rollouts_started:
            self.metrics.rollouts_started.labels(namespace, name).inc()
        for version, result in p.rollouts_completed:
            entry = next((h for h in reversed(p.status.history) if h.version == version), None)
            self.metrics.rollout_finished(
                namespace,
                name,
                result,
                entry.started_at if entry else None,
                entry.finished_at if entry else None,
            )
        log.info(
            "%s/%s: phase=%s serving=%s resolved=%s",
            namespace,
            name,
            p.status.phase,
            p.status.serving_version,
            p.status.resolved_version,
        )

    def _post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            self.kube.post_event(body, type_, reason, message)
        except Exception as exc:  # an Event is best effort; the status already says it
            log.warning("could not post event %s: %s", reason, exc)
