"""parse_spec and parse_duration: defaults, selector short forms, errors that name the field."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy import names
from modeldeploy.api.durations import parse_duration
from modeldeploy.api.spec import BatchingSpec, ModelDeploymentSpec, SpecError, parse_spec

CRD = Path(__file__).resolve().parents[3] / "crds" / "modeldeploy.io_modeldeployments.yaml"
SECTIONS = ("serving", "monitoring", "registry", "rollback")


def spec_with(**sections: Any) -> dict[str, Any]:
    return {"model": {"name": "fraud-detector", "alias": "champion"}, **sections}


def crd_spec_schema() -> dict[str, Any]:
    return copy.deepcopy(_crd_spec_schema())


@functools.cache
def _crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    spec: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def apply_crd_defaults(
    schema: dict[str, Any], obj: dict[str, Any], path: str = "spec"
) -> list[str]:
    """Structural defaulting as the API server does it: fill absent properties that have a
    default, recursing into objects (also ones just defaulted). Returns the leaf paths set."""
    leaves: list[str] = []
    for key, prop in (schema.get("properties") or {}).items():
        if key not in obj and "default" in prop:
            obj[key] = copy.deepcopy(prop["default"])
            if not isinstance(obj[key], dict):
                leaves.append(f"{path}.{key}")
        if prop.get("type") == "object" and isinstance(obj.get(key), dict):
            leaves += apply_crd_defaults(prop, obj[key], f"{path}.{key}")
    return leaves


# (CRD path under spec, how parse_spec exposes it, how to compare the CRD's default)
DEFAULTED_FIELDS: list[tuple[str, Callable[[ModelDeploymentSpec], Any], Callable[[Any], Any]]] = [
    ("serving.replicas", lambda s: s.serving.replicas, int),
    ("serving.port", lambda s: s.serving.port, int),
    ("serving.progressDeadline", lambda s: s.serving.progress_deadline, parse_duration),
    ("monitoring.serviceMonitor.enabled", lambda s: s.monitoring.service_monitor, bool),
    ("monitoring.serviceMonitor.interval", lambda s: s.monitoring.interval, str),
    ("monitoring.alerts.enabled", lambda s: s.monitoring.alerts.enabled, bool),
    ("monitoring.alerts.errorRate", lambda s: s.monitoring.alerts.error_rate, float),
    ("monitoring.alerts.latencyP99", lambda s: s.monitoring.alerts.latency_p99, float),
    ("monitoring.alerts.driftPsi", lambda s: s.monitoring.alerts.drift_psi, float),
    ("monitoring.alerts.for", lambda s: s.monitoring.alerts.for_, str),
    ("monitoring.alerts.window", lambda s: s.monitoring.alerts.window, str),
    ("monitoring.alerts.qualityWindow", lambda s: s.monitoring.alerts.quality_window, str),
    ("monitoring.alerts.minRows", lambda s: s.monitoring.alerts.min_rows, int),
    ("rollback.enabled", lambda s: s.rollback.enabled, bool),
    ("rollback.onAlerts", lambda s: s.rollback.on_alerts, tuple),
]


# --- defaults ------------------------------------------------------------------------------


def test_minimal_spec_gets_the_documented_defaults() -> None:
    s = parse_spec({"model": {"name": "fraud-detector"}})
    assert s.model.selector == "latest"
    assert (s.registry.tracking_uri, s.registry.credentials_secret) == (None, None)
    assert s.registry.poll_interval is None  # unset: the operator's --poll-interval applies
    assert (s.serving.replicas, s.serving.port, s.serving.progress_deadline) == (1, 8080, 600.0)
    assert (s.serving.image, s.serving.env, dict(s.serving.resources)) == (None, (), {})
    assert (s.monitoring.service_monitor, s.monitoring.interval) == (True, "15s")
    a = s.monitoring.alerts
    assert (a.enabled, a.error_rate, a.latency_p99, a.drift_psi) == (True, 0.05, 0.5, 0.2)
    assert (a.for_, a.window) == ("30s", "1m")
    assert (a.quality_window, a.min_rows, a.min_accuracy) == ("10m", 100, None)
    assert s.rollback.enabled is True
    assert s.rollback.on_alerts == (names.ALERT_HIGH_ERROR_RATE, names.ALERT_HIGH_LATENCY)


@pytest.mark.parametrize(
    ("crd_path", "parsed", "convert"), DEFAULTED_FIELDS, ids=[f[0] for f in DEFAULTED_FIELDS]
)
def test_crd_default_equals_what_parse_spec_yields_for_an_empty_section(
    crd_path: str, parsed: Callable[[ModelDeploymentSpec], Any], convert: Callable[[Any], Any]
) -> None:
    node = crd_spec_schema()
    for part in crd_path.split("."):
        node = node["properties"][part]
    section = crd_path.split(".")[0]
    value = parsed(parse_spec(spec_with(**{section: {}})))
    assert value == convert(node["default"]), f"CRD default of spec.{crd_path}"


def test_every_leaf_default_of_the_crd_sections_has_a_parse_spec_counterpart() -> None:
    """A default added to the CRD (or removed from it) without updating parse_spec fails here,
    and an empty spec defaulted by the schema parses exactly like the bare one."""
    minimal = {"model": {"name": "fraud-detector"}}
    defaulted = copy.deepcopy(minimal)
    leaves = apply_crd_defaults(crd_spec_schema(), defaulted)
    in_sections = {p.removeprefix("spec.") for p in leaves if p.split(".")[1] in SECTIONS}
    assert in_sections == {f[0] for f in DEFAULTED_FIELDS}
    assert parse_spec(defaulted) == parse_spec(minimal)


# --- selector short forms ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "selector"),
    [
        ({"name": "m", "alias": "champion"}, "@champion"),
        ({"name": "m", "version": "7"}, "v7"),
        ({"name": "m", "version": 7}, "v7"),  # a YAML integer is accepted as the version
        ({"name": "m", "stage": "Production"}, "stage=Production"),
        ({"name": "m"}, "latest"),
        ({"name": "m", "alias": "", "version": None}, "latest"),  # empty means unset
    ],
)
def test_selector_short_form(model: dict[str, Any], selector: str) -> None:
    assert parse_spec({"model": model}).model.selector == selector


def test_version_is_kept_as_a_string() -> None:
    assert parse_spec({"model": {"name": "m", "version": 12}}).model.version == "12"


# --- errors name the field -----------------------------------------------------------------


def field_of(spec: Any) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    assert str(info.value).startswith(f"{info.value.field}: ")
    return info.value.field


def test_missing_model_is_refused() -> None:
    assert field_of({}) == "spec.model"
    assert field_of({"serving": {}}) == "spec.model"
    assert field_of({"model": {"alias": "champion"}}) == "spec.model.name"


@pytest.mark.parametrize(
    "model",
    [
        {"name": "m", "alias": "champion", "version": "3"},
        {"name": "m", "alias": "champion", "stage": "Production"},
        {"name": "m", "version": "3", "stage": "Production"},
    ],
)
def test_two_selectors_are_refused_naming_one_of_them(model: dict[str, Any]) -> None:
    set_keys = {f"spec.model.{k}" for k in model if k != "name"}
    assert field_of({"model": model}) in set_keys


@pytest.mark.parametrize("alias", ["v3", "V12", "latest", "LATEST", "a b", "café", "x" * 256])
def test_alias_mlflow_would_refuse_or_misread_is_refused(alias: str) -> None:
    assert field_of({"model": {"name": "m", "alias": alias}}) == "spec.model.alias"


@pytest.mark.parametrize("alias", ["champion", "v3-candidate", "latest_good", "a_B-9", "v"])
def test_ordinary_aliases_are_accepted(alias: str) -> None:
    assert parse_spec({"model": {"name": "m", "alias": alias}}).model.alias == alias


@pytest.mark.parametrize("version", ["0", "x", "01", "-1", "1.0", 0, "1" * 19])
def test_version_that_is_not_a_positive_integer_is_refused(version: Any) -> None:
    assert field_of({"model": {"name": "m", "version": version}}) == "spec.model.version"


@pytest.mark.parametrize("stage", ["production", "Prod", "Live"])
def test_unknown_stage_is_refused(stage: str) -> None:
    assert field_of({"model": {"name": "m", "stage": stage}}) == "spec.model.stage"


@pytest.mark.parametrize(
    "uri", ["ftp://mlflow:5000", "file:///tmp/mlruns", "mlflow:5000", "http://", "databricks:x"]
)
def test_tracking_uri_with_an_unsupported_scheme_is_refused(uri: str) -> None:
    assert field_of(spec_with(registry={"trackingUri": uri})) == "spec.registry.trackingUri"


@pytest.mark.parametrize(
    "uri",
    ["http://mlflow:5000", "https://mlflow.example.com/api", "databricks", "databricks://prof"],
)
def test_supported_tracking_uris_are_accepted(uri: str) -> None:
    assert parse_spec(spec_with(registry={"trackingUri": uri})).registry.tracking_uri == uri


@pytest.mark.parametrize(
    ("serving", "field"),
    [
        ({"replicas": -1}, "spec.serving.replicas"),
        ({"replicas": 1001}, "spec.serving.replicas"),
        ({"replicas": "2"}, "spec.serving.replicas"),
        ({"replicas": True}, "spec.serving.replicas"),
        ({"port": 80}, "spec.serving.port"),
        ({"port": 65536}, "spec.serving.port"),
        ({"progressDeadline": "10"}, "spec.serving.progressDeadline"),
        ({"progressDeadline": "1.5m"}, "spec.serving.progressDeadline"),
        ({"env": [{"value": "x"}]}, "spec.serving.env[0].name"),
        ({"env": [{"name": "A", "value": "1"}, {"name": ""}]}, "spec.serving.env[1].name"),
        ({"env": ["A=1"]}, "spec.serving.env[0].name"),
        ({"nodeSelector": ["zone-a"]}, "spec.serving.nodeSelector"),
        ({"resources": ["cpu"]}, "spec.serving.resources"),
    ],
)
def test_invalid_serving_field_is_named(serving: dict[str, Any], field: str) -> None:
    assert field_of(spec_with(serving=serving)) == field


@pytest.mark.parametrize(
    ("monitoring", "field"),
    [
        ({"serviceMonitor": {"interval": "fast"}}, "spec.monitoring.serviceMonitor.interval"),
        ({"alerts": {"for": "1 m"}}, "spec.monitoring.alerts.for"),
        ({"alerts": {"window": "5"}}, "spec.monitoring.alerts.window"),
        ({"alerts": {"errorRate": 1.5}}, "spec.monitoring.alerts.errorRate"),
        ({"alerts": {"errorRate": 0}}, "spec.monitoring.alerts.errorRate"),
        ({"alerts": {"errorRate": "5%"}}, "spec.monitoring.alerts.errorRate"),
        ({"alerts": {"latencyP99": -0.1}}, "spec.monitoring.alerts.latencyP99"),
        ({"alerts": {"driftPsi": 0}}, "spec.monitoring.alerts.driftPsi"),
        ({"alerts": "off"}, "spec.monitoring.alerts"),
    ],
)
def test_invalid_monitoring_field_is_named(monitoring: dict[str, Any], field: str) -> None:
    assert field_of(spec_with(monitoring=monitoring)) == field


def test_error_rate_of_exactly_one_is_accepted() -> None:
    s = parse_spec(spec_with(monitoring={"alerts": {"errorRate": 1}}))
    assert s.monitoring.alerts.error_rate == 1.0


def test_bad_poll_interval_is_named() -> None:
    assert field_of(spec_with(registry={"pollInterval": "30"})) == "spec.registry.pollInterval"
    assert parse_spec(spec_with(registry={"pollInterval": "1m30s"})).registry.poll_interval == 90


@pytest.mark.parametrize("on_alerts", ["ModelHighErrorRate", {"a": 1}, [""], ["ok", 3]])
def test_on_alerts_that_is_not_a_list_of_names_is_refused(on_alerts: Any) -> None:
    assert field_of(spec_with(rollback={"onAlerts": on_alerts})) == "spec.rollback.onAlerts"


def test_explicit_rollback_alerts_replace_the_default_list() -> None:
    s = parse_spec(spec_with(rollback={"enabled": False, "onAlerts": ["ModelInputDrift"]}))
    assert (s.rollback.enabled, s.rollback.on_alerts) == (False, ("ModelInputDrift",))


@pytest.mark.parametrize("section", SECTIONS)
def test_section_that_is_not_an_object_is_refused(section: str) -> None:
    assert field_of(spec_with(**{section: ["x"]})) == f"spec.{section}"


def test_resources_requests_that_is_not_an_object_names_the_full_path() -> None:
    field = field_of(spec_with(serving={"resources": {"requests": "500m"}}))
    assert field == "spec.serving.resources.requests"


def test_serving_fields_are_parsed_into_plain_types() -> None:
    s = parse_spec(
        spec_with(
            serving={
                "replicas": 0,
                "port": 9000,
                "resources": {"requests": {"cpu": "500m", "memory": 512}, "limits": {}},
                "env": [{"name": "A", "value": "1"}, {"name": "EMPTY"}],
                "nodeSelector": {"zone": "a"},
                "progressDeadline": "1m30s",
            }
        )
    )
    assert (s.serving.replicas, s.serving.port, s.serving.progress_deadline) == (0, 9000, 90.0)
    assert dict(s.serving.resources) == {"requests": {"cpu": "500m", "memory": "512"}}
    assert s.serving.env == (("A", "1"), ("EMPTY", ""))
    assert dict(s.serving.node_selector) == {"zone": "a"}


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1h30m", 5400.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1.5m", "10 s", "s", "1d", "-5s", "5s "])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_batching_is_parsed_with_the_runtime_defaults_and_bounds() -> None:
    assert parse_spec(spec_with(serving={})).serving.batching is None
    batching = parse_spec(spec_with(serving={"batching": {}})).serving.batching
    assert batching == BatchingSpec(max_batch_size=32, window_ms=1)
    batching = parse_spec(spec_with(serving={"batching": {"maxBatchSize": 1, "window": "0ms"}}))
    assert batching.serving.batching == BatchingSpec(max_batch_size=1, window_ms=0)
    for bad, where in (
        ({"maxBatchSize": 0}, "maxBatchSize"),
        ({"window": "2s"}, "window"),
        ({"window": "soon"}, "window"),
    ):
        with pytest.raises(SpecError, match=where):
            parse_spec(spec_with(serving={"batching": bad}))
