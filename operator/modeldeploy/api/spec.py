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


@dataclass(frozen=True)
class ModelDeploymentSpec:
    model: ModelRef
    # spec.model.requireApproval: roll out only versions approved for this stage.
    require_approval: str | None = None
    registry: RegistrySpec = RegistrySpec()
    serving: ServingSpec = ServingSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    rollback: RollbackSpec = RollbackSpec()


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
    )
