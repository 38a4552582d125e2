"""Recording rules for model quality: counters from every pod of a version → ratios.

The serving pods export counts (serving/metrics.py); these rules, rendered into each
ModelDeployment's PrometheusRule ahead of its alerts, turn them into one series per
(namespace, modeldeployment, model_version[, feature | class]) over
`spec.monitoring.alerts.qualityWindow`: `increase()` per pod, summed over the version's pods,
then divided. So a pod with few labels weighs what its labels weigh, and the alerts (input drift,
accuracy) and the rollback that follows them read one series per version. Rules of a group run in
order at one timestamp, so each rule may read the series of the rules before it.

The formulas are those of `serving.drift.psi` (PSI over bins, shares floored at PSI_EPSILON) and
`serving.feedback.classification_stats` (macro averages over the classes seen in the window);
tests/e2e/test_quality_rules.py checks the rules against them on a real Prometheus.
"""

from __future__ import annotations

from typing import Any

from modeldeploy import names
from modeldeploy.api.spec import AlertsSpec

BY = f"{names.PROM_NAMESPACE}, {names.PROM_MODELDEPLOYMENT}, {names.PROM_MODEL_VERSION}"


def selector(namespace: str, name: str) -> str:
    """The label matchers that scope a rule to one ModelDeployment's series."""
    return f'{names.PROM_NAMESPACE}="{namespace}", {names.PROM_MODELDEPLOYMENT}="{name}"'


def _psi(shares: str, baseline: str, by: str, key: str) -> str:
    """Σ (a - e) ln(a / e) over the bins `key`, with a and e floored at PSI_EPSILON."""
    eps = f"{names.PSI_EPSILON:g}"
    a = f"clamp_min({shares}, {eps})"
    e = f"clamp_min(max by ({by}, {key}) ({baseline}), {eps})"
    return f"sum by ({by}) (({a} - on ({by}, {key}) {e}) * ln({a} / on ({by}, {key}) {e}))"


def quality_rules(namespace: str, name: str, alerts: AlertsSpec) -> list[dict[str, Any]]:
    """The recording rules, in evaluation order."""
    s = selector(namespace, name)
    w = alerts.quality_window
    n = names

    def rec(record: str, expr: str) -> dict[str, Any]:
        return {"record": record, "expr": expr}

    def inc(metric: str, extra: str = "") -> str:
        return f"increase({metric}{{{s}{extra}}}[{w}])"

    def by_class(from_label: str, extra: str = "") -> str:
        moved = (
            f'label_replace({inc(n.FEEDBACK_OUTCOMES, extra)}, "{n.LABEL_CLASS}", "$1", '
            f'"{from_label}", "(.*)")'
        )
        return f"sum by ({BY}, {n.LABEL_CLASS}) ({moved})"

    present = f', {n.LABEL_BIN}!="{n.BIN_MISSING}"'
    missing = f', {n.LABEL_BIN}="{n.BIN_MISSING}"'
    feature = f"{BY}, {n.LABEL_FEATURE}"
    classes = f"(({n.REC_PREDICTED}{{{s}}} > 0) or ({n.REC_LABELLED}{{{s}}} > 0))"
    tp = f"{n.REC_TRUE_POSITIVES}{{{s}}}"
    p, r = f"{n.REC_CLASS_PRECISION}{{{s}}}", f"{n.REC_CLASS_RECALL}{{{s}}}"
    rows = f"{n.REC_FEEDBACK_ROWS}{{{s}}}"
    feature_rows = f"{n.REC_FEATURE_ROWS}{{{s}}}"
    labelled = f"{n.REC_LABELLED}{{{s}}}"
    predicted_total = f"sum by ({BY}) ({inc(n.PREDICTION_CLASS)})"
    target = f"{n.TARGET_BASELINE_SHARE}{{{s}}}"
    enough = f">= {alerts.min_rows}"
    return [
        # Input drift and missing values, per feature.
        rec(n.REC_FEATURE_ROWS, f"sum by ({feature}) ({inc(n.FEATURE_BIN_ROWS, present)})"),
        rec(
            n.REC_FEATURE_SHARE,
            f"sum by ({feature}, {n.LABEL_BIN}) ({inc(n.FEATURE_BIN_ROWS, present)})"
            f" / ignoring ({n.LABEL_BIN}) group_left() ({feature_rows} > 0)",
        ),
        rec(
            n.REC_FEATURE_PSI,
            _psi(
                f"{n.REC_FEATURE_SHARE}{{{s}}}",
                f"{n.FEATURE_BASELINE_SHARE}{{{s}}}",
                feature,
                n.LABEL_BIN,
            )
            + f" and on ({feature}) ({feature_rows} {enough})",
        ),
        rec(
            n.REC_FEATURE_MISSING,
            f"sum by ({feature}) ({inc(n.FEATURE_BIN_ROWS, missing)})"
            f" / (sum by ({feature}) ({inc(n.FEATURE_BIN_ROWS)}) > 0)",
        ),
        # Output skew: predicted-class shares against the training labels' shares.
        rec(
            n.REC_CLASS_SHARE,
            f"sum by ({BY}, {n.LABEL_CLASS}) ({inc(n.PREDICTION_CLASS)})"
            f" / ignoring ({n.LABEL_CLASS}) group_left() ({predicted_total} > 0)",
        ),
        rec(
            n.REC_OUTPUT_PSI,
            _psi(f"{n.REC_CLASS_SHARE}{{{s}}}", target, BY, n.LABEL_CLASS)
            + f" and on ({BY}) ({predicted_total} {enough})",
        ),
        # Ground truth: counts per class, then accuracy and macro precision / recall / F1.
        rec(n.REC_FEEDBACK_ROWS, f"sum by ({BY}) ({inc(n.FEEDBACK_ROWS)})"),
        rec(n.REC_TRUE_POSITIVES, by_class(n.LABEL_TRUE_CLASS, f', {n.LABEL_CORRECT}="true"')),
        rec(n.REC_PREDICTED, by_class(n.LABEL_PREDICTED_CLASS)),
        rec(n.REC_LABELLED, by_class(n.LABEL_TRUE_CLASS)),
        rec(
            n.REC_ACCURACY,
            f"(sum by ({BY}) ({tp}) or 0 * sum by ({BY}) ({labelled}))"
            f" / (sum by ({BY}) ({labelled}) > 0)",
        ),
        rec(n.REC_CLASS_PRECISION, f"({tp} / ({n.REC_PREDICTED}{{{s}}} > 0)) or 0 * {classes}"),
        rec(n.REC_CLASS_RECALL, f"({tp} / ({labelled} > 0)) or 0 * {classes}"),
        rec(n.REC_CLASS_F1, f"(2 * {p} * {r} / (({p} + {r}) > 0)) or 0 * {classes}"),
        rec(n.REC_PRECISION, f"avg by ({BY}) ({p})"),
        rec(n.REC_RECALL, f"avg by ({BY}) ({r})"),
        rec(n.REC_F1, f"avg by ({BY}) ({n.REC_CLASS_F1}{{{s}}})"),
        # Target drift: the labels' shares against the training labels' shares.
        rec(
            n.REC_LABEL_SHARE,
            f"{labelled} / ignoring ({n.LABEL_CLASS}) group_left()"
            f" (sum by ({BY}) ({labelled}) > 0)",
        ),
        rec(
            n.REC_TARGET_PSI,
            _psi(f"{n.REC_LABEL_SHARE}{{{s}}}", target, BY, n.LABEL_CLASS)
            + f" and on ({BY}) ({rows} {enough})",
        ),
        # Regressors.
        rec(n.REC_MAE, f"sum by ({BY}) ({inc(n.FEEDBACK_ABS_ERROR)}) / ({rows} > 0)"),
        rec(n.REC_RMSE, f"sqrt(sum by ({BY}) ({inc(n.FEEDBACK_SQUARED_ERROR)}) / ({rows} > 0))"),
    ]
