"""Builders: golden files per named case, plus the rules that must hold whatever the case."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy import names
from modeldeploy.api.spec import parse_spec
from modeldeploy.api.status import Status
from modeldeploy.registry.types import ResolvedVersion
from modeldeploy.render import objects as render
from modeldeploy.render.objects import RenderContext
from modeldeploy.render.quality_rules import quality_rules
from modeldeploy.rollout.planner import MONITORING_KINDS, Context, plan

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
IMAGE = "ghcr.io/modeldeploy/modeldeploy-serving:0.1.0"
TRACKING_URI = "http://mlflow.mlflow.svc:5000"
UID = "6f1c2a0e-9a43-4d0e-8c7e-2b1f0a3d5e77"
# A DNS-1123 label value: what Kubernetes accepts as a label value.
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

CASES: dict[str, dict[str, Any]] = {
    "default_alias": {
        "spec": {"model": {"name": "fraud-detector", "alias": "champion"}},
        "version": "3",
        "run_id": "0a1b2c3d4e5f",
    },
    "pinned_version_full_serving": {
        "spec": {
            "model": {"name": "churn-model", "version": "7"},
            "registry": {
                "trackingUri": "https://mlflow.example.com",
                "credentialsSecret": "mlflow-auth",
            },
            "serving": {
                "image": "registry.example.com/serving:1.2",
                "imagePullPolicy": "IfNotPresent",
                "replicas": 3,
                "port": 9000,
                "resources": {
                    "requests": {"cpu": "500m", "memory": "512Mi"},
                    "limits": {"cpu": "2", "memory": "2Gi"},
                },
                "env": [
                    {"name": "WORKERS", "value": "4"},
                    {"name": "MODEL_URI", "value": "models:/evil/1"},
                    {"name": "PORT", "value": "1"},
                ],
                "nodeSelector": {"node.kubernetes.io/instance-type": "m5.xlarge"},
                "serviceAccountName": "churn-serving",
                "progressDeadline": "15m",
            },
        },
        "version": "7",
        "run_id": "f00dfeedbeef",
        "image": "registry.example.com/serving:1.2",
        "tracking_uri": "https://mlflow.example.com",
        "serving_env": (("MODELDEPLOY_TRUST_MODEL_CODE", "never"),),
    },
    "monitoring_disabled": {
        "spec": {
            "model": {"name": "fraud-detector", "stage": "Production"},
            "monitoring": {"serviceMonitor": {"enabled": False}, "alerts": {"enabled": False}},
        },
        "version": "12",
        "run_id": "",
    },
    "custom_alert_thresholds": {
        "spec": {
            "model": {"name": "Fraud Detector (EU)", "alias": "challenger"},
            "monitoring": {
                "serviceMonitor": {"interval": "30s"},
                "alerts": {
                    "errorRate": 0.01,
                    "latencyP99": 0.25,
                    "driftPsi": 0.3,
                    "for": "5m",
                    "window": "10m",
                    "qualityWindow": "1h",
                    "minRows": 500,
                    "minAccuracy": 0.9,
                },
            },
        },
        "version": "41",
        "run_id": "5e6f7a8b",
    },
}


def context(case: str) -> RenderContext:
    c = CASES[case]
    spec = parse_spec(c["spec"])
    return RenderContext(
        name=f"md-{case.replace('_', '-')}",
        namespace="ml-prod",
        uid=UID,
        spec=spec,
        version=c["version"],
        model_uri=f"models:/{spec.model.name}/{c['version']}",
        run_id=c["run_id"],
        image=c.get("image", IMAGE),
        tracking_uri=c.get("tracking_uri", TRACKING_URI),
        serving_env=c.get("serving_env", ()),
    )


def rendered(ctx: RenderContext) -> list[dict[str, Any]]:
    """The objects the spec asks for: monitoring objects only where the spec enables them."""
    objs = [render.build_deployment(ctx), render.build_service(ctx)]
    if ctx.spec.monitoring.service_monitor:
        objs.append(render.build_service_monitor(ctx))
    if ctx.spec.monitoring.alerts.enabled:
        objs.append(render.build_prometheus_rule(ctx))
    return objs


def all_four(ctx: RenderContext) -> list[dict[str, Any]]:
    return [
        render.build_deployment(ctx),
        render.build_service(ctx),
        render.build_service_monitor(ctx),
        render.build_prometheus_rule(ctx),
    ]


def dump(objs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=True, default_flow_style=False, width=100)


# --- golden files --------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_objects_match_golden_file(case: str) -> None:
    path = GOLDEN / f"{case}.yaml"
    text = dump(rendered(context(case)))
    if UPDATE:
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(
            f"golden file {path} is missing; write it with "
            f"`UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/operator/test_render.py -k {case}` "
            "and review it",
            pytrace=False,
        )
    expected = path.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"golden/{case}.yaml",
                "rendered",
            )
        )
        pytest.fail(
            f"rendered objects differ from golden/{case}.yaml:\n{diff}\n"
            f"If the change is intended, refresh with `UPDATE_GOLDEN=1 .venv/bin/pytest "
            f"tests/unit/operator/test_render.py -k {case}` and review the diff before committing.",
            pytrace=False,
        )


def test_every_golden_file_belongs_to_a_case() -> None:
    assert {p.stem for p in GOLDEN.glob("*.yaml")} <= set(CASES)


def test_builders_are_deterministic() -> None:
    for case in CASES:
        assert dump(rendered(context(case))) == dump(rendered(context(case)))


# --- Pod Security "restricted" -------------------------------------------------------------

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standards "restricted" checks (plus readOnlyRootFilesystem, our rule)."""
    out = []
    psc = pod.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            out.append(f"{host} set")
    for v in pod.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {v['name']} uses {kinds - ALLOWED_VOLUMES}")
    if psc.get("sysctls"):
        out.append("sysctls set")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    for c in [*pod.get("containers", []), *(pod.get("initContainers") or [])]:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation not false")
        if (
            not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot"))
            or sc.get("runAsNonRoot") is False
        ):
            out.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccomp {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities not dropped")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities added")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{name}: root filesystem writable")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append(f"{name}: hostPort")
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_serving_pod_meets_pod_security_restricted(case: str) -> None:
    pod = render.build_deployment(context(case))["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]


def test_restricted_checker_is_not_vacuous() -> None:
    pod = render.build_deployment(context("default_alias"))["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    pod["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    assert len(restricted_violations(pod)) == 3


# --- ownership, selectors, env, labels -----------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_controlled_by_its_modeldeployment(case: str) -> None:
    ctx = context(case)
    for obj in all_four(ctx):
        meta = obj["metadata"]
        assert (meta["name"], meta["namespace"]) == (ctx.name, ctx.namespace)
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "modeldeploy.io/v1alpha1",
                "kind": "ModelDeployment",
                "name": ctx.name,
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], obj["kind"]


def test_deployment_selector_is_stable_across_versions_and_matches_the_pods() -> None:
    ctx = context("default_alias")
    v3 = render.build_deployment(ctx)
    v4 = render.build_deployment(replace(ctx, version="4", model_uri="models:/fraud-detector/4"))
    selector = v3["spec"]["selector"]["matchLabels"]
    assert names.LABEL_MODEL_VERSION not in selector  # a Deployment's selector is immutable
    assert selector == v4["spec"]["selector"]["matchLabels"]
    for dep in (v3, v4):
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
    assert v4["spec"]["template"]["metadata"]["labels"][names.LABEL_MODEL_VERSION] == "4"
    service = render.build_service(ctx)
    assert service["spec"]["selector"] == selector


def test_rolling_update_never_drops_below_the_asked_replicas() -> None:
    dep = render.build_deployment(context("pinned_version_full_serving"))
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert dep["spec"]["progressDeadlineSeconds"] == 900
    assert dep["spec"]["replicas"] == 3


def test_pod_template_records_what_the_pods_run() -> None:
    ctx = context("pinned_version_full_serving")
    ann = render.build_deployment(ctx)["spec"]["template"]["metadata"]["annotations"]
    assert ann[render.ANN_MODEL_URI] == "models:/churn-model/7"
    assert ann[render.ANN_RUN_ID] == "f00dfeedbeef"


def test_user_env_cannot_override_what_the_operator_sets() -> None:
    ctx = context("pinned_version_full_serving")
    (container,) = render.build_deployment(ctx)["spec"]["template"]["spec"]["containers"]
    env = container["env"]
    by_name = {e["name"]: e["value"] for e in env}
    assert len(by_name) == len(env), "no variable appears twice"
    assert by_name["MODEL_URI"] == "models:/churn-model/7"
    assert by_name["PORT"] == "9000"
    assert by_name["MODEL_VERSION"] == "7"
    assert by_name["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    assert by_name["MODELDEPLOY_TRUST_MODEL_CODE"] == "never"
    assert by_name["WORKERS"] == "4"  # ordinary user variables pass through
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-auth"}}]


def test_operator_serving_env_also_beats_user_env() -> None:
    ctx = context("pinned_version_full_serving")
    spec = parse_spec(
        {
            "model": {"name": "m"},
            "serving": {"env": [{"name": "MODELDEPLOY_TRUST_MODEL_CODE", "value": "always"}]},
        }
    )
    env = render.build_deployment(replace(ctx, spec=spec))["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert [e["value"] for e in env if e["name"] == "MODELDEPLOY_TRUST_MODEL_CODE"] == ["never"]


def test_without_credentials_secret_no_env_from_and_default_resources() -> None:
    (container,) = render.build_deployment(context("default_alias"))["spec"]["template"]["spec"][
        "containers"
    ]
    assert "envFrom" not in container
    assert container["resources"] == render.DEFAULT_RESOURCES
    assert "imagePullPolicy" not in container


@pytest.mark.parametrize(
    "model_name",
    [
        "fraud-detector",
        "Fraud Detector (EU)",
        "team/fraud.v2",
        "模型",
        "-leading-and-trailing-",
        "__init__",
        "a" * 62 + "-" + "b" * 10,
        "x" * 300,
        "...",
    ],
)
def test_label_values_for_odd_model_names_are_valid_kubernetes_label_values(
    model_name: str,
) -> None:
    value = render.label_value(model_name)
    assert LABEL_VALUE.match(value) and 0 < len(value) <= 63, value
    ctx = replace(context("default_alias"), spec=parse_spec({"model": {"name": model_name}}))
    for obj in all_four(ctx):
        labels = dict(obj["metadata"]["labels"])
        if obj["kind"] == "Deployment":
            labels |= obj["spec"]["template"]["metadata"]["labels"]
        for key, v in labels.items():
            assert LABEL_VALUE.match(v) and len(v) <= 63, (obj["kind"], key, v)


def test_label_value_keeps_an_ordinary_name_unchanged() -> None:
    assert render.label_value("fraud-detector_v2.1") == "fraud-detector_v2.1"


# --- ServiceMonitor and alert rules --------------------------------------------------------


def test_service_monitor_scrapes_the_service_and_adds_the_modeldeployment_label() -> None:
    ctx = context("custom_alert_thresholds")
    sm = render.build_service_monitor(ctx)
    service = render.build_service(ctx)
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["ml-prod"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["interval"] == "30s"
    (relabel,) = endpoint["relabelings"]
    assert relabel["targetLabel"] == names.PROM_MODELDEPLOYMENT
    assert relabel["sourceLabels"] == ["__meta_kubernetes_pod_label_modeldeploy_io_modeldeployment"]


def by_clauses(expr: str) -> list[set[str]]:
    return [
        {label.strip() for label in m.group(1).split(",")}
        for m in re.finditer(r"\bby\s*\(([^)]*)\)", expr)
    ]


@pytest.mark.parametrize("case", ["default_alias", "custom_alert_thresholds"])
def test_alert_rules_group_by_the_labels_rollback_matches_on(case: str) -> None:
    """Alerts and the recording rules they read: every aggregation keeps the three labels."""
    ctx = context(case)
    rules = render.alert_rules(ctx)
    assert [r["alert"] for r in rules] == [
        names.ALERT_HIGH_ERROR_RATE,
        names.ALERT_HIGH_LATENCY,
        names.ALERT_DRIFT,
        *([names.ALERT_LOW_ACCURACY] if case == "custom_alert_thresholds" else []),
    ]
    needed = {names.PROM_NAMESPACE, names.PROM_MODELDEPLOYMENT, names.PROM_MODEL_VERSION}
    recorded = quality_rules(ctx.namespace, ctx.name, ctx.spec.monitoring.alerts)
    for rule in [*rules, *recorded]:
        what = rule.get("alert") or rule["record"]
        clauses = by_clauses(rule["expr"])
        assert clauses or "modeldeploy:" in rule["expr"], what  # recorded series keep them
        for labels in clauses:
            assert needed <= labels, (what, labels)


def test_alert_rules_use_the_thresholds_window_and_for_from_the_spec() -> None:
    ctx = context("custom_alert_thresholds")
    rules = {r["alert"]: r for r in render.alert_rules(ctx)}
    assert rules[names.ALERT_HIGH_ERROR_RATE]["expr"].endswith("> 0.01")
    assert rules[names.ALERT_HIGH_LATENCY]["expr"].endswith("> 0.25")
    assert rules[names.ALERT_DRIFT]["expr"].endswith("> 0.3")
    assert " < 0.9 and " in rules[names.ALERT_LOW_ACCURACY]["expr"]
    assert rules[names.ALERT_LOW_ACCURACY]["expr"].endswith(">= 500")
    recorded = quality_rules(ctx.namespace, ctx.name, ctx.spec.monitoring.alerts)
    windows = {w for r in recorded for w in re.findall(r"\[(\w+)\]", r["expr"])}
    assert windows == {"1h"}
    assert "[10m]" in rules[names.ALERT_HIGH_ERROR_RATE]["expr"]
    assert "[10m]" in rules[names.ALERT_HIGH_LATENCY]["expr"]
    assert {r["for"] for r in rules.values()} == {"5m"}
    sel = f'namespace="ml-prod", modeldeployment="{ctx.name}"'
    for rule in rules.values():
        assert sel in rule["expr"], rule["alert"]


def test_default_alert_thresholds_come_from_the_defaults() -> None:
    rules = {r["alert"]: r for r in render.alert_rules(context("default_alias"))}
    assert rules[names.ALERT_HIGH_ERROR_RATE]["expr"].endswith("> 0.05")
    assert rules[names.ALERT_HIGH_LATENCY]["expr"].endswith("> 0.5")
    assert "[1m]" in rules[names.ALERT_HIGH_ERROR_RATE]["expr"]
    assert {r["for"] for r in rules.values()} == {"30s"}
    assert names.ALERT_LOW_ACCURACY not in rules  # only with minAccuracy


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not on PATH (Debian: apt-get install prometheus)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.mark.parametrize("case", ["default_alias", "custom_alert_thresholds"])
def test_rendered_prometheus_rule_passes_promtool_check_rules(case: str, tmp_path: Path) -> None:
    binary = promtool()
    rule = render.build_prometheus_rule(context(case))
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    result = subprocess.run(
        [binary, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"
    rules = rule["spec"]["groups"][0]["rules"]
    assert f"{len(rules)} rules found" in result.stdout + result.stderr
    assert [r["alert"] for r in rules if "alert" in r][:3] == [
        names.ALERT_HIGH_ERROR_RATE, names.ALERT_HIGH_LATENCY, names.ALERT_DRIFT
    ]  # fmt: skip
    # Recording rules come first: an alert reads them in the same evaluation.
    first_alert = next(i for i, r in enumerate(rules) if "alert" in r)
    assert all("record" in r for r in rules[:first_alert])
    assert all("alert" in r for r in rules[first_alert:])


@pytest.mark.parametrize("case", sorted(CASES))
def test_planner_applies_exactly_the_golden_objects_when_monitoring_crds_exist(case: str) -> None:
    """The golden files pin what a real reconcile applies, not only what the builders return."""
    rc = context(case)
    p = plan(
        Context(
            name=rc.name,
            namespace=rc.namespace,
            uid=rc.uid,
            generation=1,
            spec=rc.spec,
            status=Status(),
            resolution=ResolvedVersion(rc.spec.model.name, rc.version, rc.run_id),
            deployment=None,
            monitoring_crds=frozenset(MONITORING_KINDS),
            image=rc.image,
            tracking_uri=rc.tracking_uri,
            now=datetime(2025, 1, 1, tzinfo=UTC),
            serving_env=rc.serving_env,
        )
    )
    assert dump(list(p.apply)) == dump(rendered(rc))


@pytest.mark.parametrize(
    ("per_second", "fires"),
    [
        # A client sending bad input (answered 4xx) cannot fire the error-rate alert...
        pytest.param({"200": 10, "400": 100}, False, id="bad-input-flood"),
        # ...nor hide a broken version by diluting its 5xx with 4xx (10 of 110 answered = 9%).
        pytest.param({"200": 100, "400": 100, "500": 10}, True, id="5xx-diluted-by-4xx"),
        pytest.param({"200": 100, "500": 3}, False, id="below-threshold"),
    ],
)
def test_error_rate_alert_counts_only_requests_the_version_answered_for(
    per_second: dict[str, int], fires: bool, tmp_path: Path
) -> None:
    """The shipped error-rate rule, run by promtool against request counters."""
    binary = promtool()
    ctx = context("default_alias")
    rule = render.build_prometheus_rule(ctx)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    ids = {
        names.PROM_NAMESPACE: ctx.namespace,
        names.PROM_MODELDEPLOYMENT: ctx.name,
        names.PROM_MODEL_VERSION: ctx.version,
    }
    series = [
        {
            "series": names.PREDICTION_REQUESTS
            + "{"
            + ", ".join(f'{k}="{v}"' for k, v in {**ids, names.LABEL_CODE: code}.items())
            + "}",
            "values": f"0+{rate * 15}x40",
        }
        for code, rate in per_second.items()
    ]
    alerts: list[dict[str, Any]] = []
    if fires:
        ratio = per_second["500"] / (per_second["500"] + per_second["200"])
        alerts = [
            {
                "exp_labels": {
                    **ids,
                    "alertname": names.ALERT_HIGH_ERROR_RATE,
                    "severity": "critical",
                    "modeldeploy_io_managed": "true",
                },
                "exp_annotations": {
                    "summary": f"{ctx.name} v{ctx.version} in {ctx.namespace}: "
                    "error rate above 0.05",
                    "description": f"{ratio * 100:.4g}% of predictions answered 5xx.",
                },
            }
        ]
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": names.ALERT_HIGH_ERROR_RATE,
                        "exp_alerts": alerts,
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run(
        [binary, "test", "rules", "test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}{result.stderr}"


def test_batching_is_rendered_into_the_serving_env_and_beats_user_env() -> None:
    ctx = context("pinned_version_full_serving")
    spec = parse_spec(
        {
            "model": {"name": "m"},
            "serving": {
                "batching": {"maxBatchSize": 8, "window": "2ms"},
                "env": [{"name": "MODELDEPLOY_BATCH_MAX_SIZE", "value": "64"}],
            },
        }
    )
    env = render.build_deployment(replace(ctx, spec=spec))["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    values = [(e["name"], e["value"]) for e in env if "BATCH" in e["name"]]
    assert values == [("MODELDEPLOY_BATCH_MAX_SIZE", "8"), ("MODELDEPLOY_BATCH_WINDOW_MS", "2")]
    unset = render.build_deployment(ctx)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert not [e for e in unset if "BATCH" in e["name"]]  # the runtime's defaults apply
