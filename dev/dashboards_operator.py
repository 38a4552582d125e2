"""The dashboards of the operator's metrics: Rollouts (phase, served version, rollouts,
rollbacks, registry and reconcile health) and Pipeline (the batch stages pushed to the
Pushgateway). dev/dashboards.py writes them to charts/modeldeploy/dashboards/; docs/dashboards.md
describes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dashboard_kit import (  # dev/ is not a package: its scripts put it on sys.path
    RATE,
    Q,
    build,
    common_panel,
    datasource_variable,
    label_variable,
    quantiles,
    sel,
    stat_panel,
    table_panel,
    ts,
    value_text,
)
from grafana_foundation_sdk.builders import dashboard, statetimeline
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.common import LineInterpolation, VisibilityMode

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "operator") not in sys.path:
    sys.path.insert(0, str(REPO / "operator"))

from modeldeploy import names  # noqa: E402

# Labels of the operator's metrics (controller/metrics.py): `name` is the ModelDeployment's.
OP_NAME = "name"
OP_MODEL = "model"
OP_VERSION = "version"
OP_PHASE = "phase"
OP_ALERT = "alert"
OP_OUTCOME = "outcome"
OP_PRIORITY = "priority"


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
    d.with_panel(
        ts(
            10,
            "Work queue",
            "ModelDeployments waiting for a reconcile worker, by priority (high: changes and "
            "events; low: periodic checks), and the p95 of how long each waited, in seconds. "
            "A depth that keeps growing means the workers are saturated.",
            [
                Q(
                    f"sum by ({OP_PRIORITY}) ({names.OP_WORKQUEUE_DEPTH})",
                    f"waiting {{{{{OP_PRIORITY}}}}}",
                ),
                *quantiles(names.OP_WORKQUEUE_WAIT, "", OP_PRIORITY, f"wait {{{{{OP_PRIORITY}}}}}")[
                    1:2
                ],
            ],
            "short",
        )
    )
    d.with_panel(
        ts(
            11,
            "API writes",
            "Requests other than GET the operator sent to the API server per second, by method "
            "and resource, the leader's Lease renewals left out: none while nothing changes.",
            [
                Q(
                    f"sum by (method, resource) (rate({names.OP_KUBE_REQUESTS}"
                    f'{{method!="GET", resource!="leases"}}[{RATE}]))',
                    "{{method}} {{resource}}",
                )
            ],
            "reqps",
            stacked=True,
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
        "The pipeline from ETL to inference: the batch stages pushed to the Pushgateway by "
        "modeldeploy.tracking.pipeline_stage (duration, outcome, freshness, data-quality checks, "
        "retraining triggers, training metrics), then deployment (the operator's rollouts) and "
        "inference (the serving pods) of the models the pipeline registers (docs/dashboards.md).",
        [
            datasource_variable(),
            label_variable("pipeline", "Pipeline", f"label_values({last_run}, {pl})"),
            label_variable(
                "stage", "Stage", f"label_values({last_run}{sel(**{pl: '$pipeline'})}, {st})"
            ),
            label_variable(
                "model", "Model", f"label_values({names.OP_MODEL_VERSION_INFO}, {OP_MODEL})"
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
    deployment_and_inference(d)
    return d


def deployment_and_inference(d: dashboard.Dashboard) -> None:
    """The last two stages, for the ModelDeployments serving the models chosen in `$model`."""
    ns, mn = names.PROM_NAMESPACE, names.PROM_MODEL_NAME
    served = f"and on ({ns}, {OP_NAME}) {names.OP_MODEL_VERSION_INFO}{sel(**{OP_MODEL: '$model'})}"
    md = f"{ns}, {OP_NAME}"
    md_legend = f"{{{{{ns}}}}}/{{{{{OP_NAME}}}}}"
    ok = f'{OP_OUTCOME}="Succeeded"'
    d.with_row(dashboard.Row("Deployment and inference").id(110))
    d.with_panel(
        stat_panel(
            12,
            "Deployment: time since last successful rollout",
            "Per ModelDeployment serving the model: seconds since its last rollout that "
            "succeeded (modeldeploy_rollout_last_completed_timestamp_seconds).",
            [
                Q(
                    f"time() - max by ({md}) ({names.OP_ROLLOUT_LAST_COMPLETED}{{{ok}}} {served})",
                    md_legend,
                    instant=True,
                )
            ],
            "s",
            w=8,
        )
    )
    d.with_panel(
        ts(
            13,
            "Deployment: rollout duration",
            "How long each ModelDeployment's last rollout took, by outcome: a step at every "
            "rollout (modeldeploy_rollout_last_duration_seconds).",
            [
                Q(
                    f"max by ({md}, {OP_OUTCOME}) ({names.OP_ROLLOUT_LAST_DURATION} {served})",
                    f"{md_legend} {{{{{OP_OUTCOME}}}}}",
                )
            ],
            "s",
            w=8,
        ).line_interpolation(LineInterpolation.STEP_AFTER)
    )
    d.with_panel(
        ts(
            14,
            "Inference: predictions and 5xx share",
            "Predictions per second of the model's serving pods, and the share answered 5xx.",
            [
                Q(
                    f"sum by ({mn}) (rate({names.PREDICTION_REQUESTS}"
                    f"{sel(**{mn: '$model'})}[{RATE}]))",
                    f"{{{{{mn}}}}} requests/s",
                ),
                Q(
                    f"sum by ({mn}) (rate({names.PREDICTION_REQUESTS}"
                    f'{sel(**{mn: "$model"})[:-1]}, {names.LABEL_CODE}=~"5.."}}[{RATE}]))'
                    f" / sum by ({mn}) (rate({names.PREDICTION_REQUESTS}"
                    f"{sel(**{mn: '$model'})}[{RATE}]))",
                    f"{{{{{mn}}}}} 5xx share",
                ),
            ],
            "short",
            w=8,
        )
    )
