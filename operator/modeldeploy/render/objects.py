"""Builders for the serving Deployment, its Service, ServiceMonitor and PrometheusRule.

Every builder is a pure function of RenderContext returning a plain dict ready for server-side
apply; golden files in tests/unit/operator/golden pin their output. Pods meet the Pod Security
"restricted" profile: non-root, no privilege escalation, all capabilities dropped, RuntimeDefault
seccomp, read-only root filesystem with a writable /tmp, no service-account token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modeldeploy import names
from modeldeploy.api.spec import BLUE_GREEN, CANARY, ModelDeploymentSpec
from modeldeploy.render.quality_rules import BY, quality_rules, selector

SERVING_UID = 65532
MANAGED_BY = "modeldeploy"
APP_NAME = "modeldeploy-serving"
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
# Pod-template annotations that record what the pods run, so the operator can keep serving
# exactly that when the registry cannot be asked.
ANN_MODEL_URI = f"{names.GROUP}/model-uri"
ANN_RUN_ID = f"{names.GROUP}/run-id"
# On a Deployment applied without spec.replicas: its HorizontalPodAutoscaler is ours to delete
# when spec.serving.autoscaling goes away.
ANN_AUTOSCALED = f"{names.GROUP}/autoscaled"


@dataclass(frozen=True)
class RenderContext:
    name: str
    namespace: str
    uid: str
    spec: ModelDeploymentSpec
    version: str
    model_uri: str
    run_id: str
    image: str
    tracking_uri: str
    # Env the serving runtime needs from the operator's configuration (e.g. which model flavors
    # it may unpickle); kept here so builders stay pure.
    serving_env: tuple[tuple[str, str], ...] = ()
    # stable: the Deployment <name>; canary: <name>-canary (or <name>-preview for blue-green).
    track: str = names.TRACK_STABLE
    replicas: int | None = None  # None: spec.serving.replicas
    # Leaves spec.replicas out of the Deployment: the HorizontalPodAutoscaler owns it.
    autoscaled: bool = False

    @property
    def object_name(self) -> str:
        return self.name if self.track == names.TRACK_STABLE else second_name(self.name, self.spec)


def second_name(name: str, spec: ModelDeploymentSpec) -> str:
    """Name of the canary (or blue-green preview) Deployment and Service."""
    return f"{name}-preview" if spec.strategy.type == BLUE_GREEN else f"{name}-canary"


def split_services(spec: ModelDeploymentSpec) -> bool:
    """Whether the Service <name> selects the stable pods only: with a route, which splits
    traffic between two Services, and in blue-green, whose preview takes no traffic from it.
    Without either, a canary's pods sit behind <name> beside the stable ones."""
    return spec.strategy.type == BLUE_GREEN or (
        spec.strategy.type == CANARY and spec.strategy.http_route is not None
    )


def label_value(text: str) -> str:
    """A Kubernetes label value (≤63 chars of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63]
    return cleaned.strip("_.-") or "x"


def selector_labels(name: str) -> dict[str, str]:
    """Stable across versions: a Deployment's selector is immutable."""
    return {names.LABEL_MODELDEPLOYMENT: name, names.LABEL_MANAGED_BY: MANAGED_BY}


def common_labels(ctx: RenderContext) -> dict[str, str]:
    return {
        **selector_labels(ctx.name),
        names.LABEL_NAME: APP_NAME,
        names.LABEL_INSTANCE: ctx.name,
        names.LABEL_MODEL_NAME: label_value(ctx.spec.model.name),
    }


def metadata(
    ctx: RenderContext, labels: dict[str, str] | None = None, name: str | None = None
) -> dict[str, Any]:
    return {
        "name": name or ctx.name,
        "namespace": ctx.namespace,
        "labels": labels or common_labels(ctx),
        "ownerReferences": [
            {
                "apiVersion": f"{names.GROUP}/{names.VERSION}",
                "kind": names.KIND,
                "name": ctx.name,
                "uid": ctx.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def _env(ctx: RenderContext) -> list[dict[str, str]]:
    fixed = [
        ("MODEL_URI", ctx.model_uri),
        ("MODEL_NAME", ctx.spec.model.name),
        ("MODEL_VERSION", ctx.version),
        ("MODEL_RUN_ID", ctx.run_id),
        ("PORT", str(ctx.spec.serving.port)),
        ("MLFLOW_TRACKING_URI", ctx.tracking_uri),
        ("MLFLOW_DISABLE_TELEMETRY", "true"),
        ("MODELDEPLOY_NAMESPACE", ctx.namespace),
        ("MODELDEPLOYMENT", ctx.name),
        *_batching_env(ctx),
        *ctx.serving_env,
    ]
    taken = {k for k, _ in fixed}
    user = [(k, v) for k, v in ctx.spec.serving.env if k not in taken]
    return [{"name": k, "value": v} for k, v in (*fixed, *user)]


def _batching_env(ctx: RenderContext) -> list[tuple[str, str]]:
    """spec.serving.batching as the serving runtime's variables (serving/config.py); unset, the
    runtime's own defaults apply."""
    batching = ctx.spec.serving.batching
    if batching is None:
        return []
    return [
        (names.BATCH_MAX_SIZE_ENV, str(batching.max_batch_size)),
        (names.BATCH_WINDOW_ENV, str(batching.window_ms)),
    ]


def build_deployment(ctx: RenderContext) -> dict[str, Any]:
    serving = ctx.spec.serving
    pod_labels = {
        **common_labels(ctx),
        names.LABEL_MODEL_VERSION: label_value(ctx.version),
        names.LABEL_TRACK: ctx.track,
    }
    # The stable Deployment keeps the selector it always had (a selector is immutable); the
    # canary's adds the track, so neither claims the other's ReplicaSets.
    match = selector_labels(ctx.name)
    if ctx.track != names.TRACK_STABLE:
        match[names.LABEL_TRACK] = ctx.track
    container: dict[str, Any] = {
        "name": "model",
        "image": ctx.image,
        "ports": [{"name": "http", "containerPort": serving.port, "protocol": "TCP"}],
        "env": _env(ctx),
        "resources": {k: dict(v) for k, v in (serving.resources or DEFAULT_RESOURCES).items()},
        "readinessProbe": _probe("/health", period=5, failures=3),
        "livenessProbe": _probe("/ping", period=10, failures=3),
        # Loading a model can take minutes; liveness starts counting only once it is loaded.
        "startupProbe": _probe("/health", period=5, failures=120),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if serving.image_pull_policy:
        container["imagePullPolicy"] = serving.image_pull_policy
    if ctx.spec.registry.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": ctx.spec.registry.credentials_secret}}]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SERVING_UID,
            "runAsGroup": SERVING_UID,
            "fsGroup": SERVING_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if serving.node_selector:
        pod_spec["nodeSelector"] = dict(serving.node_selector)
    if serving.service_account_name:
        pod_spec["serviceAccountName"] = serving.service_account_name
    replicas = serving.replicas if ctx.replicas is None else ctx.replicas
    spec: dict[str, Any] = {} if ctx.autoscaled else {"replicas": replicas}
    meta = metadata(ctx, name=ctx.object_name)
    if ctx.autoscaled:
        meta["annotations"] = {ANN_AUTOSCALED: "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            **spec,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": int(serving.progress_deadline),
            "selector": {"matchLabels": match},
            "strategy": {
                "type": "RollingUpdate",
                # Never fewer ready pods than asked for while a new version rolls out.
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        ANN_MODEL_URI: ctx.model_uri,
                        ANN_RUN_ID: ctx.run_id,
                        "kubectl.kubernetes.io/default-container": "model",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def build_service(ctx: RenderContext, active: str | None = names.TRACK_STABLE) -> dict[str, Any]:
    """The Service <name> for the stable track (selecting `active` pods where services are
    split: a blue-green switch points it at the preview), or <name>-canary / <name>-preview for
    the canary track. Both carry the labels the ServiceMonitor selects, and their pods never
    overlap, so every pod is scraped once. `active` None: every serving pod (stable pods that
    predate the track label cannot be selected by it)."""
    selector = selector_labels(ctx.name)
    if ctx.track != names.TRACK_STABLE:
        selector[names.LABEL_TRACK] = ctx.track
    elif split_services(ctx.spec) and active is not None:
        selector[names.LABEL_TRACK] = active
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(ctx, name=ctx.object_name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": ctx.spec.serving.port, "targetPort": "http"}],
        },
    }


def build_hpa(ctx: RenderContext) -> dict[str, Any]:
    """autoscaling/v2 on CPU for the stable Deployment; the Deployment is then applied without
    spec.replicas, so the autoscaler alone owns that field."""
    auto = ctx.spec.serving.autoscaling
    assert auto is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(ctx),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ctx.name},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": auto.target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def monitoring_metadata(ctx: RenderContext) -> dict[str, Any]:
    return metadata(ctx, {**ctx.spec.monitoring.labels, **common_labels(ctx)})


def build_service_monitor(ctx: RenderContext) -> dict[str, Any]:
    """Scrapes /metrics of every serving pod. The serving runtime labels its series with
    model_name/model_version itself; relabeling adds `modeldeployment` (namespace comes from the
    Prometheus Operator), the three labels the alert rules and rollback match on."""
    pod_label = "__meta_kubernetes_pod_label_" + re.sub(
        r"[^a-zA-Z0-9]", "_", names.LABEL_MODELDEPLOYMENT
    )
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": monitoring_metadata(ctx),
        "spec": {
            "selector": {"matchLabels": selector_labels(ctx.name)},
            "namespaceSelector": {"matchNames": [ctx.namespace]},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": ctx.spec.monitoring.interval,
                    "relabelings": [
                        {
                            "sourceLabels": [pod_label],
                            "targetLabel": names.PROM_MODELDEPLOYMENT,
                            "action": "replace",
                        }
                    ],
                }
            ],
        },
    }


def alert_rules(ctx: RenderContext) -> list[dict[str, Any]]:
    """The default rules, scoped to this ModelDeployment's series and grouped by the labels the
    rollback logic matches on (namespace, modeldeployment, model_version)."""
    a = ctx.spec.monitoring.alerts
    by = BY
    sel = selector(ctx.namespace, ctx.name)
    req = names.PREDICTION_REQUESTS
    summary = (
        "{{ $labels.modeldeployment }} v{{ $labels.model_version }} in {{ $labels.namespace }}"
    )
    common = {"modeldeploy_io_managed": "true"}
    rules = [
        {
            "alert": names.ALERT_HIGH_ERROR_RATE,
            "expr": (
                # Of the requests the version answered for: client errors (4xx) neither raise
                # the ratio (a client cannot fire it) nor dilute it (nor hide a broken version).
                f'sum by ({by}) (rate({req}{{{sel}, {names.LABEL_CODE}=~"5.."}}[{a.window}]))'
                f' / sum by ({by}) (rate({req}{{{sel}, {names.LABEL_CODE}!~"4.."}}[{a.window}]))'
                f" > {a.error_rate:g}"
            ),
            "for": a.for_,
            "labels": {**common, "severity": "critical"},
            "annotations": {
                "summary": f"{summary}: error rate above {a.error_rate:g}",
                "description": "{{ $value | humanizePercentage }} of predictions answered 5xx.",
            },
        },
        {
            "alert": names.ALERT_HIGH_LATENCY,
            "expr": (
                f"histogram_quantile(0.99, sum by ({by}, le) "
                f"(rate({names.PREDICTION_LATENCY}_bucket{{{sel}}}[{a.window}])))"
                f" > {a.latency_p99:g}"
            ),
            "for": a.for_,
            "labels": {**common, "severity": "critical"},
            "annotations": {
                "summary": f"{summary}: p99 latency above {a.latency_p99:g}s",
                "description": "p99 prediction latency is {{ $value | humanizeDuration }}.",
            },
        },
        {
            "alert": names.ALERT_DRIFT,
            "expr": f"{names.REC_FEATURE_PSI}{{{sel}}} > {a.drift_psi:g}",
            "for": a.for_,
            "labels": {**common, "severity": "warning"},
            "annotations": {
                "summary": f"{summary}: input drift on {{{{ $labels.feature }}}}",
                "description": (
                    "PSI of {{ $labels.feature }} is {{ $value }} against the training baseline "
                    f"over the last {a.quality_window}."
                ),
            },
        },
    ]
    if a.min_accuracy is not None:
        rules.append({
            "alert": names.ALERT_LOW_ACCURACY,
            "expr": (
                f"{names.REC_ACCURACY}{{{sel}}} < {a.min_accuracy:g}"
                f" and on ({by}) {names.REC_FEEDBACK_ROWS}{{{sel}}} >= {a.min_rows}"
            ),
            "for": a.for_,
            "labels": {**common, "severity": "critical"},
            "annotations": {
                "summary": f"{summary}: accuracy below {a.min_accuracy:g}",
                "description": (
                    "Accuracy from /feedback labels is {{ $value | humanizePercentage }} over the "
                    f"last {a.quality_window}."
                ),
            },
        })  # fmt: skip
    return rules


def build_prometheus_rule(ctx: RenderContext) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": monitoring_metadata(ctx),
        "spec": {
            "groups": [
                {
                    "name": f"modeldeploy.{ctx.namespace}.{ctx.name}",
                    # Recording rules first: the alerts read them at the same evaluation.
                    "rules": [
                        *quality_rules(ctx.namespace, ctx.name, ctx.spec.monitoring.alerts),
                        *alert_rules(ctx),
                    ],
                }
            ]
        },
    }
