"""The Grafana dashboards in charts/modeldeploy/dashboards/ are dev/dashboards.py's output, and
every query reads metrics and labels the serving runtime, the operator and the pipeline jobs
really export, filtered by the dashboard's template variables."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from modeldeploy import names
from modeldeploy.controller.metrics import OperatorMetrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "charts" / "modeldeploy" / "dashboards"
TITLES = {
    "modeldeploy-serving": "modeldeploy / Model serving",
    "modeldeploy-rollouts": "modeldeploy / Rollouts",
    "modeldeploy-pipeline": "modeldeploy / Pipeline",
    "modeldeploy-quality": "modeldeploy / Model quality",
}
VARIABLES = {
    "modeldeploy-serving": ["datasource", "namespace", "modeldeployment", "model", "version"],
    "modeldeploy-rollouts": ["datasource", "namespace", "modeldeployment", "model", "version"],
    "modeldeploy-pipeline": ["datasource", "pipeline", "stage", "model"],
    "modeldeploy-quality": ["datasource", "namespace", "modeldeployment", "model", "version"],
}
PROCESS = {names.PROCESS_CPU, names.PROCESS_MEMORY}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}

SERVING = {"namespace", "modeldeployment", "model", "version"}
MD_ONLY = {"namespace", "modeldeployment"}
RECORDED = {"namespace", "modeldeployment", "version"}  # recording rules drop model_name
# The quality recording rules' series (names.REC_*), labelled by render/quality_rules.BY.
REC_METRICS = {v for k, v in vars(names).items() if k.startswith("REC_")}
# Which template variables filter a metric's series: the ones that are labels of it (or, for
# the process metrics, that the query joins in). docs/dashboards.md lists the exceptions.
APPLIES: dict[str, set[str]] = {
    names.PREDICTION_REQUESTS: SERVING,
    names.PREDICTION_ERRORS: SERVING,
    names.PREDICTION_LATENCY: SERVING,
    names.PREDICTIONS_IN_FLIGHT: SERVING,
    names.MODEL_VERSION_INFO: SERVING,
    names.PREDICTION_CONFIDENCE: SERVING,
    names.TARGET_BASELINE_SHARE: SERVING,
    names.FEEDBACK_ROWS: SERVING,
    **dict.fromkeys(REC_METRICS, RECORDED),
    **dict.fromkeys(PROCESS, MD_ONLY),
    names.OP_ROLLOUT_STATUS: MD_ONLY,
    names.OP_MODEL_VERSION_INFO: SERVING,
    names.OP_ROLLOUTS_STARTED: MD_ONLY,
    names.OP_ROLLOUTS_COMPLETED: MD_ONLY,
    names.OP_ROLLOUT_LAST_COMPLETED: MD_ONLY,
    names.OP_ROLLOUT_LAST_DURATION: MD_ONLY,
    names.OP_ROLLBACKS: MD_ONLY,
    names.OP_ALERT_TO_ROLLBACK: set(),  # operator-wide histogram, no labels
    names.OP_REGISTRY_REQUESTS: set(),  # label `outcome` only
    names.OP_RECONCILE_SECONDS: set(),  # label `outcome` only
    names.OP_WORKQUEUE_DEPTH: set(),  # label `priority` only
    names.OP_WORKQUEUE_WAIT: set(),  # label `priority` only
    names.OP_KUBE_REQUESTS: set(),  # labels `method`, `resource` only
    names.PIPELINE_STAGE_DURATION: {"pipeline", "stage"},
    names.PIPELINE_STAGE_SUCCESS: {"pipeline", "stage"},
    names.PIPELINE_STAGE_LAST_RUN: {"pipeline", "stage"},
    names.PIPELINE_STAGE_LAST_SUCCESS: {"pipeline", "stage"},
    names.PIPELINE_STAGE_EXPECTED_PERIOD: {"pipeline", "stage"},
    names.PIPELINE_STAGE_ROWS_IN: {"pipeline", "stage"},
    names.PIPELINE_STAGE_ROWS_OUT: {"pipeline", "stage"},
    names.PIPELINE_CHECK_PASSED: {"pipeline", "stage"},
    names.PIPELINE_CHECK_VALUE: {"pipeline", "stage"},
    names.PIPELINE_STAGE_METRIC: {"pipeline", "stage"},
    names.PIPELINE_RETRAINING_TRIGGER: {"pipeline"},  # one group per (pipeline, reason)
}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards", REPO / "dev" / "dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from panel.get("panels", [])


def exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel["targets"]:
            yield panel["title"], target["expr"]


def known_metrics() -> set[str]:
    """Every metric name the modules that own them define, with histogram series suffixes."""
    values = {
        v
        for module in (names,)
        for k, v in vars(module).items()
        if k.isupper() and isinstance(v, str) and re.fullmatch(r"[a-z_:][a-z0-9_:]*", v)
    }
    return values | {v + s for v in values for s in HISTOGRAM_SUFFIXES}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers left once strings, label matchers,
    ranges and grouping clauses are removed, that are neither functions nor keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = re.findall(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text)
    return {name for name in found if name not in PROMQL_WORDS}


def variable_series(query: str) -> str:
    """The series selector of a `label_values(selector, label)` variable query."""
    match = re.fullmatch(r"label_values\((.*), *[a-zA-Z_][a-zA-Z0-9_]*\)", query)
    assert match, query
    return match.group(1)


def base_metric(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in APPLIES:
            return name.removesuffix(suffix)
    return name


def selectors(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric, label names its matchers use) for every `metric{...}` in the expression."""
    for metric, body in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr):
        yield metric, set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", body))


def test_committed_dashboards_equal_the_generator_output() -> None:
    gen = load_generator()
    assert gen.differences() == [], "run `make dashboards` (dev/dashboards.py)"
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(gen.DASHBOARDS)


def test_check_mode_reports_a_dashboard_that_differs_from_the_generator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gen = load_generator()
    original = gen.render
    monkeypatch.setattr(gen, "render", lambda make: original(make).replace("Request rate", "x"))
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert (
        "differs from dev/dashboards.py: charts/modeldeploy/dashboards/modeldeploy-serving.json"
        in err
    )
    assert "make dashboards" in err


def test_generator_output_is_stable_between_runs() -> None:
    gen = load_generator()
    assert gen.expected_files() == gen.expected_files()


def test_dashboards_have_stable_uids_titles_and_panel_ids() -> None:
    found = dashboards()
    assert sorted(found) == sorted(TITLES)
    for stem, dashboard in found.items():
        assert dashboard["uid"] == stem, "the uid is the file name: links and imports rely on it"
        assert len(dashboard["uid"]) <= 40  # Grafana's limit
        assert dashboard["title"] == TITLES[stem]
        ids = [p["id"] for p in dashboard["panels"]] + [
            p["id"] for row in dashboard["panels"] for p in row.get("panels", [])
        ]
        assert len(ids) == len(set(ids)), f"{stem}: panel ids repeat"
        assert all(isinstance(i, int) and i > 0 for i in ids), f"{stem}: a panel has no id"


def test_every_panel_has_a_titled_prometheus_query_on_the_datasource_variable() -> None:
    for stem, dashboard in dashboards().items():
        for panel in panels(dashboard):
            assert panel["targets"], f"{stem}: panel {panel['title']!r} has no query"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel.get("description"), f"{stem}: panel {panel['title']!r} is undescribed"
            for target in panel["targets"]:
                assert target["expr"].strip()
                assert target["datasource"]["uid"] == "${datasource}"


def test_template_variables_are_multi_value_and_all_matches_every_value() -> None:
    for stem, dashboard in dashboards().items():
        variables = dashboard["templating"]["list"]
        assert [v["name"] for v in variables] == VARIABLES[stem]
        assert variables[0]["type"] == "datasource" and variables[0]["query"] == "prometheus"
        for var in variables[1:]:
            assert var["type"] == "query"
            assert var["multi"] and var["includeAll"] and var["allValue"] == ".*", var["name"]
            assert var["query"].startswith("label_values(")
            assert var["datasource"]["uid"] == "${datasource}"


def test_every_query_names_only_metrics_their_owning_modules_define() -> None:
    known = known_metrics()
    for stem, dashboard in dashboards().items():
        queries = list(exprs(dashboard)) + [
            (f"variable {v['name']}", variable_series(v["query"]))
            for v in dashboard["templating"]["list"][1:]
        ]
        for title, expr in queries:
            used = metric_names(expr)
            assert used, f"{stem}/{title}: no metric found in {expr}"
            unknown = used - known
            assert not unknown, f"{stem}/{title}: unknown metric(s) {unknown} in {expr}"


def test_metric_name_parser_finds_metrics_and_skips_functions_and_labels() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, model_name) (rate(a_bucket{x=~"$v"}[5m]))) '
        "/ on (namespace, pod) b and c"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c"}


def test_every_query_filters_by_each_variable_that_is_a_label_of_its_series() -> None:
    for stem, dashboard in dashboards().items():
        used_vars: set[str] = set()
        for title, expr in exprs(dashboard):
            metrics = {base_metric(m) for m in metric_names(expr)}
            assert metrics <= set(APPLIES), f"{stem}/{title}: no variable rule for {metrics}"
            # The dashboard's variables among those that apply (the Pipeline dashboard's
            # deployment panels select ModelDeployments by $model, it has no $namespace).
            for var in set().union(*(APPLIES[m] for m in metrics)) & set(VARIABLES[stem]):
                assert re.search(rf'=~"[^"]*\${var}\b', expr), (
                    f"{stem}/{title}: does not filter by ${var}: {expr}"
                )
                used_vars.add(var)
        assert used_vars == set(VARIABLES[stem][1:]), f"{stem}: a variable filters nothing"


def operator_series_labels() -> dict[str, set[str]]:
    """Label names of every operator series, as the operator's own registry exports them."""
    m = OperatorMetrics()
    m.set_phase("ns", "md", "Healthy")
    m.set_version("ns", "md", "fraud", "2")
    m.rollouts_started.labels(namespace="ns", name="md").inc()
    m.rollout_finished("ns", "md", "Succeeded", "2026-01-01T00:00:00Z", "2026-01-01T00:00:09Z")
    m.rollbacks.labels(namespace="ns", name="md", alert="ModelHighErrorRate").inc()
    m.registry_requests.labels(outcome="ok").inc()
    m.reconcile_seconds.labels(outcome="ok").observe(0.1)
    m.alert_to_rollback.observe(0.1)
    m.watch_queue(lambda priority: 0)
    m.queue_waited(0, 0.1)
    m.kube_request("PATCH", "deployments")
    out: dict[str, set[str]] = {}
    for family in m.registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(set(sample.labels) - {"le"})
    return out


def test_operator_queries_match_only_labels_the_operator_exports() -> None:
    """The Rollouts dashboard, and the Pipeline dashboard's deployment panels."""
    exported = operator_series_labels()
    pipeline = dashboards()["modeldeploy-pipeline"]
    operator_panels = [
        (title, expr) for title, expr in exprs(pipeline) if "modeldeploy_rollout" in expr
    ]
    assert operator_panels
    for title, expr in [*exprs(dashboards()["modeldeploy-rollouts"]), *operator_panels]:
        for metric, labels in selectors(expr):
            assert metric in exported, f"{title}: the operator exports no {metric}"
            assert labels <= exported[metric], (
                f"{title}: {metric} has no label(s) {labels - exported[metric]}"
            )
        for grouped in re.findall(r"\bby \(([^)]*)\)", expr):
            labels = {g.strip() for g in grouped.split(",")} - {"le"}
            metrics = {m for m in metric_names(expr) if m in exported}
            assert any(labels <= exported[m] for m in metrics), f"{title}: by ({grouped})"


def test_serving_quality_and_pipeline_queries_match_only_exported_labels() -> None:
    # Serving: the runtime's model_name/model_version, the ServiceMonitor's namespace and
    # modeldeployment (docs/operator.md), per-metric extras; cAdvisor's namespace/pod/container.
    serving = {names.PROM_NAMESPACE, names.PROM_MODELDEPLOYMENT}
    serving |= {names.PROM_MODEL_NAME, names.PROM_MODEL_VERSION}
    allowed = {
        names.PREDICTION_REQUESTS: serving | {names.LABEL_CODE},
        names.PREDICTION_ERRORS: serving | {names.LABEL_ERROR_TYPE},
        names.PREDICTION_LATENCY + "_bucket": serving,
        names.PREDICTIONS_IN_FLIGHT: serving,
        names.MODEL_VERSION_INFO: serving,
        names.PREDICTION_CONFIDENCE + "_bucket": serving | {"le"},
        names.PREDICTION_CONFIDENCE + "_count": serving,
        names.TARGET_BASELINE_SHARE: serving,
        names.FEEDBACK_ROWS: serving,
        **dict.fromkeys(REC_METRICS, serving - {names.PROM_MODEL_NAME}),
        **dict.fromkeys(PROCESS, frozenset({"namespace", "modeldeployment"})),
    }
    stage = {names.PIPELINE_LABEL_PIPELINE, names.PIPELINE_LABEL_STAGE}
    for key in APPLIES:
        if key.startswith("modeldeploy_pipeline_"):
            allowed[key] = stage | {names.PIPELINE_LABEL_CHECK, names.PIPELINE_LABEL_METRIC}
    allowed[names.PIPELINE_RETRAINING_TRIGGER] = {
        names.PIPELINE_LABEL_PIPELINE,
        names.PIPELINE_LABEL_REASON,
    }
    for stem in ("modeldeploy-serving", "modeldeploy-pipeline", "modeldeploy-quality"):
        for title, expr in exprs(dashboards()[stem]):
            for metric, labels in selectors(expr):
                if metric.startswith("modeldeploy_") and metric not in allowed:
                    continue  # the operator's: the test above checks them
                assert labels <= allowed[metric], f"{stem}/{title}: {metric} {labels}"
