"""Every kopf decorator of the operator, and nothing else.

kopf provides the watches; the handlers only nudge the work queue (see runtime.py). They do not
use kopf's per-object handler state, so kopf writes nothing to ModelDeployments: no finalizers,
no progress annotations, nothing a GitOps tool would see as drift.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from modeldeploy import names
from modeldeploy.controller.kube import MONITORING_CRDS
from modeldeploy.controller.runtime import Runtime
from modeldeploy.render.objects import MANAGED_BY
from modeldeploy.rollout.rollback import ALLOW_VERSION_ANNOTATION

log = logging.getLogger("modeldeploy.handlers")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # our Events come from the reconciler, one per transition
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    runtime: Runtime = memo["runtime"]
    runtime.start_metrics()
    await runtime.start_webhooks()
    runtime.start_workers()
    runtime.register_registry_webhook()
    runtime.start_alert_poller()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    await runtime.stop()


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def modeldeployment_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    key = (body.metadata.namespace or "", body.metadata.name or "")
    if type == "DELETED":
        runtime.forget(key)
        return
    runtime.known.add(key)
    # Our own status writes come back as MODIFIED events; only a new generation (spec change),
    # a first sight (ADDED, and the initial listing after a restart), or a user clearing a
    # rejection with the allow-version annotation needs a reconcile.
    allowed = body.metadata.annotations.get(ALLOW_VERSION_ANNOTATION)
    unchanged = body.metadata.get("generation") == body.status.get("observedGeneration")
    if type == "MODIFIED" and unchanged and allowed == body.status.get("allowVersionHandled"):
        return
    runtime.queue.add(key)


@kopf.on.event(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    when=lambda name, **_: name in MONITORING_CRDS.values(),
)
async def monitoring_crd_event(memo: kopf.Memo, **_: Any) -> None:
    """ServiceMonitor/PrometheusRule CRDs installed or removed: re-plan every ModelDeployment."""
    runtime: Runtime = memo["runtime"]
    runtime.monitoring_changed()


# Every kind of child is watched, so a child changed or deleted by someone else is repaired in
# seconds rather than at the next registry poll (which may be hours away). Deletion included:
# kopf.on.event sees DELETED too. The operator's own no-op applies write nothing and wake nothing.
@kopf.on.event("apps", "v1", "deployments", labels={names.LABEL_MANAGED_BY: MANAGED_BY})
@kopf.on.event("", "v1", "services", labels={names.LABEL_MANAGED_BY: MANAGED_BY})
@kopf.on.event(
    "monitoring.coreos.com", "v1", "servicemonitors", labels={names.LABEL_MANAGED_BY: MANAGED_BY}
)
@kopf.on.event(
    "monitoring.coreos.com", "v1", "prometheusrules", labels={names.LABEL_MANAGED_BY: MANAGED_BY}
)
async def child_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = body.metadata.labels.get(names.LABEL_MODELDEPLOYMENT)
    if owner:
        runtime: Runtime = memo["runtime"]
        runtime.queue.add((body.metadata.namespace or "", owner))
