"""ModelDeployment spec, parsed once at the edge into frozen dataclasses.

The API server already applied the CRD's defaults and validation; `parse_spec` re-checks what a
schema cannot guarantee (an object written before a CRD upgrade, a hand-made dict in a test) and
raises SpecError naming the field, so the planner never digs in dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modeldeploy import names
from modeldeploy.api.durations import parse_duration

STAGES = ("Staging", "Production", "Archived", "None")
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,17}$")
_STAGE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_TRACKING_URI = re.compile(
    r"^(https?://[^/\s:]+(:\d{1,5})?(/\S*)?|databricks(://[A-Za-z0-9_.-]+)?)$"
)


class SpecError(ValueError):
    """The spec is wrong in a way retrying cannot fix; `field` is its path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None
    stage: str | None = None

    @property
    def selector(self) -> str:
        """Short form for status and printer columns: @alias, vN, stage=S or latest."""
        if self.alias:
            return f"@{self.alias}"
        if self.version:
            return f"v{self.version}"
        if self.stage:
            return f"stage={self.stage}"
        return "latest"


@dataclass(frozen=True)
class RegistrySpec:
    tracking_uri: str | None = None
    credentials_secret: str | None = None
    poll_interval: float | None = None  # None: the operator's --poll-interval


@dataclass(frozen=True)
class AutoscalingSpec:
    """spec.serving.autoscaling: an autoscaling/v2 HorizontalPodAutoscaler on CPU."""

    max_replicas: int
    min_replicas: int = 1
    target_cpu_percent: int = 80


@dataclass(frozen=True)
class BatchingSpec:
    """spec.serving.batching: the serving runtime's adaptive batching (serving/batching.py)."""

    max_batch_size: int = 32
    window_ms: int = 1


@dataclass(frozen=True)
class ServingSpec:
    image: str | None = None
    image_pull_policy: str | None = None
    replicas: int = 1
    port: int = 8080
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    env: tuple[tuple[str, str], ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    service_account_name: str | None = None
    progress_deadline: float = 600.0
    autoscaling: AutoscalingSpec | None = None
    batching: BatchingSpec | None = None


@dataclass(frozen=True)
class AlertsSpec:
    enabled: bool = True
    error_rate: float = 0.05
    latency_p99: float = 0.5
    drift_psi: float = 0.2
    for_: str = "30s"
    window: str = "1m"
    # Model quality (recording rules over counters): the window, the rows a window needs before
    # a drift or accuracy figure counts, and the accuracy below which ModelLowAccuracy fires.
    quality_window: str = "10m"
    min_rows: int = 100
    min_accuracy: float | None = None


@dataclass(frozen=True)
class MonitoringSpec:
    service_monitor: bool = True
    interval: str = "15s"
    alerts: AlertsSpec = AlertsSpec()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RollbackSpec:
    enabled: bool = True
    on_alerts: tuple[str, ...] = (names.ALERT_HIGH_ERROR_RATE, names.ALERT_HIGH_LATENCY)


ROLLING_UPDATE, CANARY, BLUE_GREEN = "RollingUpdate", "Canary", "BlueGreen"


@dataclass(frozen=True)
class CanaryStep:
    weight: int  # percent of traffic, 1-99
    duration: float  # seconds the step is held and analysed


DEFAULT_STEPS = (CanaryStep(10, 60.0), CanaryStep(50, 60.0))


@dataclass(frozen=True)
class AnalysisSpec:
    """spec.strategy.analysis. None limits fall back to spec.monitoring.alerts (`limits`)."""

    interval: float = 10.0
    min_requests: int = 50
    max_error_rate: float | None = None
    max_latency_p99: float | None = None
    max_output_psi: float = 0.2
    max_confidence_drop: float = 0.1
    max_input_psi: float | None = None


@dataclass(frozen=True)
class Limits:
    """The analysis limits with every default filled in."""

    min_requests: int
    max_error_rate: float
    max_latency_p99: float
    max_output_psi: float
    max_confidence_drop: float
    max_input_psi: float


@dataclass(frozen=True)
class StrategySpec:
    type: str = ROLLING_UPDATE
    steps: tuple[CanaryStep, ...] = DEFAULT_STEPS
    http_route: str | None = None  # spec.strategy.canary.trafficRouting.httpRoute.name
    preview_duration: float = 60.0  # spec.strategy.blueGreen.duration
    analysis: AnalysisSpec = AnalysisSpec()

    @property
    def progressive(self) -> bool:
        return self.type in (CANARY, BLUE_GREEN)


@dataclass(frozen=True)
class ModelDeploymentSpec:
    model: ModelRef
    # spec.model.requireApproval: roll out only versions approved for this stage.
    require_approval: str | None = None
    registry: RegistrySpec = RegistrySpec()
    serving: ServingSpec = ServingSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    rollback: RollbackSpec = RollbackSpec()
    strategy: StrategySpec = StrategySpec()

    def limits(self) -> Limits:
        a, alerts = self.strategy.analysis, self.monitoring.alerts
        return Limits(
            min_requests=a.min_requests,
            max_error_rate=alerts.error_rate if a.max_error_rate is None else a.max_error_rate,
            max_latency_p99=alerts.latency_p99 if a.max_latency_p99 is None else a.max_latency_p99,
            max_output_psi=a.max_output_psi,
            max_confidence_drop=a.max_confidence_drop,
            max_input_psi=alerts.drift_psi if a.max_input_psi is None else a.max_input_psi,
        )


def _obj(d: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = d.get(key) or {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}.{key}", "must be an object")
    return value


def _opt_str(d: Mapping[str, Any], key: str, path: str) -> str | None:
    value = d.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SpecError(f"{path}.{key}", "must be a string")
    return str(value)


def _bool(d: Mapping[str, Any], key: str, path: str, default: bool = True) -> bool:
    value = d.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{path}.{key}", f"must be true or false, not {value!r}")
    return value


def _int(d: Mapping[str, Any], key: str, path: str, default: int, lo: int, hi: int) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SpecError(f"{path}.{key}", f"must be an integer from {lo} to {hi}, not {value!r}")
    return value


def _num(d: Mapping[str, Any], key: str, path: str, default: float) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise SpecError(f"{path}.{key}", f"must be a number above 0, not {value!r}")
    return float(value)


def _opt_num(d: Mapping[str, Any], key: str, path: str, lo: float, hi: float) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise SpecError(f"{path}.{key}", f"must be a number from {lo:g} to {hi:g}, not {value!r}")
    return float(value)


def _num_or(d: Mapping[str, Any], key: str, path: str, default: float, hi: float) -> float:
    value = _opt_num(d, key, path, 0.0, hi)
    return default if value is None else value


def _duration(d: Mapping[str, Any], key: str, path: str, default: str) -> tuple[str, float]:
    text = str(d.get(key) or default)
    try:
        return text, parse_duration(text)
    except ValueError as exc:
        raise SpecError(f"{path}.{key}", str(exc)) from None


def _parse_model(d: Mapping[str, Any]) -> ModelRef:
    p = "spec.model"
    name = _opt_str(d, "name", p)
    if not name:
        raise SpecError(f"{p}.name", "is required")
    alias, version, stage = (_opt_str(d, k, p) for k in ("alias", "version", "stage"))
    chosen = [k for k, v in (("alias", alias), ("version", version), ("stage", stage)) if v]
    if len(chosen) > 1:
        raise SpecError(
            f"{p}.{chosen[1]}", f"set at most one of alias, version, stage (got {chosen})"
        )
    if alias and (
        not _ALIAS.match(alias) or alias.lower() == "latest" or re.match(r"^[vV]\d+$", alias)
    ):
        raise SpecError(f"{p}.alias", f"{alias!r} is not a valid MLflow alias")
    if version and not _VERSION.match(version):
        raise SpecError(f"{p}.version", f"{version!r} is not a positive integer")
    if stage and stage not in STAGES:
        raise SpecError(f"{p}.stage", f"{stage!r} is not one of {', '.join(STAGES)}")
    return ModelRef(name=name, alias=alias, version=version, stage=stage)


def _parse_registry(d: Mapping[str, Any]) -> RegistrySpec:
    p = "spec.registry"
    uri = _opt_str(d, "trackingUri", p)
    if uri and not _TRACKING_URI.match(uri):
        raise SpecError(f"{p}.trackingUri", f"{uri!r} is not an http(s):// or databricks URI")
    poll = _duration(d, "pollInterval", p, "30s")[1] if d.get("pollInterval") else None
    return RegistrySpec(uri, _opt_str(d, "credentialsSecret", p), poll)


def _parse_serving(d: Mapping[str, Any]) -> ServingSpec:
    p = "spec.serving"
    env = []
    for i, item in enumerate(d.get("env") or []):
        if not isinstance(item, Mapping) or not item.get("name"):
            raise SpecError(f"{p}.env[{i}].name", "is required")
        env.append((str(item["name"]), str(item.get("value", ""))))
    res = _obj(d, "resources", p)
    resources = {
        kind: {str(k): str(v) for k, v in _obj(res, kind, f"{p}.resources").items()}
        for kind in ("requests", "limits")
        if res.get(kind)
    }
    _, deadline = _duration(d, "progressDeadline", p, "10m")
    return ServingSpec(
        image=_opt_str(d, "image", p),
        image_pull_policy=_opt_str(d, "imagePullPolicy", p),
        replicas=_int(d, "replicas", p, 1, 0, 1000),
        port=_int(d, "port", p, 8080, 1024, 65535),
        resources=resources,
        env=tuple(env),
        node_selector={str(k): str(v) for k, v in _obj(d, "nodeSelector", p).items()},
        service_account_name=_opt_str(d, "serviceAccountName", p),
        progress_deadline=deadline,
        autoscaling=_parse_autoscaling(d.get("autoscaling")),
        batching=_parse_batching(d.get("batching")),
    )


def _parse_batching(d: Any) -> BatchingSpec | None:
    p = "spec.serving.batching"
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise SpecError(p, "must be an object")
    _, window = _duration(d, "window", p, "1ms")
    if window > 1:
        raise SpecError(f"{p}.window", "must be at most 1s")
    return BatchingSpec(_int(d, "maxBatchSize", p, 32, 1, 1024), round(window * 1000))


def _parse_autoscaling(d: Any) -> AutoscalingSpec | None:
    p = "spec.serving.autoscaling"
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise SpecError(p, "must be an object")
    if d.get("maxReplicas") is None:
        raise SpecError(f"{p}.maxReplicas", "is required")
    most = _int(d, "maxReplicas", p, 1, 1, 1000)
    least = _int(d, "minReplicas", p, 1, 1, 1000)
    if least > most:
        raise SpecError(f"{p}.minReplicas", f"must not exceed maxReplicas ({least} > {most})")
    return AutoscalingSpec(most, least, _int(d, "targetCPUUtilizationPercentage", p, 80, 1, 1000))


def _step_duration(d: Mapping[str, Any], key: str, path: str, default: str) -> float:
    seconds = _duration(d, key, path, default)[1]
    if not 10 <= seconds <= 86400:
        raise SpecError(f"{path}.{key}", "must be between 10s and 24h")
    return seconds


def _parse_analysis(d: Mapping[str, Any]) -> AnalysisSpec:
    p = "spec.strategy.analysis"
    interval = _duration(d, "interval", p, "10s")[1]
    if not 2 <= interval <= 600:
        raise SpecError(f"{p}.interval", "must be between 2s and 10m")
    return AnalysisSpec(
        interval=interval,
        min_requests=_int(d, "minRequests", p, 50, 1, 1_000_000_000),
        max_error_rate=_opt_num(d, "maxErrorRate", p, 0.0, 1.0),
        max_latency_p99=_opt_num(d, "maxLatencyP99", p, 0.0, 1e6),
        max_output_psi=_num_or(d, "maxOutputPsi", p, 0.2, 1e6),
        max_confidence_drop=_num_or(d, "maxConfidenceDrop", p, 0.1, 1.0),
        max_input_psi=_opt_num(d, "maxInputPsi", p, 0.0, 1e6),
    )


def _parse_strategy(d: Mapping[str, Any]) -> StrategySpec:
    p = "spec.strategy"
    kind = _opt_str(d, "type", p) or ROLLING_UPDATE
    if kind not in (ROLLING_UPDATE, CANARY, BLUE_GREEN):
        raise SpecError(f"{p}.type", f"{kind!r} is not RollingUpdate, Canary or BlueGreen")
    canary, blue = _obj(d, "canary", p), _obj(d, "blueGreen", p)
    steps = []
    raw_steps = canary.get("steps")
    if raw_steps is not None and (not isinstance(raw_steps, list) or not 1 <= len(raw_steps) <= 10):
        raise SpecError(f"{p}.canary.steps", "must be a list of 1 to 10 steps")
    for i, step in enumerate(raw_steps or ()):
        sp = f"{p}.canary.steps[{i}]"
        if not isinstance(step, Mapping) or step.get("weight") is None:
            raise SpecError(f"{sp}.weight", "is required")
        steps.append(
            CanaryStep(
                _int(step, "weight", sp, 0, 1, 99), _step_duration(step, "duration", sp, "1m")
            )
        )
    route = _obj(
        _obj(canary, "trafficRouting", f"{p}.canary"), "httpRoute", f"{p}.canary.trafficRouting"
    )
    return StrategySpec(
        type=kind,
        steps=tuple(steps) or DEFAULT_STEPS,
        http_route=_opt_str(route, "name", f"{p}.canary.trafficRouting.httpRoute"),
        preview_duration=_step_duration(blue, "duration", f"{p}.blueGreen", "1m"),
        analysis=_parse_analysis(_obj(d, "analysis", p)),
    )


def _parse_monitoring(d: Mapping[str, Any]) -> MonitoringSpec:
    p = "spec.monitoring"
    sm, al = _obj(d, "serviceMonitor", p), _obj(d, "alerts", p)
    interval, _ = _duration(sm, "interval", f"{p}.serviceMonitor", "15s")
    for_, _ = _duration(al, "for", f"{p}.alerts", "30s")
    window, _ = _duration(al, "window", f"{p}.alerts", "1m")
    error_rate = _num(al, "errorRate", f"{p}.alerts", 0.05)
    if error_rate > 1:
        raise SpecError(f"{p}.alerts.errorRate", f"must be at most 1, not {error_rate}")
    alerts = AlertsSpec(
        enabled=_bool(al, "enabled", f"{p}.alerts"),
        error_rate=error_rate,
        latency_p99=_num(al, "latencyP99", f"{p}.alerts", 0.5),
        drift_psi=_num(al, "driftPsi", f"{p}.alerts", 0.2),
        for_=for_,
        window=window,
        quality_window=_duration(al, "qualityWindow", f"{p}.alerts", "10m")[0],
        min_rows=_int(al, "minRows", f"{p}.alerts", 100, 1, 1_000_000_000),
        min_accuracy=_opt_num(al, "minAccuracy", f"{p}.alerts", 0.0, 1.0),
    )
    labels = {str(k): str(v) for k, v in _obj(d, "labels", p).items()}
    return MonitoringSpec(_bool(sm, "enabled", f"{p}.serviceMonitor"), interval, alerts, labels)


def _parse_rollback(d: Mapping[str, Any]) -> RollbackSpec:
    on_alerts = d.get("onAlerts")
    if on_alerts is None:
        return RollbackSpec(enabled=_bool(d, "enabled", "spec.rollback"))
    if not isinstance(on_alerts, list) or not all(isinstance(a, str) and a for a in on_alerts):
        raise SpecError("spec.rollback.onAlerts", "must be a list of alert names")
    return RollbackSpec(_bool(d, "enabled", "spec.rollback"), tuple(on_alerts))


def _parse_require_approval(d: Mapping[str, Any]) -> str | None:
    stage = _opt_str(d, "requireApproval", "spec.model")
    if stage is not None and (not _STAGE.fullmatch(stage) or stage.lower() == "latest"):
        raise SpecError("spec.model.requireApproval", f"{stage!r} is not a stage (alias) name")
    return stage


def parse_spec(spec: Mapping[str, Any]) -> ModelDeploymentSpec:
    if not isinstance(spec, Mapping) or not spec.get("model"):
        raise SpecError("spec.model", "is required")
    model = _obj(spec, "model", "spec")
    return ModelDeploymentSpec(
        model=_parse_model(model),
        require_approval=_parse_require_approval(model),
        registry=_parse_registry(_obj(spec, "registry", "spec")),
        serving=_parse_serving(_obj(spec, "serving", "spec")),
        monitoring=_parse_monitoring(_obj(spec, "monitoring", "spec")),
        rollback=_parse_rollback(_obj(spec, "rollback", "spec")),
        strategy=_parse_strategy(_obj(spec, "strategy", "spec")),
    )
