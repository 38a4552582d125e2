#!/usr/bin/env python3
"""Generate the Grafana dashboards the chart ships (charts/modeldeploy/dashboards/*.json).

Dashboards are code: built with grafana-foundation-sdk (the `dashboards` dependency group; the
pinned version targets Grafana 11.6) from the metric and label names of modeldeploy.names and
modeldeploy.serving.constants, so a renamed metric changes the dashboards with it. Nobody edits
the JSON; `make dashboards` rewrites it and tests/unit/test_dashboards.py fails when the committed
files differ from this script's output (as `--check` does, which `make lint` runs).

Every panel filters by the template variables that are labels of its series (docs/dashboards.md
lists the exceptions): multi-value variables with "All" = `.*`, used as `label=~"$var"`.

Usage: dev/dashboards.py [--check]
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "operator") not in sys.path:
    sys.path.insert(0, str(REPO / "operator"))

from grafana_foundation_sdk.builders import (  # noqa: E402
    common,
    dashboard,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.models import dashboard as dm  # noqa: E402
from grafana_foundation_sdk.models.common import (  # noqa: E402
    GraphDrawStyle,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    LineInterpolation,
    StackingMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode  # noqa: E402
from grafana_foundation_sdk.models.prometheus import PromQueryFormat  # noqa: E402

from modeldeploy import names  # noqa: E402
from modeldeploy.api.spec import AlertsSpec  # noqa: E402
from modeldeploy.serving.metrics import CONFIDENCE_BUCKETS  # noqa: E402

sys.path.insert(0, str(REPO / "dev"))
import generated  # noqa: E402  (dev/ is not a package)

OUT = REPO / "charts" / "modeldeploy" / "dashboards"
HEADER_TAGS = ["modeldeploy"]

# cAdvisor metrics (the kubelet's /metrics/cadvisor, scraped by kube-prometheus-stack's kubelet
# ServiceMonitor). Not ours, so not in names.py; docs/dashboards.md says what they need.
# Labels cAdvisor and the ServiceMonitor's target put on series (Kubernetes' own names).
POD = names.LABEL_POD
# Labels of the operator's metrics (controller/metrics.py): `name` is the ModelDeployment's.
OP_NAME = "name"
OP_MODEL = "model"
OP_VERSION = "version"
OP_PHASE = "phase"
OP_ALERT = "alert"
OP_OUTCOME = "outcome"

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
# The quality dashboard's reference lines: the default drift alert threshold (spec
# monitoring.alerts.driftPsi) and what counts as a low-confidence prediction (a bucket edge of
# prediction_confidence, or the share's query would match no bucket).
DRIFT_PSI = AlertsSpec().drift_psi
LOW_CONFIDENCE = 0.6
assert LOW_CONFIDENCE in CONFIDENCE_BUCKETS


# --- variables --------------------------------------------------------------------------------


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    """A multi-value label variable whose "All" is `.*`, so `=~"$var"` matches every value
    (also series the dropdown has not seen yet)."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
    )


def sel(**matchers: str) -> str:
    """`{label=~"$var", ...}` in the given order; a value starting with `=` or `!` is used as is."""
    parts = []
    for label, value in matchers.items():
        parts.append(f"{label}{value}" if value[:1] in "=!" else f'{label}=~"{value}"')
    return "{" + ", ".join(parts) + "}"


# --- panels -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Q:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    heatmap: bool = False


def targets(queries: Sequence[Q]) -> list[cogbuilder.Builder[Any]]:
    out: list[cogbuilder.Builder[Any]] = []
    for i, q in enumerate(queries):
        t = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + i)).datasource(DS)
        if q.legend:
            t = t.legend_format(q.legend)
        t = t.instant() if q.instant else t.range()
        if q.table:
            t = t.format(PromQueryFormat.TABLE)
        if q.heatmap:
            t = t.format(PromQueryFormat.HEATMAP)
        out.append(t)
    return out


P = TypeVar("P", timeseries.Panel, stat.Panel, table.Panel, heatmap.Panel, statetimeline.Panel)


def common_panel(
    panel: P, pid: int, title: str, description: str, queries: Sequence[Q], w: int, h: int
) -> P:
    panel.id(pid).title(title).description(description).datasource(DS).span(w).height(h)
    panel.targets(targets(queries))
    return panel


def legend_table() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def ts(
    pid: int,
    title: str,
    description: str,
    queries: Sequence[Q],
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    bars: bool = False,
    stacked: bool = False,
) -> timeseries.Panel:
    panel = common_panel(timeseries.Panel(), pid, title, description, queries, w, h)
    panel.unit(unit).legend(legend_table()).fill_opacity(10).line_width(1)
    if bars:
        panel.draw_style(GraphDrawStyle.BARS).fill_opacity(80)
    if stacked:
        panel.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    return panel


def stat_panel(
    pid: int,
    title: str,
    description: str,
    queries: Sequence[Q],
    unit: str,
    *,
    w: int = 6,
    h: int = 6,
    mappings: list[dm.ValueMapping] | None = None,
) -> stat.Panel:
    panel = common_panel(stat.Panel(), pid, title, description, queries, w, h)
    panel.unit(unit).reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    if mappings:
        panel.mappings(mappings)
    return panel


def table_panel(
    pid: int,
    title: str,
    description: str,
    queries: Sequence[Q],
    *,
    w: int = 12,
    h: int = 8,
    rename: dict[str, str] | None = None,
    hide: Sequence[str] = (),
    seconds: Sequence[str] = (),
) -> table.Panel:
    """Instant queries as one table: merged on their common labels, values renamed to column
    titles (`Value` for one query, `Value #A`, `#B`, ... for several), `seconds` columns in s."""
    panel = common_panel(table.Panel(), pid, title, description, queries, w, h)
    if len(queries) > 1:
        panel.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    panel.with_transformation(
        dm.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True, **dict.fromkeys(hide, True)},
                "renameByName": dict(rename or {}),
            },
        )
    )
    for column in seconds:
        panel.override_by_name(column, [dm.DynamicConfigValue(id_val="unit", value="s")])
    return panel


def value_text(values: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                k: dm.ValueMappingResult(text=text, color=color, index=i)
                for i, (k, (text, color)) in enumerate(values.items())
            }
        )
    ]


def quantiles(metric: str, selector: str, by: str, legend: str) -> list[Q]:
    return [
        Q(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{selector}[{RATE}])))",
            f"p{int(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def threshold_line(panel: timeseries.Panel, value: float) -> timeseries.Panel:
    """A dashed red line at `value` (an alert threshold) across a time series."""
    steps = [dm.Threshold(value=None, color="green"), dm.Threshold(value=value, color="red")]
    return panel.thresholds(
        dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)
    ).thresholds_style(common.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))


def dashed(panel: timeseries.Panel, ref_id: str) -> timeseries.Panel:
    """Draws the series of query `ref_id` dashed: a reference (the training data) to compare
    the solid lines with."""
    style = {"fill": "dash", "dash": [10, 10]}
    return panel.override_by_query(
        ref_id, [dm.DynamicConfigValue(id_val="custom.lineStyle", value=style)]
    )


def build(
    uid: str, title: str, description: str, variables: Sequence[cogbuilder.Builder[Any]]
) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(HEADER_TAGS)
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .variables(list(variables))
    )


# --- Model serving ----------------------------------------------------------------------------


def serving_variables() -> list[cogbuilder.Builder[Any]]:
    """namespace, modeldeployment, model, version: listed from model_version_info, which every
    serving pod exports (the serving and quality dashboards)."""
    ns, md = names.PROM_NAMESPACE, names.PROM_MODELDEPLOYMENT
    mn, mv = names.PROM_MODEL_NAME, names.PROM_MODEL_VERSION
    info = names.MODEL_VERSION_INFO
    return [
        datasource_variable(),
        label_variable("namespace", "Namespace", f"label_values({info}, {ns})"),
        label_variable(
            "modeldeployment",
            "ModelDeployment",
            f"label_values({info}{sel(**{ns: '$namespace'})}, {md})",
        ),
        label_variable(
            "model",
            "Model",
            f"label_values({info}{sel(**{ns: '$namespace', md: '$modeldeployment'})}, {mn})",
        ),
        label_variable(
            "version",
            "Version",
            f"label_values({info}{sel(**{ns: '$namespace', md: '$modeldeployment', mn: '$model'})}, {mv})",  # noqa: E501
        ),
    ]


def serving() -> dashboard.Dashboard:
    ns, md = names.PROM_NAMESPACE, names.PROM_MODELDEPLOYMENT
    mn, mv = names.PROM_MODEL_NAME, names.PROM_MODEL_VERSION
    info = names.MODEL_VERSION_INFO
    s = sel(**{ns: "$namespace", md: "$modeldeployment", mn: "$model", mv: "$version"})
    s5 = s[:-1] + f', {names.LABEL_CODE}=~"5.."' + "}"
    by = f"{mn}, {mv}"
    who = f"{{{{{mn}}}}} v{{{{{mv}}}}}"
    pods = sel(**{ns: "$namespace", md: "$modeldeployment"})
    serving_pods = f"and on ({ns}, {POD}) {info}{s}"
    d = build(
        "modeldeploy-serving",
        "modeldeploy / Model serving",
        "Traffic, errors, latency and resources of the serving pods of ModelDeployments, by "
        "model and version (docs/dashboards.md).",
        serving_variables(),
    )
    d.with_row(dashboard.Row("Traffic and errors").id(101))
    d.with_panel(
        ts(
            1,
            "Request rate",
            "/invocations requests per second, by model and version.",
            [Q(f"sum by ({by}) (rate({names.PREDICTION_REQUESTS}{s}[{RATE}]))", who)],
            "reqps",
        )
    )
    d.with_panel(
        ts(
            2,
            "Errors by type",
            "Failed predictions per second by error_type: bad_input, payload_too_large, "
            "unsupported_media_type, method_not_allowed, request_timeout, client_disconnected "
            "are the client's; model_error, timeout, internal_error the server's.",
            [
                Q(
                    f"sum by ({by}, {names.LABEL_ERROR_TYPE}) "
                    f"(rate({names.PREDICTION_ERRORS}{s}[{RATE}]))",
                    f"{who} {{{{{names.LABEL_ERROR_TYPE}}}}}",
                )
            ],
            "reqps",
            stacked=True,
        )
    )
    d.with_panel(
        ts(
            3,
            "5xx share",
            "Share of /invocations answered with a 5xx, as the ModelHighErrorRate rule computes "
            "it (client errors excluded).",
            [
                Q(
                    f"sum by ({by}) (rate({names.PREDICTION_REQUESTS}{s5}[{RATE}])) / "
                    f"sum by ({by}) (rate({names.PREDICTION_REQUESTS}{s}[{RATE}]))",
                    who,
                )
            ],
            "percentunit",
        )
    )
    d.with_panel(
        ts(
            4,
            "In-flight requests",
            "Requests being served right now, by model and version.",
            [Q(f"sum by ({by}) ({names.PREDICTIONS_IN_FLIGHT}{s})", who)],
            "short",
        )
    )
    d.with_row(dashboard.Row("Latency").id(102))
    d.with_panel(
        ts(
            5,
            "Prediction latency p50 / p95 / p99",
            "Quantiles of prediction_latency_seconds (the prediction itself, not upload or "
            "parsing), by model and version.",
            quantiles(names.PREDICTION_LATENCY, s, by, who),
            "s",
        )
    )
    d.with_panel(
        common_panel(
            heatmap.Panel(),
            6,
            "Prediction latency heatmap",
            "Distribution of prediction latency over time (all selected versions), from the "
            "histogram's buckets.",
            [
                Q(
                    f"sum by (le) (rate({names.PREDICTION_LATENCY}_bucket{s}[{RATE}]))",
                    "{{le}}",
                    heatmap=True,
                )
            ],
            12,
            8,
        )
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .cell_values(heatmap.CellValues().unit("reqps"))
        .color(
            heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Spectral").steps(64)
        )
    )
    d.with_row(dashboard.Row("Versions and resources").id(103))
    d.with_panel(
        ts(
            7,
            "Pods serving each version",
            "model_version_info: how many serving processes report each version; a rollout "
            "shows the new version rising as the old one falls.",
            [
                Q(
                    f"count by ({md}, {by}) ({info}{s})",
                    f"{{{{{md}}}}}: {who}",
                )
            ],
            "short",
            stacked=True,
            w=8,
        )
    )
    d.with_panel(
        ts(
            8,
            "CPU per pod",
            "CPU of each serving process (process_cpu_seconds_total, which every serving pod "
            "exports itself: no cAdvisor needed); only pods reporting the selected model/version.",
            [
                Q(
                    f"sum by ({ns}, {POD}) (rate({names.PROCESS_CPU}{pods}[{RATE}]))"
                    f" {serving_pods}",
                    f"{{{{{POD}}}}}",
                )
            ],
            "cores",
            w=8,
        )
    )
    d.with_panel(
        ts(
            9,
            "Memory per pod",
            "Resident memory of each serving process (process_resident_memory_bytes); the "
            "container's working set, which the OOM killer compares with the limit, is a little "
            "higher.",
            [
                Q(
                    f"sum by ({ns}, {POD}) ({names.PROCESS_MEMORY}{pods}) {serving_pods}",
                    f"{{{{{POD}}}}}",
                )
            ],
            "bytes",
            w=8,
        )
    )
    return d


# --- Model quality ----------------------------------------------------------------------------


def quality() -> dashboard.Dashboard:
    """Confidence, drift and live accuracy. Raw serving series (S) carry all four variables'
    labels; the recording rules' series (R) lose model_name, so they follow namespace,
    modeldeployment and version only (docs/dashboards.md lists them)."""
    ns, md = names.PROM_NAMESPACE, names.PROM_MODELDEPLOYMENT
    mn, mv, cl = names.PROM_MODEL_NAME, names.PROM_MODEL_VERSION, names.LABEL_CLASS
    s = sel(**{ns: "$namespace", md: "$modeldeployment", mn: "$model", mv: "$version"})
    r = sel(**{ns: "$namespace", md: "$modeldeployment", mv: "$version"})
    low = s[:-1] + f', le="{LOW_CONFIDENCE:g}"' + "}"
    by = f"{mn}, {mv}"
    who = f"{{{{{mn}}}}} v{{{{{mv}}}}}"
    rwho = f"{{{{{md}}}}} v{{{{{mv}}}}}"
    no_name = " Recorded series have no model_name: the Model variable does not filter it."
    conf, target = names.PREDICTION_CONFIDENCE, names.TARGET_BASELINE_SHARE
    training = Q(
        f"max by ({md}, {mv}, {cl}) ({target}{s})", f"training: {rwho} {{{{{cl}}}}}"
    )  # each pod exports the baseline: one series per version and class

    def rec(rule: str, legend: str = "") -> Q:
        return Q(f"{rule}{r}", f"{rwho}{legend}")

    d = build(
        "modeldeploy-quality",
        "modeldeploy / Model quality",
        "How good the served models are: prediction confidence, predicted-class, input and "
        "target drift against the training data, and accuracy from /feedback labels, from the "
        "serving pods' counters and the operator's recording rules (docs/dashboards.md).",
        serving_variables(),
    )
    d.with_row(dashboard.Row("Confidence").id(110))
    d.with_panel(
        common_panel(
            heatmap.Panel(),
            1,
            "Confidence distribution",
            "prediction_confidence: the top class probability of each predicted row "
            "(classifiers with predict_proba), by bucket over time; rows per second.",
            [Q(f"sum by (le) (rate({conf}_bucket{s}[{RATE}]))", "{{le}}", heatmap=True)],
            12,
            8,
        )
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("percentunit"))
        .cell_values(heatmap.CellValues().unit("short"))
        .color(
            heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Spectral").steps(64)
        )
    )
    d.with_panel(
        ts(
            2,
            "Low-confidence share and median confidence",
            f"Share of predicted rows whose top class probability is at most {LOW_CONFIDENCE:g} "
            "(prediction_confidence bucket / count), and the median confidence "
            "(histogram_quantile over the buckets), by model and version.",
            [
                Q(
                    f"sum by ({by}) (rate({conf}_bucket{low}[{RATE}])) / "
                    f"sum by ({by}) (rate({conf}_count{s}[{RATE}]))",
                    f"{who} ≤ {LOW_CONFIDENCE:g}",
                ),
                Q(
                    f"histogram_quantile(0.5, sum by (le, {by}) (rate({conf}_bucket{s}[{RATE}])))",
                    f"{who} median",
                ),
            ],
            "percentunit",
        )
    )
    d.with_row(dashboard.Row("Predictions against training").id(111))
    d.with_panel(
        dashed(
            ts(
                3,
                "Predicted-class shares vs training",
                "Share of predictions per class over the quality window (recording rule "
                "modeldeploy:prediction_class_share), solid, against each class's share of the "
                "training labels (target_baseline_share), dashed." + no_name,
                [rec(names.REC_CLASS_SHARE, f" {{{{{cl}}}}}"), training],
                "percentunit",
            ),
            "B",
        )
    )
    d.with_panel(
        threshold_line(
            ts(
                4,
                "Output drift (PSI)",
                "PSI of the predicted-class shares against the training labels' shares "
                "(modeldeploy:output_drift_psi), once the window has enough predictions. "
                f"Dashed line: the default drift threshold {DRIFT_PSI:g}." + no_name,
                [rec(names.REC_OUTPUT_PSI)],
                "none",
            ),
            DRIFT_PSI,
        )
    )
    d.with_row(dashboard.Row("Input drift").id(112))
    d.with_panel(
        threshold_line(
            ts(
                5,
                "Feature drift (PSI) by feature",
                "PSI of each feature's live bins against its training baseline "
                "(modeldeploy:feature_drift_psi over feature_bin_rows_total and "
                "feature_baseline_share). Dashed line: the default threshold "
                f"{DRIFT_PSI:g} of ModelInputDrift (a ModelDeployment may set its own "
                "driftPsi)." + no_name,
                [rec(names.REC_FEATURE_PSI, f" {{{{{names.LABEL_FEATURE}}}}}")],
                "none",
            ),
            DRIFT_PSI,
        )
    )
    d.with_panel(
        ts(
            6,
            "Missing values by feature",
            "Share of rows with the feature null, NaN or absent over the quality window "
            "(modeldeploy:feature_missing_ratio)." + no_name,
            [rec(names.REC_FEATURE_MISSING, f" {{{{{names.LABEL_FEATURE}}}}}")],
            "percentunit",
        )
    )
    d.with_row(dashboard.Row("Live accuracy (feedback labels)").id(113))
    d.with_panel(
        ts(
            7,
            "Accuracy, precision, recall, F1",
            "From the labels sent to /feedback over the quality window: accuracy and macro "
            "precision, recall and F1 over the classes seen (modeldeploy:feedback_accuracy, "
            "_precision, _recall, _f1)." + no_name,
            [
                rec(names.REC_ACCURACY, " accuracy"),
                rec(names.REC_PRECISION, " precision"),
                rec(names.REC_RECALL, " recall"),
                rec(names.REC_F1, " F1"),
            ],
            "percentunit",
        )
    )
    d.with_panel(
        stat_panel(
            8,
            "Current accuracy",
            "The latest modeldeploy:feedback_accuracy of each version (what ModelLowAccuracy "
            "compares with minAccuracy)." + no_name,
            [Q(f"{names.REC_ACCURACY}{r}", rwho, instant=True)],
            "percentunit",
            h=8,
        )
    )
    d.with_panel(
        ts(
            9,
            "Labelled rows per second",
            "Rows with a true label sent to /feedback (prediction_feedback_rows_total): what "
            "the accuracy and target drift figures rest on.",
            [Q(f"sum by ({by}) (rate({names.FEEDBACK_ROWS}{s}[{RATE}]))", who)],
            "short",
            w=6,
        )
    )
    d.with_row(dashboard.Row("Target drift").id(114))
    d.with_panel(
        threshold_line(
            ts(
                10,
                "Target drift (PSI)",
                "PSI of the feedback labels' class shares against the training labels' shares "
                "(modeldeploy:target_drift_psi), once the window has enough labelled rows. "
                f"Dashed line: the default drift threshold {DRIFT_PSI:g}." + no_name,
                [rec(names.REC_TARGET_PSI)],
                "none",
            ),
            DRIFT_PSI,
        )
    )
    d.with_panel(
        dashed(
            ts(
                11,
                "Label shares vs training",
                "Share of each true class among the feedback labels "
                "(modeldeploy:feedback_label_share), solid, against its share of the training "
                "labels (target_baseline_share), dashed." + no_name,
                [rec(names.REC_LABEL_SHARE, f" {{{{{cl}}}}}"), training],
                "percentunit",
            ),
            "B",
        )
    )
    d.with_row(dashboard.Row("Regressors").id(115))
    d.with_panel(
        ts(
            12,
            "MAE / RMSE",
            "Regressors' mean absolute and root mean squared error of the predictions against "
            "the feedback labels over the quality window (modeldeploy:feedback_mae, "
            "modeldeploy:feedback_rmse), in the target's unit." + no_name,
            [rec(names.REC_MAE, " MAE"), rec(names.REC_RMSE, " RMSE")],
            "none",
            w=24,
        )
    )
    return d


# --- Rollouts ---------------------------------------------------------------------------------


def rollouts() -> dashboard.Dashboard:
    ns = names.PROM_NAMESPACE
    r = sel(**{ns: "$namespace", OP_NAME: "$modeldeployment"})
    rv = sel(
        **{
            ns: "$namespace",
            OP_NAME: "$modeldeployment",
            OP_MODEL: "$model",
            OP_VERSION: "$version",
        }
    )
    md_legend = f"{{{{{ns}}}}}/{{{{{OP_NAME}}}}}"
    status, info = names.OP_ROLLOUT_STATUS, names.OP_MODEL_VERSION_INFO
    d = build(
        "modeldeploy-rollouts",
        "modeldeploy / Rollouts",
        "What the operator does: phase and served version of each ModelDeployment, rollouts, "
        "automatic rollbacks and the alerts behind them, registry and reconcile health "
        "(docs/dashboards.md).",
        [
            datasource_variable(),
            label_variable("namespace", "Namespace", f"label_values({status}, {ns})"),
            label_variable(
                "modeldeployment",
                "ModelDeployment",
                f"label_values({status}{sel(**{ns: '$namespace'})}, {OP_NAME})",
            ),
            label_variable(
                "model",
                "Model",
                f"label_values({info}{r}, {OP_MODEL})",
            ),
            label_variable(
                "version",
                "Version",
                f"label_values({info}{sel(**{ns: '$namespace', OP_NAME: '$modeldeployment', OP_MODEL: '$model'})}, {OP_VERSION})",  # noqa: E501
            ),
        ],
    )
    d.with_row(dashboard.Row("ModelDeployments").id(104))
    d.with_panel(
        table_panel(
            1,
            "Current phase and version",
            "Each ModelDeployment's phase (modeldeploy_rollout_status == 1) and the version it "
            "serves (modeldeploy_model_version_info).",
            [
                Q(
                    f"max by ({ns}, {OP_NAME}, {OP_PHASE}) ({status}{r} == 1)",
                    instant=True,
                    table=True,
                ),
                Q(
                    f"max by ({ns}, {OP_NAME}, {OP_MODEL}, {OP_VERSION}) ({info}{rv})",
                    instant=True,
                    table=True,
                ),
            ],
            hide=["Value #A", "Value #B"],
        )
    )
    d.with_panel(
        common_panel(
            statetimeline.Panel(),
            2,
            "Phase over time",
            "The phase each ModelDeployment was in: one row per ModelDeployment and phase, "
            "coloured while it was in that phase.",
            [
                Q(
                    f"max by ({ns}, {OP_NAME}, {OP_PHASE}) ({status}{r} == 1)",
                    f"{md_legend} {{{{{OP_PHASE}}}}}",
                )
            ],
            12,
            8,
        )
        .show_value(VisibilityMode.NEVER)
        .merge_values(True)
        .mappings(value_text({"1": ("in phase", "green")}))
    )
    d.with_panel(
        common_panel(
            statetimeline.Panel(),
            3,
            "Served version over time",
            "modeldeploy_model_version_info: the model version each ModelDeployment served.",
            [
                Q(
                    f"max by ({ns}, {OP_NAME}, {OP_MODEL}, {OP_VERSION}) ({info}{rv})",
                    f"{md_legend} {{{{{OP_MODEL}}}}} v{{{{{OP_VERSION}}}}}",
                )
            ],
            24,
            8,
        )
        .show_value(VisibilityMode.NEVER)
        .merge_values(True)
        .mappings(value_text({"1": ("serving", "green")}))
    )
    d.with_row(dashboard.Row("Rollouts and rollbacks").id(105))
    d.with_panel(
        ts(
            4,
            "Rollouts started and finished",
            "Rollouts started, and finished by outcome (Succeeded, Failed, Superseded).",
            [
                Q(
                    f"sum by ({ns}, {OP_NAME}) (increase({names.OP_ROLLOUTS_STARTED}{r}[{RATE}]))",
                    f"{md_legend} started",
                ),
                Q(
                    f"sum by ({ns}, {OP_NAME}, {OP_OUTCOME}) "
                    f"(increase({names.OP_ROLLOUTS_COMPLETED}{r}[{RATE}]))",
                    f"{md_legend} {{{{{OP_OUTCOME}}}}}",
                ),
            ],
            "short",
            bars=True,
        )
    )
    d.with_panel(
        ts(
            5,
            "Rollbacks by alert",
            "Automatic rollbacks, by the alert that caused them (modeldeploy_rollbacks_total).",
            [
                Q(
                    f"sum by ({ns}, {OP_NAME}, {OP_ALERT}) "
                    f"(increase({names.OP_ROLLBACKS}{r}[{RATE}]))",
                    f"{md_legend} {{{{{OP_ALERT}}}}}",
                )
            ],
            "short",
            bars=True,
        )
    )
    d.with_panel(
        table_panel(
            6,
            "Rollbacks in the time range",
            "Rollbacks per ModelDeployment and alert over the dashboard's time range.",
            [
                Q(
                    f"sum by ({ns}, {OP_NAME}, {OP_ALERT}) "
                    f"(increase({names.OP_ROLLBACKS}{r}[$__range])) > 0",
                    instant=True,
                    table=True,
                )
            ],
            rename={"Value": "rollbacks"},
        )
    )
    rb = names.OP_ALERT_TO_ROLLBACK
    d.with_panel(
        stat_panel(
            7,
            "Alert → rollback latency",
            "From first hearing of an alert to the rolled-back Deployment applied, over the "
            "time range (operator-wide: the histogram has no per-ModelDeployment labels).",
            [
                Q(
                    f"histogram_quantile({q}, sum by (le) (increase({rb}_bucket[$__range])))",
                    f"p{int(q * 100)}",
                    instant=True,
                )
                for q in (0.5, 0.95)
            ]
            + [Q(f"sum(increase({rb}_count[$__range]))", "rollbacks", instant=True)],
            "s",
            w=12,
            h=8,
        ).override_by_name("rollbacks", [dm.DynamicConfigValue(id_val="unit", value="short")])
    )
    d.with_row(dashboard.Row("Operator health").id(106))
    d.with_panel(
        ts(
            8,
            "Registry requests by outcome",
            "Calls to the MLflow registry per second: ok, not_found, unreachable (operator-wide).",
            [
                Q(
                    f"sum by ({OP_OUTCOME}) (rate({names.OP_REGISTRY_REQUESTS}[{RATE}]))",
                    f"{{{{{OP_OUTCOME}}}}}",
                )
            ],
            "reqps",
            stacked=True,
        )
    )
    d.with_panel(
        ts(
            9,
            "Reconcile latency",
            "Time to observe, plan and apply one ModelDeployment, by outcome (operator-wide).",
            quantiles(names.OP_RECONCILE_SECONDS, "", OP_OUTCOME, f"{{{{{OP_OUTCOME}}}}}"),
            "s",
        )
    )
    return d


# --- Pipeline ---------------------------------------------------------------------------------


def pipeline() -> dashboard.Dashboard:
    pl, st = names.PIPELINE_LABEL_PIPELINE, names.PIPELINE_LABEL_STAGE
    ck, rs = names.PIPELINE_LABEL_CHECK, names.PIPELINE_LABEL_REASON
    p = sel(**{pl: "$pipeline", st: "$stage"})
    by = f"{pl}, {st}"
    who = f"{{{{{pl}}}}}/{{{{{st}}}}}"
    last_run = names.PIPELINE_STAGE_LAST_RUN
    outcome = value_text({"1": ("success", "green"), "0": ("failure", "red")})
    d = build(
        "modeldeploy-pipeline",
        "modeldeploy / Pipeline",
        "Batch pipeline stages pushed to the Pushgateway by modeldeploy.tracking.pipeline_stage: "
        "duration, outcome, freshness, data-quality checks, retraining triggers "
        "(docs/dashboards.md).",
        [
            datasource_variable(),
            label_variable("pipeline", "Pipeline", f"label_values({last_run}, {pl})"),
            label_variable(
                "stage", "Stage", f"label_values({last_run}{sel(**{pl: '$pipeline'})}, {st})"
            ),
        ],
    )
    d.with_row(dashboard.Row("Stages").id(107))
    d.with_panel(
        stat_panel(
            1,
            "Last outcome",
            "Whether each stage's last run succeeded "
            "(modeldeploy_pipeline_stage_last_run_success).",
            [Q(f"max by ({by}) ({names.PIPELINE_STAGE_SUCCESS}{p})", who, instant=True)],
            "none",
            w=8,
            mappings=outcome,
        )
    )
    d.with_panel(
        stat_panel(
            2,
            "Time since last success",
            "Seconds since each stage last succeeded; the stale alert fires when this exceeds "
            "the stage's expected period.",
            [
                Q(
                    f"time() - max by ({by}) ({names.PIPELINE_STAGE_LAST_SUCCESS}{p})",
                    who,
                    instant=True,
                )
            ],
            "s",
            w=8,
        )
    )
    d.with_panel(
        table_panel(
            3,
            "Stage status",
            "Per stage: time since its last run and its last success, its expected period, "
            "and the rows of its last run.",
            [
                Q(
                    f"time() - max by ({by}) ({names.PIPELINE_STAGE_LAST_RUN}{p})",
                    instant=True,
                    table=True,
                ),
                Q(
                    f"time() - max by ({by}) ({names.PIPELINE_STAGE_LAST_SUCCESS}{p})",
                    instant=True,
                    table=True,
                ),
                Q(
                    f"max by ({by}) ({names.PIPELINE_STAGE_EXPECTED_PERIOD}{p})",
                    instant=True,
                    table=True,
                ),
                Q(f"max by ({by}) ({names.PIPELINE_STAGE_ROWS_IN}{p})", instant=True, table=True),
                Q(f"max by ({by}) ({names.PIPELINE_STAGE_ROWS_OUT}{p})", instant=True, table=True),
            ],
            w=8,
            rename={
                "Value #A": "since last run",
                "Value #B": "since last success",
                "Value #C": "expected period",
                "Value #D": "rows in",
                "Value #E": "rows out",
            },
            seconds=["since last run", "since last success", "expected period"],
        )
    )
    d.with_panel(
        ts(
            4,
            "Stage duration",
            "Duration of each stage's last run (a step at every run).",
            [Q(f"max by ({by}) ({names.PIPELINE_STAGE_DURATION}{p})", who)],
            "s",
        )
    )
    d.with_panel(
        ts(
            5,
            "Rows in / out",
            "Rows the last run of each stage read and wrote (when reported).",
            [
                Q(f"max by ({by}) ({names.PIPELINE_STAGE_ROWS_IN}{p})", f"{who} in"),
                Q(f"max by ({by}) ({names.PIPELINE_STAGE_ROWS_OUT}{p})", f"{who} out"),
            ],
            "short",
        )
    )
    d.with_row(dashboard.Row("Data quality and retraining").id(108))
    d.with_panel(
        common_panel(
            statetimeline.Panel(),
            6,
            "Data-quality checks",
            "Result of each check in the stage's last run (1 passed, 0 failed).",
            [
                Q(
                    f"min by ({by}, {ck}) ({names.PIPELINE_CHECK_PASSED}{p})",
                    f"{who} {{{{{ck}}}}}",
                )
            ],
            12,
            8,
        )
        .merge_values(True)
        .mappings(value_text({"1": ("passed", "green"), "0": ("failed", "red")}))
    )
    d.with_panel(
        ts(
            7,
            "Data-quality check values",
            "The figure each check measured, when the check reports one.",
            [Q(f"max by ({by}, {ck}) ({names.PIPELINE_CHECK_VALUE}{p})", f"{who} {{{{{ck}}}}}")],
            "short",
        )
    )
    trig = names.PIPELINE_RETRAINING_TRIGGER
    tp = sel(**{pl: "$pipeline"})
    d.with_panel(
        ts(
            8,
            "Retraining triggers",
            "Retraining triggers per interval, by reason (changes of the per-reason timestamp; "
            "no stage label).",
            [
                Q(
                    f"sum by ({pl}, {rs}) (changes({trig}{tp}[$__interval]))",
                    f"{{{{{pl}}}}} {{{{{rs}}}}}",
                )
            ],
            "short",
            bars=True,
        )
    )
    d.with_panel(
        table_panel(
            9,
            "Retraining triggers in the time range",
            "Triggers per pipeline and reason over the dashboard's time range.",
            [Q(f"sum by ({pl}, {rs}) (changes({trig}{tp}[$__range]))", instant=True, table=True)],
            rename={"Value": "triggers"},
        )
    )
    mt = names.PIPELINE_LABEL_METRIC
    d.with_row(dashboard.Row("Training metrics").id(109))
    d.with_panel(
        ts(
            10,
            "Training metrics by run",
            "Figures the stages record with s.metric(name, value) "
            "(modeldeploy_pipeline_stage_metric), one line per pipeline, stage and metric. The "
            "Pushgateway keeps each run's value until the next run, so every run is one step: "
            "the last N runs in the time range are the last N steps.",
            [Q(f"max by ({by}, {mt}) ({names.PIPELINE_STAGE_METRIC}{p})", f"{who} {{{{{mt}}}}}")],
            "none",
            w=16,
        ).line_interpolation(LineInterpolation.STEP_AFTER)
    )
    d.with_panel(
        table_panel(
            11,
            "Latest training metrics",
            "The value of each metric in the last run of each stage that reported metrics.",
            [
                Q(
                    f"max by ({by}, {mt}) ({names.PIPELINE_STAGE_METRIC}{p})",
                    instant=True,
                    table=True,
                )
            ],
            w=8,
            rename={"Value": "value"},
        )
    )
    return d


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "modeldeploy-serving.json": serving,
    "modeldeploy-rollouts.json": rollouts,
    "modeldeploy-pipeline.json": pipeline,
    "modeldeploy-quality.json": quality,
}


def render(make: Callable[[], dashboard.Dashboard]) -> str:
    """The dashboard's JSON: sorted keys and a trailing newline, so output is byte-stable."""
    model = json.loads(json.dumps(make().build(), cls=JSONEncoder))
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    return {OUT / name: render(make) for name, make in DASHBOARDS.items()}


def differences() -> list[str]:
    out = []
    expected = expected_files()
    for path, text in expected.items():
        rel = path.relative_to(REPO)
        if not path.exists():
            out.append(f"missing: {rel}")
            continue
        old = path.read_text()
        if old != text:
            diff = list(difflib.unified_diff(old.splitlines(), text.splitlines(), lineterm="", n=0))
            changed = sum(1 for line in diff[2:] if line[:1] in "+-")
            out.append(f"differs from dev/dashboards.py: {rel} ({changed} lines)")
            out += [f"  {line}" for line in diff[2:12]]
    out += [f"stale (not generated): {p.relative_to(REPO)}" for p in stale_files()]
    return out


def stale_files() -> list[Path]:
    """Committed dashboards no generator makes any more (known by name: nothing to render)."""
    return [p for p in sorted(OUT.glob("*.json")) if p.name not in DASHBOARDS]


def main(argv: list[str]) -> int:
    return generated.run(
        argv,
        expected_files,
        stale_files,
        differences,
        usage=__doc__ or "",
        hint="run `make dashboards` (dev/dashboards.py)",
        root=REPO,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
