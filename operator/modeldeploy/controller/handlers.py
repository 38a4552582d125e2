"""Every kopf decorator of the operator, and nothing else.

kopf provides the watches; the handlers only tell the operator (controller/operator.py) what
they saw: a ModelDeployment to track, a key to look at again, a key to forget. They do not
use kopf's per-object handler state, so kopf writes nothing to ModelDeployments: no finalizers,
no progress annotations, nothing a GitOps tool would see as drift.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from modeldeploy import names
from modeldeploy.controller.kube import MONITORING_CRDS
from modeldeploy.controller.operator import Operator
from modeldeploy.controller.workqueue import HIGH, LOW
from modeldeploy.render.objects import MANAGED_BY
from modeldeploy.rollout.rollback import ALLOW_VERSION_ANNOTATION

log = logging.getLogger("modeldeploy.handlers")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # our Events come from the reconciler, one per transition
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    operator: Operator = memo["operator"]
    settings.scanning.disabled = scan_needless(operator.config.namespaces)
    await operator.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    operator: Operator = memo["operator"]
    await operator.stop()


def scan_needless(namespaces: tuple[str, ...]) -> bool:
    """Whether kopf may skip listing and watching all namespaces: yes when it is given exact names
    (namespace-scoped mode, whose RBAC forbids that listing on purpose). Scanning there is refused,
    and kopf retries the refusal for about 55 s before it falls back to the names it was given,
    so the first reconcile came a minute late (found by the image test, run with the chart's
    ServiceAccount). A pattern (`team-*`, `!kube-system`) needs the listing; cluster-wide mode
    does no scanning of namespaces. What scanning also stops, kopf noticing CRDs created after
    the start, does not apply: the ModelDeployment CRD is installed before the operator, and the
    monitoring CRDs are followed by modeldeploy's own watch (monitoring_crd_event)."""
    return bool(namespaces) and not any(set(ns) & set("*?[]!,") for ns in namespaces)


def needs_reconcile(type: str | None, body: Mapping[str, Any]) -> bool:
    """The echo filter. Our own status writes come back as MODIFIED events; only a new
    generation (spec change), a first sight (ADDED, and the initial listing after a restart,
    whose type is None), or a user clearing a rejection with the allow-version annotation needs
    a reconcile."""
    if type != "MODIFIED":
        return True
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    allowed = (meta.get("annotations") or {}).get(ALLOW_VERSION_ANNOTATION)
    unchanged = meta.get("generation") == status.get("observedGeneration")
    return not (unchanged and allowed == status.get("allowVersionHandled"))


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def modeldeployment_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    operator: Operator = memo["operator"]
    key = (body.metadata.namespace or "", body.metadata.name or "")
    operator.seen(type, body)
    if type == "DELETED":
        operator.forget(key)
        return
    operator.track(key)
    if needs_reconcile(type, body):
        # The initial listing after a start (type None) is a sweep, not a change: LOW, so the
        # events it causes are worked first (controller/workqueue.py).
        operator.nudge(key, LOW if type is None else HIGH)


@kopf.on.event(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    when=lambda name, **_: name in MONITORING_CRDS.values(),
)
async def monitoring_crd_event(memo: kopf.Memo, **_: Any) -> None:
    """ServiceMonitor/PrometheusRule CRDs installed or removed: re-plan every ModelDeployment."""
    operator: Operator = memo["operator"]
    operator.monitoring_changed()


# Every kind of child is watched, so a child changed or deleted by someone else is repaired in
# seconds rather than at the next registry poll (which may be hours away). Deletion included:
# kopf.on.event sees DELETED too. Each event also keeps the child's body for the reconciler
# (controller/children.py), which then reads it instead of a GET.
@kopf.on.event("apps", "v1", "deployments", labels={names.LABEL_MANAGED_BY: MANAGED_BY})
@kopf.on.event("", "v1", "services", labels={names.LABEL_MANAGED_BY: MANAGED_BY})
@kopf.on.event(
    "monitoring.coreos.com", "v1", "servicemonitors", labels={names.LABEL_MANAGED_BY: MANAGED_BY}
)
@kopf.on.event(
    "monitoring.coreos.com", "v1", "prometheusrules", labels={names.LABEL_MANAGED_BY: MANAGED_BY}
)
async def child_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = body.metadata.labels.get(names.LABEL_MODELDEPLOYMENT)
    if owner:
        operator: Operator = memo["operator"]
        operator.child_seen(type, body, (body.metadata.namespace or "", owner))
