"""The dashboards of the serving pods: Model serving (traffic, errors, latency, resources) and
Model quality (confidence, drift, live accuracy). dev/dashboards.py writes them to
charts/modeldeploy/dashboards/; docs/dashboards.md describes them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dashboard_kit import (  # dev/ is not a package: its scripts put it on sys.path
    RATE,
    Q,
    bucket_heatmap,
    build,
    dashed,
    datasource_variable,
    label_variable,
    quantiles,
    sel,
    stat_panel,
    threshold_line,
    ts,
)
from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog import builder as cogbuilder

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "operator") not in sys.path:
    sys.path.insert(0, str(REPO / "operator"))

from modeldeploy import names  # noqa: E402
from modeldeploy.api.spec import AlertsSpec  # noqa: E402
from modeldeploy.serving.metrics import CONFIDENCE_BUCKETS  # noqa: E402

# cAdvisor metrics (the kubelet's /metrics/cadvisor, scraped by kube-prometheus-stack's kubelet
# ServiceMonitor). Not ours, so not in names.py; docs/dashboards.md says what they need.
# Labels cAdvisor and the ServiceMonitor's target put on series (Kubernetes' own names).
POD = names.LABEL_POD
# The quality dashboard's reference lines: the default drift alert threshold (spec
# monitoring.alerts.driftPsi) and what counts as a low-confidence prediction (a bucket edge of
# prediction_confidence, or the share's query would match no bucket).
DRIFT_PSI = AlertsSpec().drift_psi
LOW_CONFIDENCE = 0.6
assert LOW_CONFIDENCE in CONFIDENCE_BUCKETS


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
        bucket_heatmap(
            6,
            "Prediction latency heatmap",
            "Distribution of prediction latency over time (all selected versions), from the "
            "histogram's buckets.",
            names.PREDICTION_LATENCY,
            s,
            "s",
            "reqps",
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
        bucket_heatmap(
            1,
            "Confidence distribution",
            "prediction_confidence: the top class probability of each predicted row "
            "(classifiers with predict_proba), by bucket over time; rows per second.",
            conf,
            s,
            "percentunit",
            "short",
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
